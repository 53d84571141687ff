# Shared by start/stop scripts that record what they started as "<name> <pid>" lines (sourced; functions only):
# whether a recorded daemon still runs, stopping it, and forgetting what no longer runs.

# Whether pid $1 runs (not a zombie), whatever its name: right after the fork it is still named "bash".
running() {
    local stat
    [[ -n "${1:-}" ]] || return 1
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}

# Whether pid $2 is a live (not zombie) process whose name starts like $1 (/proc/PID/comm keeps 15 chars).
alive() {
    local comm
    [[ -n "${2:-}" ]] || return 1
    comm="$(cat "/proc/$2/comm" 2>/dev/null)" || return 1
    [[ "$comm" == "${1:0:15}" ]] && running "$2"
}

# The pid in file $1 (digits only), or nothing.
pid_from() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }

# Keep only the lines of the started file $1 whose process still runs.
forget_stopped() {
    local tmp name pid
    [[ -f "$1" ]] || return 0
    tmp="$(mktemp "$1.XXXXXX")"
    while read -r name pid; do
        if alive "$name" "$pid"; then echo "$name $pid"; fi
    done <"$1" >"$tmp"
    mv "$tmp" "$1"
}

# Stop daemon $1 (pid $2): SIGTERM, then SIGKILL after 10 s (log: scripts/log.sh).
stop_daemon() {
    alive "$1" "$2" || return 0
    kill -TERM "$2" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive "$1" "$2" || break
        sleep 0.2
    done
    if alive "$1" "$2"; then
        log "$1 (pid $2) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$2" 2>/dev/null || true
    fi
    log "stopped $1 (pid $2)"
}
