#!/usr/bin/env bash
# Stop what scripts/monitoring/start.sh started (the pids recorded in $MM_MONITORING_DIR/run/started), and
# nothing else.
#
#   stop.sh [--purge]     --purge: also delete $MM_MONITORING_DIR (configs, TSDB, Pushgateway state, logs)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${MM_MONITORING_DIR:-/tmp/mm-monitoring}"
STARTED="$DIR/run/started"
PURGE=0
[[ "${1:-}" == "--purge" ]] && PURGE=1

# shellcheck source=../log.sh
source "$HERE/../log.sh"
# shellcheck source=../daemons.sh
source "$HERE/../daemons.sh"

if [[ ! -d "$DIR/run" ]]; then
    log "nothing to stop ($DIR/run does not exist)"
    exit 0
fi
exec 9>"$DIR/run/lock"
flock -w 120 9 || die "timed out waiting for $DIR/run/lock"

if [[ ! -s "$STARTED" ]]; then
    log "start.sh started nothing that still runs"
else
    # Prometheus first (it stops sending alerts), then Alertmanager, then the Pushgateway.
    for name in prometheus prometheus-alertmanager prometheus-pushgateway; do
        stop_daemon "$name" "$(awk -v n="$name" '$1 == n { print $2 }' "$STARTED" | tail -n 1)"
    done
    forget_stopped "$STARTED"
fi

if ((PURGE)); then
    exec 9>&-
    rm -rf "$DIR"
    log "removed $DIR"
fi
