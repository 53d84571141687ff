"""A loopback HTTP server for the synthetic sites: the crawl's tests, demo and benchmark run offline on it.

It serves one folder on 127.0.0.1 from a background thread, answers single `Range` requests with 206 and
`Content-Range` (yt-dlp's resumed downloads use them), and can trickle chosen paths a few bytes at a time: a
server that keeps a connection alive without ever finishing, which yt-dlp's `socket_timeout` does not bound
(DESIGN.md §9). Every response is kept as a `Served` record (status, Range asked, body bytes sent so far), so
tests can tell a resumed download from a fresh one and count the bytes each run fetched.

URL path segments are looked up literally first (a file may be named `..%2Fx.html`), then percent-decoded;
a segment that is, or decodes to, `.`/`..` or contains a slash is refused, so nothing outside the folder is
ever served.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
TEMPLATED = {".html"}  # `{{base_url}}` in these is replaced by the server's own address
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class Trickle:
    """How a slow path is served: `chunk` bytes every `interval_s` seconds."""

    chunk: int = 64
    interval_s: float = 0.5


@dataclass
class Served:
    """One response: `sent` grows while the body is written, and stops where a client hung up."""

    method: str
    path: str  # the URL path, as requested
    status: int
    range: str | None  # the request's Range header
    sent: int = 0  # body bytes written to the socket


@dataclass
class LoopbackServer:
    """A running server; `url(path)` gives the absolute URL of a path under the served folder."""

    root: Path
    host: str
    port: int
    slow_paths: dict[str, Trickle] = field(default_factory=dict)
    last_modified: str | None = None  # an HTTP date sent with every file, as real servers send file times
    requests: list[str] = field(default_factory=list)  # "METHOD path" in arrival order, for tests
    responses: list[Served] = field(default_factory=list)  # in the order their headers were sent
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def url(self, path: str) -> str:
        return self.base_url + path.lstrip("/")

    def served(self, path: str) -> list[Served]:
        """The responses for one path ("media/x.mp4" or "/media/x.mp4"), oldest first."""
        want = "/" + path.lstrip("/")
        return [r for r in list(self.responses) if r.path == want]

    def bytes_sent(self, path: str) -> int:
        """Body bytes sent for `path` so far, over every response."""
        return sum(r.sent for r in self.served(path))


def _resolve(root: Path, url_path: str) -> Path | None:
    """The file for `url_path` under `root`, or None when it is missing or not confined."""
    try:
        return _walk(root, url_path)
    except (OSError, ValueError):  # a name too long for the file system, say
        return None


def _walk(root: Path, url_path: str) -> Path | None:
    current = root
    for part in (p for p in url_path.split("/") if p):
        if part in {".", ".."} or "\x00" in part:
            return None
        if (current / part).exists():
            current = current / part
            continue
        decoded = unquote(part)
        if decoded in {".", "..", ""} or "/" in decoded or "\x00" in decoded:
            return None
        current = current / decoded
    if current.is_dir():
        current = current / "index.html"
    real = current.resolve()
    if root.resolve() not in real.parents or not real.is_file():
        return None
    return real


class _Handler(BaseHTTPRequestHandler):
    server_version = "mm-loopback/1"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body in separate writes stall ~40 ms on delayed ACKs
    state: LoopbackServer  # set on the subclass made per server

    def log_message(self, format: str, *args) -> None:  # the base class's parameter name
        pass  # quiet: tests read `state.requests` instead

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = urlsplit(self.path).path
        self.state.requests.append(f"{self.command} {path}")
        file = _resolve(self.state.root, path)
        if file is None:
            self._record(path, 404)
            return self._send_plain(404, b"not found\n", body)
        if file.suffix.lower() in TEMPLATED:
            data = file.read_bytes().replace(b"{{base_url}}", self.state.base_url.encode())
        else:
            data = None
        size = len(data) if data is not None else file.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng and (m := _RANGE.match(rng.strip())):
            a, b = m.groups()
            if a:
                start, end = int(a), min(int(b), size - 1) if b else size - 1
            elif b:
                start = max(size - int(b), 0)
            if start >= size or start > end:
                self._record(path, 416)
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        served = self._record(path, status)
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        if self.state.last_modified:
            self.send_header("Last-Modified", self.state.last_modified)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if body:
            self._send_body(file, data, start, end - start + 1, served)

    def _record(self, path: str, status: int) -> Served:
        served = Served(self.command, path, status, self.headers.get("Range"))
        self.state.responses.append(served)
        return served

    def _send_body(self, file: Path, data: bytes | None, start: int, length: int, served: Served) -> None:
        trickle = self.state.slow_paths.get(urlsplit(self.path).path.lstrip("/"))
        step = trickle.chunk if trickle else 1 << 16
        with open(file, "rb") as f:
            f.seek(start)
            sent = 0
            while sent < length and not self.state.stopping.is_set():
                n = min(step, length - sent)
                chunk = data[start + sent:start + sent + n] if data is not None else f.read(n)
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                    return
                sent += len(chunk)
                served.sent = sent
                if trickle:
                    self.state.stopping.wait(trickle.interval_s)
        if sent < length:
            self.close_connection = True

    def _send_plain(self, code: int, data: bytes, body: bool) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.open_sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Kept-alive connections outlive serve_forever(); close them so a stopped server answers nothing."""
        with self._lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (a killed crawl worker) is normal here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@contextmanager
def serve(
    root: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    slow_paths: dict[str, Trickle] | None = None,
    last_modified: str | None = None,
) -> Iterator[LoopbackServer]:
    """Serve `root` on host:port (0 = an ephemeral port) until the block exits.

    `slow_paths` maps URL paths relative to the root (e.g. "media/slow.mp4") to how they trickle;
    `last_modified` (an HTTP date, e.g. Site.last_modified) is sent as every file's Last-Modified header. On
    exit the server stops accepting, trickling responses end within one interval, and the thread is joined.
    """
    if host not in {"127.0.0.1", "localhost"}:
        raise ValueError(f"host {host!r}: the demo server binds to loopback only")
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"cannot serve {root}: not a folder (build a site first)")
    state = LoopbackServer(root=root, host=host, port=port, slow_paths=dict(slow_paths or {}),
                           last_modified=last_modified)
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = _Server((host, port), handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name=f"loopback-{state.port}")
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_connections()
        thread.join(timeout=5)
