"""Monitoring fixtures: a webhook receiver on 127.0.0.1 (what Alertmanager and the alert sensor post to), and the
real loopback stack (scripts/monitoring/start.sh: Prometheus, Pushgateway, Alertmanager from Debian's packages)
with rules rendered from a test config (1 s scrape/evaluation, GradNormExplosion without `for`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from mm_assets.config import DEFAULT_CONFIG

REPO = Path(__file__).resolve().parents[2]
START, STOP = REPO / "scripts" / "monitoring" / "start.sh", REPO / "scripts" / "monitoring" / "stop.sh"
BINARIES = ("prometheus", "promtool", "prometheus-pushgateway", "prometheus-alertmanager", "amtool")


@dataclass
class Received:
    path: str
    body: dict
    at: float  # time.time() on arrival


@dataclass
class WebhookReceiver:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, predicate, timeout_s: float) -> Received | None:
        """The first message matching `predicate`, waiting up to `timeout_s` (polled every 20 ms)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                found = next((m for m in self.received if predicate(m)), None)
            if found is not None:
                return found
            time.sleep(0.02)
        return None


@contextlib.contextmanager
def webhook_receiver():
    """A loopback HTTP server recording every JSON POST; answers {"ok": true} (enough for Slack's API too)."""
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ctype = self.headers.get("Content-Type", "")
            if "json" in ctype:
                body = json.loads(raw or b"{}")
            else:  # slack_sdk posts form data unless told otherwise
                from urllib.parse import parse_qs

                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            with receiver.lock:
                receiver.received.append(Received(self.path, body, time.time()))
            out = json.dumps({"ok": True}).encode()
            self.send_response(receiver.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook():
    with webhook_receiver() as receiver:
        yield receiver


def require_prometheus() -> None:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run `bash scripts/monitoring/start.sh --install-only` "
                    "(apt-get install prometheus prometheus-pushgateway prometheus-alertmanager)", pytrace=False)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class Stack:
    root: Path  # the test project: configs/pipeline.yaml, data/, experiments/
    config: Path
    prometheus: str
    pushgateway: str
    alertmanager: str
    receiver: WebhookReceiver

    def alerts(self) -> list[dict]:
        """Prometheus's active alerts (pending and firing)."""
        return get_json(f"{self.prometheus}/api/v1/alerts")["data"]["alerts"]

    def pushed(self) -> list[dict]:
        """The Pushgateway's groups (its JSON API)."""
        return get_json(f"{self.pushgateway}/api/v1/metrics")["data"]


def stack_config(root: Path, pushgateway: str, receiver_url: str) -> Path:
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    cfg.update({
        "storage": {"root": str(root / "data")},
        "experiments_dir": str(root / "experiments"),
        "compute": {"backend": "local", "poll_interval_s": 0.5},
        "monitoring": {
            "pushgateway": {"url": pushgateway, "min_push_interval_s": 0.2, "timeout_s": 1.0},
            "peak_flops_per_device": {"cpu": 1.0e11},  # the CPU run gets an MFU too
            "signals": {"grad_norm_explosion": {"alert": {"for": "0s", "severity": "critical"}},
                        "metrics_stale": {"after": "6s"}},
            "alerts": {"webhooks": [{"name": "test", "url": f"{receiver_url}/dagster"}], "interval_s": 1},
        },
    })
    (root / "configs").mkdir(parents=True, exist_ok=True)
    path = root / "configs" / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _wait_scraping(stack: Stack, timeout_s: float = 60) -> None:
    """Prometheus applies service discovery at most every 5 s: wait for its first scrape of the Pushgateway."""
    deadline = time.monotonic() + timeout_s
    query = f"{stack.prometheus}/api/v1/query?query=up%7Bjob%3D%22pushgateway%22%7D"
    while time.monotonic() < deadline:
        if any(r["value"][1] == "1" for r in get_json(query)["data"]["result"]):
            return
        time.sleep(0.2)
    pytest.fail(f"Prometheus did not scrape the Pushgateway within {timeout_s} s", pytrace=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The loopback stack started by scripts/monitoring/start.sh, stopped (and purged) by stop.sh."""
    require_prometheus()
    root = tmp_path_factory.mktemp("stack")
    prom, pg, am = free_ports(3)
    with webhook_receiver() as receiver:
        config = stack_config(root, f"http://127.0.0.1:{pg}", receiver.url)
        subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(config), "monitor", "render",
                        "--out", str(root / "deploy")], check=True, capture_output=True, timeout=120)
        env = {**os.environ, "MM_MONITORING_DIR": str(root / "stack"), "MM_PROMETHEUS_PORT": str(prom),
               "MM_PUSHGATEWAY_PORT": str(pg), "MM_ALERTMANAGER_PORT": str(am), "MM_MONITORING_INTERVAL": "1s",
               "MM_ALERTMANAGER_GROUP_WAIT": "1s", "MM_ALERTMANAGER_GROUP_INTERVAL": "1s",
               "MM_ALERT_WEBHOOK_URLS": f"{receiver.url}/alertmanager", "MM_PIPELINE_CONFIG": str(config),
               "MM_MONITORING_RULES_DIR": str(root / "deploy" / "prometheus"), "MM_PYTHON": sys.executable}
        proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"start.sh failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        try:
            stack = Stack(root, config, f"http://127.0.0.1:{prom}", f"http://127.0.0.1:{pg}",
                          f"http://127.0.0.1:{am}", receiver)
            _wait_scraping(stack)
            yield stack
        finally:
            subprocess.run(["bash", str(STOP), "--purge"], env=env, capture_output=True, timeout=120)
