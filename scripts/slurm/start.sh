#!/usr/bin/env bash
# Start a single-node Slurm cluster for development and CI (DESIGN.md §6, §9): munged, slurmctld, slurmd,
# without systemd, cgroups or slurmdbd. Idempotent: whatever already runs is reused and left alone; what this
# script starts is recorded in $MM_SLURM_DIR/run/started, and scripts/slurm/stop.sh stops only that.
#
# Starting needs root (slurmd runs jobs as their submitting users); when the cluster is already up, anyone gets
# its summary. Installs the Debian packages when missing. The settings below apply when slurmctld starts: to
# change them on a running cluster, run stop.sh first.
#
# Environment (all optional):
#   MM_SLURM_DIR             runtime folder: config, state, spool, logs, pids   [/tmp/mm-slurm]
#   MM_SLURM_CTLD_PORT       slurmctld port                                      [6817]
#   MM_SLURM_SLURMD_PORT     slurmd port                                         [6818]
#   MM_SLURM_FAKE_GPUS       number of fake GPUs (gres gpu) on the node          [0: asking for a GPU is rejected]
#   MM_SLURM_READY_TIMEOUT_S seconds to wait for each daemon / the node          [30]
#   MM_MUNGE_SOCKET          munged socket                                       [/run/munge/munge.socket.2]
#
# Afterwards: `export SLURM_CONF=$MM_SLURM_DIR/etc/slurm.conf` (or `source $MM_SLURM_DIR/env`) for sinfo,
# squeue, sbatch.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${MM_SLURM_DIR:-/tmp/mm-slurm}"
CTLD_PORT="${MM_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${MM_SLURM_SLURMD_PORT:-6818}"
FAKE_GPUS="${MM_SLURM_FAKE_GPUS:-0}"
READY_TIMEOUT_S="${MM_SLURM_READY_TIMEOUT_S:-30}"
MUNGE_SOCKET="${MM_MUNGE_SOCKET:-/run/munge/munge.socket.2}"
MUNGE_RUN="$(dirname "$MUNGE_SOCKET")"
CONF="$DIR/etc/slurm.conf"
STARTED="$DIR/run/started"
HOST="$(hostname -s)"
export SLURM_CONF="$CONF"
export PATH="$PATH:/usr/sbin:/sbin"

# shellcheck source=../log.sh
source "$HERE/../log.sh"

# Remember a daemon this script started, for stop.sh.
record() { echo "$1 $2" >>"$STARTED"; }
# Whether pid $2 is a live (not zombie) process named $1: a recorded pid may have been reused since.
alive() {
    local stat
    [[ -n "${2:-}" && "$(cat "/proc/$2/comm" 2>/dev/null)" == "$1" ]] || return 1
    stat="$(cat "/proc/$2/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat%% *}" != Z ]]
}
pid_from() { [[ -s "$1" ]] && tr -dc '0-9' <"$1" || true; }
# Wait until "$@" succeeds, at most READY_TIMEOUT_S seconds.
wait_for() {
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

munge_ok() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET"; }
# Up, and ours: another cluster's slurmctld on the same port would answer `scontrol ping` too, so ask the
# controller for its StateSaveLocation. A missing config file makes every Slurm command retry for 60 s before
# failing: check the file first.
ctld_up() {
    [[ -f "$CONF" ]] && scontrol show config 2>/dev/null | grep -Eq "^StateSaveLocation += +$DIR/state\$"
}

node_state() { sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -n 1; }
node_ready() { [[ "$(node_state)" =~ ^(idle|mix|alloc|comp)$ ]]; }
summary() {
    log "Slurm is up: node $HOST is $(node_state); partition debug"
    log "  export SLURM_CONF=$CONF    (or: source $DIR/env)"
    log "  logs: $DIR/log/slurmctld.log  $DIR/log/slurmd.log  jobcomp: $DIR/log/jobcomp.txt (sacct -c)"
    log "  stop: $HERE/stop.sh (stops only what start.sh started: $STARTED)"
}

if [[ "$(id -u)" != 0 ]]; then
    # Anyone may use a cluster that is already up; starting one needs root (slurmd runs jobs as their users).
    if munge_ok >/dev/null 2>&1 && ctld_up && node_ready; then
        summary
        exit 0
    fi
    die "the cluster in $DIR is not up, and starting it needs root; try: sudo $0"
fi
[[ "$FAKE_GPUS" =~ ^[0-9]+$ ]] || die "MM_SLURM_FAKE_GPUS must be a whole number, got '$FAKE_GPUS'"

mkdir -p "$DIR"/{etc,state,spool,run,log}
# One start/stop at a time (two test sessions starting together must not race). Daemons are started with
# `9>&-`: an inherited lock descriptor would hold the lock for their lifetime.
exec 9>"$DIR/run/lock"
flock -w 120 9 || die "timed out waiting for $DIR/run/lock (another start.sh or stop.sh is running)"

# --- packages --------------------------------------------------------------------------------------------
missing=()
for bin in munged munge slurmctld slurmd sbatch; do
    command -v "$bin" >/dev/null 2>&1 || [[ -x "/usr/sbin/$bin" ]] || missing+=("$bin")
done
if ((${#missing[@]})); then
    log "installing slurmctld slurmd slurm-client munge (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q >"$DIR/log/apt.log" 2>&1 \
        || die "apt-get update failed or took over 300 s" "$DIR/log/apt.log"
    timeout 600 apt-get install -y -q slurmctld slurmd slurm-client munge >>"$DIR/log/apt.log" 2>&1 \
        || die "apt-get install failed or took over 600 s" "$DIR/log/apt.log"
fi

# Keep only entries whose process still runs (a reboot or a crash leaves stale ones).
if [[ -f "$STARTED" ]]; then
    tmp="$(mktemp "$DIR/run/started.XXXXXX")"
    while read -r name pid; do
        if alive "$name" "$pid"; then echo "$name $pid"; fi
    done <"$STARTED" >"$tmp"
    mv "$tmp" "$STARTED"
fi

# --- munge -----------------------------------------------------------------------------------------------
if munge_ok >/dev/null 2>&1; then
    log "munged already running ($MUNGE_SOCKET)"
else
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating /etc/munge/munge.key"
        install -d -o munge -g munge -m 0700 /etc/munge
        (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    install -d -o munge -g munge -m 0755 "$MUNGE_RUN"
    install -d -o munge -g munge -m 0711 /var/lib/munge
    install -d -o munge -g munge -m 0700 /var/log/munge
    runuser -u munge -- munged --socket="$MUNGE_SOCKET" --pid-file="$MUNGE_RUN/munged.pid" 9>&- \
        || die "munged did not start" /var/log/munge/munged.log
    wait_for munge_ok || die "munged started but does not answer on $MUNGE_SOCKET" /var/log/munge/munged.log
    record munged "$(pid_from "$MUNGE_RUN/munged.pid")"
    log "started munged ($MUNGE_SOCKET)"
fi

# --- configuration ---------------------------------------------------------------------------------------
render_conf() {
    local node_line gres_types="" gres_lines=""
    # The node line is what slurmd detects (CPUs, sockets, cores, threads, memory): a configured value above
    # the real one would drain the node.
    node_line="$(slurmd -C | head -n 1)"
    [[ "$node_line" == NodeName=* ]] || die "unexpected 'slurmd -C' output: $node_line"
    node_line="${node_line/NodeName=* CPUs=/NodeName=$HOST NodeAddr=127.0.0.1 CPUs=}"
    if ((FAKE_GPUS > 0)); then
        mkdir -p "$DIR/dev"
        for ((i = 0; i < FAKE_GPUS; i++)); do
            [[ -c "$DIR/dev/nvidia$i" ]] || mknod "$DIR/dev/nvidia$i" c 1 3
            gres_lines+="NodeName=$HOST Name=gpu File=$DIR/dev/nvidia$i"$'\n'
        done
        gres_types="GresTypes=gpu"
        node_line+=" Gres=gpu:$FAKE_GPUS"
    fi
    sed -e "s|@DIR@|$DIR|g" -e "s|@HOST@|$HOST|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" \
        -e "s|@GRES_TYPES@|$gres_types|g" -e "s|@NODE_LINE@|$node_line|g" \
        "$HERE/slurm.conf.in" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    awk -v lines="$gres_lines" '{ if ($0 == "@GRES_LINES@") printf "%s", lines; else print }' \
        "$HERE/gres.conf.in" >"$DIR/etc/gres.conf"
    printf 'export SLURM_CONF=%q\n' "$CONF" >"$DIR/env"
}

# --- slurmctld -------------------------------------------------------------------------------------------
pid="$(pid_from "$DIR/run/slurmctld.pid")"
if alive slurmctld "$pid"; then
    wait_for ctld_up || die "slurmctld (pid $pid) runs but does not answer" "$DIR/log/slurmctld.log"
    log "slurmctld already running (pid $pid, $CONF)"
else
    render_conf
    rm -f "$DIR/run/slurmctld.pid"
    slurmctld -f "$CONF" 9>&- || die "slurmctld did not start" "$DIR/log/slurmctld.log"
    wait_for ctld_up || die "slurmctld not up after ${READY_TIMEOUT_S}s (port $CTLD_PORT taken by another \
slurmctld? set MM_SLURM_CTLD_PORT and MM_SLURM_SLURMD_PORT)" "$DIR/log/slurmctld.log"
    pid="$(pid_from "$DIR/run/slurmctld.pid")"
    alive slurmctld "$pid" || die "slurmctld exited after starting" "$DIR/log/slurmctld.log"
    record slurmctld "$pid"
    log "started slurmctld (pid $pid)"
fi

# --- slurmd ----------------------------------------------------------------------------------------------
pid="$(pid_from "$DIR/run/slurmd.pid")"
if alive slurmd "$pid"; then
    log "slurmd already running (pid $pid)"
else
    rm -f "$DIR/run/slurmd.pid"
    slurmd -f "$CONF" -N "$HOST" 9>&- || die "slurmd did not start" "$DIR/log/slurmd.log"
    slurmd_alive() { alive slurmd "$(pid_from "$DIR/run/slurmd.pid")"; }
    wait_for slurmd_alive || die "slurmd is not running (port $SLURMD_PORT taken? set MM_SLURM_SLURMD_PORT)" \
        "$DIR/log/slurmd.log"
    pid="$(pid_from "$DIR/run/slurmd.pid")"
    record slurmd "$pid"
    log "started slurmd (pid $pid)"
fi

# --- node ready ------------------------------------------------------------------------------------------
if ! wait_for node_ready; then
    # A node left down/drained by an earlier run (state is recovered from $DIR/state) is put back once.
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    wait_for node_ready \
        || die "node $HOST is '$(node_state)' after ${READY_TIMEOUT_S}s, not idle" "$DIR/log/slurmd.log"
fi

summary
