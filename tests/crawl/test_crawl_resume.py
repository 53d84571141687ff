"""A crawl killed mid-download resumes on the rerun: the partial file is continued with an HTTP Range request
(206), only the remainder is fetched, and the published file is byte-identical to the source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, parse_manifest
from mm_assets.crawl.pool import crawl_batch
from mm_assets.demo.media import build_resume_site
from mm_assets.demo.server import Trickle, serve
from mm_assets.storage.paths import sha256_file
from procs import alive, descendants, wait_until
from resources.storage import StorageResource

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
CLIP = "media/long.mp4"
TRICKLE = Trickle(chunk=1024, interval_s=0.05)  # ~20 kB/s: the 4 s clip (~85 kB) takes ~4 s
SETTINGS = dict(workers=1, subtitle_languages=["en"], audio_sample_rate_hz=16000, item_timeout_s=60.0,
                socket_timeout_s=5.0, retries=0)
CHILD = """
import json, sys
from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, parse_manifest
from mm_assets.crawl.pool import crawl_batch
from resources.storage import StorageResource
args = json.loads(sys.argv[1])
crawl_batch(StorageResource(root=args["root"]), CrawlConfig(**args["settings"]), BatchInfo(**args["batch"]),
            parse_manifest(args["manifest"]))
"""


def staged_part(storage: StorageResource) -> int:
    """Bytes of the clip's partial download on disk (0 when there is none yet)."""
    parts = list((storage.store.scratch / "crawl" / "items").glob("*/item.mp4.part"))
    return parts[0].stat().st_size if parts else 0


@pytest.mark.parametrize("signo", [signal.SIGKILL, signal.SIGTERM])
def test_killed_download_resumes_with_a_range_request(tmp_path, signo):
    site = build_resume_site(tmp_path / "site")
    size = (site.root / CLIP).stat().st_size
    storage = StorageResource(root=str(tmp_path / "store"))
    batch = BatchInfo(batch="demo-resume", source="demo", manifest_sha256="0" * 64, origin="test",
                      registered_at="2026-01-01T00:00:00+00:00", urls=1)
    with serve(site.root, slow_paths={CLIP: TRICKLE}) as server:
        manifest = "\n".join(site.urls(server.base_url))
        args = {"settings": SETTINGS, "root": storage.root, "batch": batch.__dict__, "manifest": manifest}
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO, text=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
        wait_until(lambda: staged_part(storage) >= size // 3, child, "a third of the clip on disk")
        workers = descendants(child.pid)
        child.send_signal(signo)
        child.wait(30)
        child.stderr.close()
        wait_until(lambda: not [p for p in workers if alive(p)], None, "the workers' end", timeout_s=10)
        first = server.served(CLIP)
        first_bytes, partial = server.bytes_sent(CLIP), staged_part(storage)
        assert [(r.status, r.range) for r in first] == [(200, None)] and 0 < partial < size
        assert not list(storage.store.local_dir(storage.layout.raw_dir("demo")).glob("*")), "nothing published"

        [record] = crawl_batch(storage, CrawlConfig(**SETTINGS), batch, parse_manifest(manifest))
        rerun = server.served(CLIP)[len(first):]

    assert [(r.status, r.range) for r in rerun] == [(206, f"bytes={partial}-")]
    assert rerun[0].sent == size - partial, "the rerun fetched only the remainder"
    print(f"\n{signal.Signals(signo).name}: clip {size} B; first run sent {first_bytes} B ({partial} B on disk); "
          f"rerun fetched {rerun[0].sent} B with Range bytes={partial}-")
    assert record.status == "ok"
    published = storage.store.local_dir(record.item_dir) / f"{record.item_id}.mp4"
    assert sha256_file(published) == sha256_file(site.root / CLIP)
    assert not list((storage.store.scratch / "crawl" / "items").iterdir()), "staging emptied by the publish"


def test_two_crawls_meeting_one_item_take_turns(tmp_path):
    """Two batches crawled at once, both naming the trickling clip: one downloads it, the other waits for the
    item lock and finds it published (archived); the clip is fetched once."""
    site = build_resume_site(tmp_path / "site")
    storage = StorageResource(root=str(tmp_path / "store"))
    batches = [BatchInfo(batch=f"demo-{n}", source="demo", manifest_sha256="0" * 64, origin="test",
                         registered_at="2026-01-01T00:00:00+00:00", urls=1) for n in ("a", "b")]
    results: dict[str, list] = {}
    with serve(site.root, slow_paths={CLIP: TRICKLE}) as server:
        entries = parse_manifest("\n".join(site.urls(server.base_url)))

        def crawl(batch: BatchInfo) -> None:
            results[batch.batch] = crawl_batch(storage, CrawlConfig(**SETTINGS), batch, entries)

        threads = [threading.Thread(target=crawl, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        served = server.served(CLIP)

    [a], [b] = results["demo-a"], results["demo-b"]
    outcomes = sorted([(a.status, a.reason, a.owner_batch), (b.status, b.reason, b.owner_batch)])
    winner = a.batch if a.status == "ok" else b.batch
    assert outcomes == [("ok", None, None), ("skipped", "archived", winner)]
    assert [(r.status, r.sent) for r in served] == [(200, (site.root / CLIP).stat().st_size)]
    assert a.item_dir == b.item_dir and len(list(storage.store.local_dir(storage.layout.raw_dir("demo")).iterdir())) == 1
