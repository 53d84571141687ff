"""Helpers of the monitoring tests: a webhook receiver on 127.0.0.1 (what Alertmanager and the alert sensor post
to), the loopback stack's handle and test config, and a sensor ticker."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mm_assets.config.base import DEFAULT_CONFIG

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


class Ticker:
    """Evaluates the alert sensor the way the daemon does, one tick per call, keeping its cursor."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance, self.cursor = defs, instance, None

    def __call__(self) -> str:
        sensor = self.defs.resolve_sensor_def("alert_sensor")
        ctx = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, definitions=self.defs,
                                      resources={"pipeline": self.defs.resources["pipeline"]})
        data = sensor.evaluate_tick(ctx)
        self.cursor = data.cursor
        return data.skip_message or ""
