#!/usr/bin/env bash
# Start Prometheus, the Pushgateway and Alertmanager on loopback for development and CI (DESIGN.md §9), from
# Debian's packages (installed when missing), with configs generated from configs/pipeline.yaml:
#   rules:   deploy/prometheus/*.yml (`mm monitor render`), or MM_MONITORING_RULES_DIR
#   configs: $MM_MONITORING_DIR/etc/{prometheus,alertmanager}.yml (`mm monitor stack-config`), rewritten each start
# Idempotent: a daemon this script started that still runs is reloaded (SIGHUP) with the new configs, not
# restarted; what it starts is recorded in $MM_MONITORING_DIR/run/started, and stop.sh stops only that.
#
#   start.sh [--install-only]     --install-only: install the Debian packages if missing, start nothing
#
# Environment (all optional):
#   MM_MONITORING_DIR              runtime folder: configs, data, logs, pids          [/tmp/mm-monitoring]
#   MM_PROMETHEUS_PORT             Prometheus on 127.0.0.1                            [9090]
#   MM_PUSHGATEWAY_PORT            Pushgateway on 127.0.0.1                           [9091]
#   MM_ALERTMANAGER_PORT           Alertmanager on 127.0.0.1                          [9093]
#   MM_MONITORING_INTERVAL         scrape and rule evaluation interval               [15s]
#   MM_ALERTMANAGER_GROUP_WAIT     Alertmanager group_wait                            [30s]
#   MM_ALERTMANAGER_GROUP_INTERVAL Alertmanager group_interval                        [5m]
#   MM_ALERT_WEBHOOK_URLS          Alertmanager webhook receivers, space-separated    [none]
#   MM_MONITORING_RULES_DIR        folder with alert_rules.yml, recording_rules.yml   [deploy/prometheus]
#   MM_PIPELINE_CONFIG             pipeline config (storage root: file_sd targets)   [configs/pipeline.yaml]
#   MM_PYTHON                      the project's Python                               [.venv/bin/python]
#   MM_MONITORING_READY_TIMEOUT_S  seconds to wait for each daemon                    [30]
#
# Then set monitoring.pushgateway.url: http://127.0.0.1:$MM_PUSHGATEWAY_PORT in configs/pipeline.yaml.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIR="${MM_MONITORING_DIR:-/tmp/mm-monitoring}"
PROM_PORT="${MM_PROMETHEUS_PORT:-9090}"
PG_PORT="${MM_PUSHGATEWAY_PORT:-9091}"
AM_PORT="${MM_ALERTMANAGER_PORT:-9093}"
INTERVAL="${MM_MONITORING_INTERVAL:-15s}"
GROUP_WAIT="${MM_ALERTMANAGER_GROUP_WAIT:-30s}"
GROUP_INTERVAL="${MM_ALERTMANAGER_GROUP_INTERVAL:-5m}"
RULES_DIR="${MM_MONITORING_RULES_DIR:-$ROOT/deploy/prometheus}"
CONFIG="${MM_PIPELINE_CONFIG:-$ROOT/configs/pipeline.yaml}"
PY="${MM_PYTHON:-$ROOT/.venv/bin/python}"
READY_TIMEOUT_S="${MM_MONITORING_READY_TIMEOUT_S:-30}"
STARTED="$DIR/run/started"
# shellcheck source=../log.sh
source "$HERE/../log.sh"
# shellcheck source=../daemons.sh
source "$HERE/../daemons.sh"

# --- packages --------------------------------------------------------------------------------------------
install_packages() {
    local missing=()
    for bin in prometheus promtool prometheus-pushgateway prometheus-alertmanager amtool; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    ((${#missing[@]})) || return 0
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; install as root: apt-get install prometheus prometheus-pushgateway prometheus-alertmanager"
    log "installing prometheus prometheus-pushgateway prometheus-alertmanager (missing: ${missing[*]})"
    mkdir -p "$DIR/log"
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts each daemon on install (init.d or systemd), on every interface, unless policy-rc.d says
    # no; ours would then find its port taken. Containers usually have such a policy; elsewhere, deny starts
    # for the length of the install (and leave the services as Debian enabled them: stop.sh does not touch them).
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\n# scripts/monitoring/start.sh is installing packages: start no daemon\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    timeout 300 apt-get update -q >"$DIR/log/apt.log" 2>&1 \
        || die "apt-get update failed or took over 300 s" "$DIR/log/apt.log"
    # --no-install-recommends keeps it quick.
    timeout 600 apt-get install -y -q --no-install-recommends prometheus prometheus-pushgateway \
        prometheus-alertmanager >>"$DIR/log/apt.log" 2>&1 \
        || die "apt-get install failed or took over 600 s" "$DIR/log/apt.log"
    if [[ "$(trap -p EXIT)" == *policy-rc.d* ]]; then
        rm -f "$policy"
        trap - EXIT
    fi
}

install_packages
if [[ "${1:-}" == "--install-only" ]]; then
    log "prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}'), pushgateway and alertmanager installed"
    exit 0
fi
[[ -x "$PY" ]] || die "no Python at $PY: run \`make install\` (or set MM_PYTHON)"
for port in "$PROM_PORT" "$PG_PORT" "$AM_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "ports must be numbers, got '$port'"
done

mkdir -p "$DIR"/{etc,data/prometheus,data/alertmanager,run,log}
# One start/stop at a time; daemons are started with `9>&-` so they do not inherit the lock.
exec 9>"$DIR/run/lock"
flock -w 120 9 || die "timed out waiting for $DIR/run/lock (another start.sh or stop.sh is running)"

# HTTP 200 from http://127.0.0.1:$1$2, with bash's /dev/tcp (no curl needed).
http_ok() {
    local reply
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    reply="$(head -n 1 <&3)"
    exec 3>&-
    [[ "$reply" == *" 200 "* ]]
}
wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_S))
    until http_ok "$1" /-/ready 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        running "$(pid_from "$DIR/run/$2.pid")" || return 1
        sleep 0.2
    done
}

forget_stopped "$STARTED"

# --- configs ---------------------------------------------------------------------------------------------
[[ -f "$RULES_DIR/alert_rules.yml" ]] || die "no $RULES_DIR/alert_rules.yml: run \`mm monitor render\`"
webhooks=()
for url in ${MM_ALERT_WEBHOOK_URLS:-}; do webhooks+=(--webhook "$url"); done
"$PY" -m mm_assets.cli --config "$CONFIG" monitor stack-config --out "$DIR/etc" --rules-dir "$RULES_DIR" \
    --prometheus "127.0.0.1:$PROM_PORT" --pushgateway "127.0.0.1:$PG_PORT" --alertmanager "127.0.0.1:$AM_PORT" \
    --interval "$INTERVAL" --group-wait "$GROUP_WAIT" --group-interval "$GROUP_INTERVAL" "${webhooks[@]}" \
    >"$DIR/log/stack-config.log" 2>&1 || die "could not write the stack configs" "$DIR/log/stack-config.log"
promtool check config "$DIR/etc/prometheus.yml" >"$DIR/log/promtool.log" 2>&1 \
    || die "promtool rejects $DIR/etc/prometheus.yml or its rules" "$DIR/log/promtool.log"
amtool check-config "$DIR/etc/alertmanager.yml" >"$DIR/log/amtool.log" 2>&1 \
    || die "amtool rejects $DIR/etc/alertmanager.yml" "$DIR/log/amtool.log"

# --- daemons ---------------------------------------------------------------------------------------------
# start NAME PORT ARGS...: start NAME (a binary on PATH) unless our recorded one runs; then wait for /-/ready.
start() {
    local name="$1" port="$2" pid
    shift 2
    pid="$(pid_from "$DIR/run/$name.pid")"
    if alive "$name" "$pid"; then
        # Prometheus and Alertmanager re-read their configs on SIGHUP; the Pushgateway has none (and would exit).
        [[ "$name" == prometheus-pushgateway ]] || kill -HUP "$pid"
        wait_ready "$port" "$name" || die "$name (pid $pid) is not ready after a reload" "$DIR/log/$name.log"
        log "$name already running (pid $pid, configs reloaded): http://127.0.0.1:$port"
        return
    fi
    if http_ok "$port" /-/ready 2>/dev/null; then
        die "port $port already answers (another $name?): choose another port (MM_*_PORT) or stop it"
    fi
    setsid "$name" "$@" >>"$DIR/log/$name.log" 2>&1 9>&- </dev/null &
    echo $! >"$DIR/run/$name.pid"
    wait_ready "$port" "$name" || die "$name not ready on 127.0.0.1:$port after ${READY_TIMEOUT_S}s" "$DIR/log/$name.log"
    pid="$(pid_from "$DIR/run/$name.pid")"
    echo "$name $pid" >>"$STARTED"
    log "started $name (pid $pid): http://127.0.0.1:$port"
}

start prometheus-pushgateway "$PG_PORT" --web.listen-address="127.0.0.1:$PG_PORT" \
    --persistence.file="$DIR/data/pushgateway.metrics" --persistence.interval=1m
# --cluster.listen-address= (empty) turns off gossip, which would otherwise listen on all interfaces.
start prometheus-alertmanager "$AM_PORT" --config.file="$DIR/etc/alertmanager.yml" \
    --storage.path="$DIR/data/alertmanager" --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address=
start prometheus "$PROM_PORT" --config.file="$DIR/etc/prometheus.yml" --storage.tsdb.path="$DIR/data/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT"

log "monitoring is up: Prometheus http://127.0.0.1:$PROM_PORT  Pushgateway http://127.0.0.1:$PG_PORT  Alertmanager http://127.0.0.1:$AM_PORT"
log "  rules: $RULES_DIR  configs: $DIR/etc  logs: $DIR/log"
log "  push training metrics: monitoring.pushgateway.url: http://127.0.0.1:$PG_PORT (configs/pipeline.yaml)"
log "  stop: $HERE/stop.sh (stops only what start.sh started: $STARTED)"
