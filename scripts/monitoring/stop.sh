#!/usr/bin/env bash
# Stop what scripts/monitoring/start.sh started (the pids recorded in $MM_MONITORING_DIR/run/started), and
# nothing else.
#
#   stop.sh [--purge]     --purge: also delete $MM_MONITORING_DIR (configs, TSDB, Pushgateway state, logs)
set -euo pipefail

DIR="${MM_MONITORING_DIR:-/tmp/mm-monitoring}"
STARTED="$DIR/run/started"
PURGE=0
[[ "${1:-}" == "--purge" ]] && PURGE=1

log() { echo "stop.sh: $*"; }

if [[ ! -d "$DIR/run" ]]; then
    log "nothing to stop ($DIR/run does not exist)"
    exit 0
fi
exec 9>"$DIR/run/lock"
flock -w 120 9 || { echo "stop.sh: error: timed out waiting for $DIR/run/lock" >&2; exit 1; }

# Whether pid $2 is a live (not zombie) process whose name starts like $1 (/proc/PID/comm keeps 15 chars).
alive() {
    local stat comm
    [[ -n "${2:-}" ]] || return 1
    comm="$(cat "/proc/$2/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "${1:0:15}" ]] || return 1
    stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

if [[ ! -s "$STARTED" ]]; then
    log "start.sh started nothing that still runs"
else
    # Prometheus first (it stops sending alerts), then Alertmanager, then the Pushgateway.
    for name in prometheus prometheus-alertmanager prometheus-pushgateway; do
        pid="$(awk -v n="$name" '$1 == n { print $2 }' "$STARTED" | tail -n 1)"
        alive "$name" "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            alive "$name" "$pid" || break
            sleep 0.2
        done
        if alive "$name" "$pid"; then
            log "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    done
    tmp="$(mktemp "$DIR/run/started.XXXXXX")"
    while read -r name pid; do
        if alive "$name" "$pid"; then echo "$name $pid"; fi
    done <"$STARTED" >"$tmp"
    mv "$tmp" "$STARTED"
fi

if ((PURGE)); then
    exec 9>&-
    rm -rf "$DIR"
    log "removed $DIR"
fi
