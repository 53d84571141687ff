# Shared by the start/stop scripts (sourced): one way to say what happens and to fail.
# log MSG: "<script>: MSG" on stdout. die MSG [FILE]: "<script>: error: MSG" and FILE's last 30 lines on stderr, exit 1.
log() { echo "$(basename "$0"): $*"; }
die() {
    echo "$(basename "$0"): error: $1" >&2
    if [[ -n "${2:-}" && -f "$2" ]]; then
        echo "--- last lines of $2 ---" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}
