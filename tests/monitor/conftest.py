"""Monitoring fixtures: a webhook receiver on 127.0.0.1 (what Alertmanager and the alert sensor post to)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


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


@pytest.fixture
def webhook():
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
    yield receiver
    server.shutdown()
    server.server_close()
