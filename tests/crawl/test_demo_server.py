"""The loopback server: files, 404s, ranges, templating, confinement, trickling, clean stop."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import pytest

from mm_assets.demo.media import Site, SitePage, build_demo_site, write_manifest
from mm_assets.demo.server import Trickle, serve


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


@pytest.fixture
def site(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "page.html").write_text('<a href="{{base_url}}x">x</a>', encoding="utf-8")
    (tmp_path / "a" / "data.bin").write_bytes(bytes(range(100)))
    (tmp_path / "a" / "..%2Fodd.html").write_text("odd", encoding="utf-8")
    (tmp_path.parent / f"{tmp_path.name}-secret.txt").write_text("secret", encoding="utf-8")
    return tmp_path


def test_files_ranges_and_templates(site):
    with serve(site) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:") and srv.port > 0
        status, body, headers = get(srv.url("a/page.html"))
        assert status == 200 and body == f'<a href="{srv.base_url}x">x</a>'.encode()
        assert headers["Content-Type"].startswith("text/html")
        status, body, headers = get(srv.url("a/data.bin"), {"Range": "bytes=10-19"})
        assert status == 206 and body == bytes(range(10, 20)) and headers["Content-Range"] == "bytes 10-19/100"
        assert get(srv.url("a/data.bin"), {"Range": "bytes=-5"})[1] == bytes(range(95, 100))
        assert get(srv.url("a/data.bin"), {"Range": "bytes=200-"})[0] == 416
        assert get(srv.url("a/..%2Fodd.html"))[1] == b"odd"  # a literal file name wins over decoding
        assert get(srv.url("a/missing.html"))[0] == 404
        assert "GET /a/missing.html" in srv.requests


def test_responses_are_counted_per_path(site):
    """What the resume tests read: each response's status, the Range asked, and the body bytes sent."""
    with serve(site) as srv:
        get(srv.url("a/data.bin"))
        get(srv.url("a/data.bin"), {"Range": "bytes=60-"})
        get(srv.url("a/data.bin"), {"Range": "bytes=200-"})
        get(srv.url("a/missing.bin"))
        assert [(r.status, r.range, r.sent) for r in srv.served("a/data.bin")] == [
            (200, None, 100), (206, "bytes=60-", 40), (416, "bytes=200-", 0)]
        assert srv.bytes_sent("/a/data.bin") == 140
        assert [(r.method, r.status) for r in srv.served("a/missing.bin")] == [("GET", 404)]


def test_nothing_outside_the_root_is_served(site):
    with serve(site) as srv:
        for path in (f"../{site.name}-secret.txt", f"a/%2e%2e/../{site.name}-secret.txt",
                     f"%2e%2e%2f{site.name}-secret.txt", f"a/..%2f..%2f{site.name}-secret.txt"):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                sock.sendall(f"GET /{path} HTTP/1.0\r\n\r\n".encode())
                reply = sock.makefile("rb").read()
            assert reply.split(b" ")[1] == b"404" and b"secret" not in reply, path
    with pytest.raises(ValueError, match="loopback"), serve(site, host="0.0.0.0"):
        pass


def test_trickle_and_clean_stop(site):
    with serve(site, slow_paths={"a/data.bin": Trickle(chunk=10, interval_s=0.2)}) as srv:
        start = time.monotonic()
        status, body, _ = get(srv.url("a/data.bin"))
        assert status == 200 and body == bytes(range(100))
        assert time.monotonic() - start >= 1.5  # ten chunks, 0.2 s apart
        port = srv.port
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_write_manifest(tmp_path):
    site = Site(tmp_path, (SitePage("a.html", "ok"), SitePage("b/c.html", "ok")))
    path = write_manifest(site, "http://127.0.0.1:9/", tmp_path / "sources" / "demo" / "x.txt", header="demo")
    assert path.read_text(encoding="utf-8") == "# demo\nhttp://127.0.0.1:9/a.html\nhttp://127.0.0.1:9/b/c.html\n"


def test_sites_are_byte_identical_when_rebuilt(tmp_path, demo_site):
    """Bit-exact encodes and fixed text: rebuilding the demo gives the same bytes (and the same sha256s)."""
    rebuilt = build_demo_site(tmp_path / "again")

    def files(root):
        return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert rebuilt.pages == demo_site.pages
    assert files(rebuilt.root) == files(demo_site.root)


def test_odd_paths_are_404_not_errors(site):
    with serve(site) as srv:
        assert get(srv.url("a/" + "x" * 5000))[0] == 404
        assert get(srv.url("a/%00.html"))[0] == 404
        assert get(srv.url("a/page.html"))[0] == 200  # still serving


def test_last_modified_is_sent_only_when_asked(site):
    with serve(site) as srv:
        assert "Last-Modified" not in get(srv.url("a/data.bin"))[2]
    stamp = "Mon, 01 Jun 2026 12:00:00 GMT"
    with serve(site, last_modified=stamp) as srv:
        assert get(srv.url("a/data.bin"))[2]["Last-Modified"] == stamp
        assert get(srv.url("a/data.bin"), {"Range": "bytes=1-2"})[2]["Last-Modified"] == stamp
