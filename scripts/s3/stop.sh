#!/usr/bin/env bash
# Stop the S3 server scripts/s3/start.sh started (the pids recorded in $MM_S3_DIR/run/started), and nothing
# else: a weed this folder did not start is left alone.
#
#   stop.sh [--purge]    --purge also deletes $MM_S3_DIR (data, keys, log)
set -euo pipefail

DIR="${MM_S3_DIR:-/tmp/mm-s3}"
STARTED="$DIR/run/started"
log() { echo "stop.sh: $*"; }
alive() { [[ -n "${1:-}" && "$(cat "/proc/$1/comm" 2>/dev/null)" == weed ]]; }

if [[ ! -d "$DIR/run" ]]; then
    log "nothing to stop ($DIR/run does not exist)"
    exit 0
fi
exec 9>"$DIR/run/lock"
flock -w 120 9 || { echo "stop.sh: error: timed out waiting for $DIR/run/lock" >&2; exit 1; }

if [[ -s "$STARTED" ]]; then
    while read -r name pid; do
        [[ "$name" == weed ]] && alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            alive "$pid" || break
            sleep 0.2
        done
        if alive "$pid"; then
            log "weed (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        log "stopped weed (pid $pid)"
    done <"$STARTED"
    : >"$STARTED"
    rm -f "$DIR/run/weed.pid" "$DIR/env"
else
    log "start.sh started nothing that still runs"
fi

if [[ "${1:-}" == "--purge" ]]; then
    exec 9>&-
    rm -rf "$DIR"
    log "removed $DIR"
fi
