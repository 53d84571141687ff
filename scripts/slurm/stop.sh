#!/usr/bin/env bash
# Stop what scripts/slurm/start.sh started (the pids recorded in $MM_SLURM_DIR/run/started), and nothing else:
# daemons that were already running when start.sh ran are left alone. Jobs still in the queue are cancelled
# first (when slurmctld is among those stopped), so no job processes outlive slurmd.
#
#   stop.sh [--purge] [PID...]
#   PID...   stop only these of the recorded daemons (a test session stops what its own start.sh started)
#   --purge  also delete $MM_SLURM_DIR (config, state, logs)
set -euo pipefail

DIR="${MM_SLURM_DIR:-/tmp/mm-slurm}"
STARTED="$DIR/run/started"
export SLURM_CONF="$DIR/etc/slurm.conf"
export PATH="$PATH:/usr/sbin:/sbin"
PURGE=0
if [[ "${1:-}" == "--purge" ]]; then
    PURGE=1
    shift
fi
ONLY=" $* "

log() { echo "stop.sh: $*"; }

if [[ ! -d "$DIR/run" ]]; then
    log "nothing to stop ($DIR/run does not exist)"
    exit 0
fi
exec 9>"$DIR/run/lock"
flock -w 120 9 || { echo "stop.sh: error: timed out waiting for $DIR/run/lock" >&2; exit 1; }

# Whether pid $2 is a live (not zombie) process named $1: a recorded pid may have been reused since.
alive() {
    local stat
    [[ -n "${2:-}" && "$(cat "/proc/$2/comm" 2>/dev/null)" == "$1" ]] || return 1
    stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}
# The recorded pid of a daemon, when it is one of those to stop (all, or those named on the command line).
started_pid() {
    local pid
    pid="$([[ -f "$STARTED" ]] && awk -v n="$1" '$1 == n { print $2 }' "$STARTED" | tail -n 1)"
    if [[ -n "$pid" && ( "$ONLY" == "  " || "$ONLY" == *" $pid "* ) ]]; then echo "$pid"; fi
}

if [[ ! -s "$STARTED" ]]; then
    log "start.sh started nothing that still runs; leaving running daemons alone"
else
    ctld_pid="$(started_pid slurmctld)"
    if alive slurmctld "$ctld_pid" && [[ -f "$SLURM_CONF" ]] && scontrol ping 2>/dev/null | grep -q 'is UP'; then
        jobs="$(squeue -h -o %A 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            log "cancelling jobs: $(echo $jobs)"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for _ in $(seq 1 100); do
                [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break
                sleep 0.2
            done
        fi
    fi
    # slurmd before slurmctld (the node does not go DOWN in saved state), munged last (both use it).
    for name in slurmd slurmctld munged; do
        pid="$(started_pid "$name")"
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
    # Forget what was stopped (and what no longer runs); keep the rest.
    tmp="$(mktemp "$DIR/run/started.XXXXXX")"
    while read -r name pid; do
        if alive "$name" "$pid"; then echo "$name $pid"; fi
    done <"$STARTED" >"$tmp"
    mv "$tmp" "$STARTED"
fi

if ((PURGE)); then
    for name in slurmd slurmctld; do
        pid="$(tr -dc '0-9' 2>/dev/null <"$DIR/run/$name.pid" || true)"
        if alive "$name" "$pid"; then
            echo "stop.sh: error: not purging $DIR: $name (pid $pid, not started by start.sh) still uses it" >&2
            exit 1
        fi
    done
    exec 9>&-
    rm -rf "$DIR"
    log "removed $DIR"
fi
