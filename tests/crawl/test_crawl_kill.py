"""A crawl killed mid-batch (SIGKILL, no cleanup of any kind) leaves no visible half-written item and no live
worker, and the rerun completes the batch without duplicating or re-downloading what was published."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, parse_manifest
from mm_assets.crawl.pool import crawl_batch
from mm_assets.crawl.staging import is_resumable
from mm_assets.demo.media import build_bench_site
from mm_assets.demo.server import Trickle, serve
from mm_assets.storage.layout import ArtifactLayout
from procs import alive, descendants
from resources.storage import StorageResource

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SETTINGS = dict(workers=2, subtitle_languages=["en"], audio_sample_rate_hz=16000, item_timeout_s=30.0,
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


def visible_items(raw: Path) -> list[Path]:
    return sorted(p for p in raw.iterdir() if not p.name.startswith(".")) if raw.is_dir() else []


def staged_files(staging: Path) -> list[Path]:
    return sorted(p for p in (staging / "items").rglob("*") if p.is_file())


def test_kill_mid_batch_then_rerun(tmp_path):
    site = build_bench_site(tmp_path / "site", n=6)
    # Each clip trickles in ~0.6 s, so the kill lands while workers are mid-download.
    slow = {f"media/bench-{i:03d}.mp4": Trickle(chunk=8192, interval_s=0.1) for i in range(6)}
    storage = StorageResource(root=str(tmp_path / "store"))
    raw = storage.store.local_dir(storage.layout.raw_dir("demo"))
    batch = BatchInfo(batch="demo-kill", source="demo", manifest_sha256="0" * 64, origin="test",
                      registered_at="2026-01-01T00:00:00+00:00", urls=6)
    with serve(site.root, slow_paths=slow) as server:
        manifest = "\n".join(site.urls(server.base_url))
        args = {"settings": SETTINGS, "root": storage.root, "batch": batch.__dict__, "manifest": manifest}
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not any((p / ArtifactLayout.ITEM_RECORD).exists() for p in visible_items(raw)):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no item was published within 60 s"
            time.sleep(0.02)
        workers = descendants(child.pid)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        child.stderr.close()
        time.sleep(0.5)  # PR_SET_PDEATHSIG takes the workers down with the crawl

        published = visible_items(raw)
        assert 1 <= len(published) < 6, "killed mid-batch"
        assert all((p / ArtifactLayout.ITEM_RECORD).is_file() for p in published), "no half-written item is visible"
        assert workers and not [pid for pid in workers if alive(pid)], "the workers died with the crawl"
        staging = (storage.store.scratch / "crawl")
        inodes = {p.name: (p / ArtifactLayout.ITEM_RECORD).stat().st_ino for p in published}

        records = crawl_batch(storage, CrawlConfig(**SETTINGS), batch, parse_manifest(manifest))

    archived = {r.item_id for r in records
                if (r.status, r.reason, r.owner_batch) == ("skipped", "archived", "demo-kill")}
    assert archived == set(inodes) and all(r.status == "ok" for r in records if r.item_id not in archived)
    items = visible_items(raw)
    assert sorted(p.name for p in items) == sorted(r.item_id for r in records), "no duplicates, none missing"
    assert all((p / ArtifactLayout.ITEM_RECORD).is_file() for p in items)
    assert {p.name: (p / ArtifactLayout.ITEM_RECORD).stat().st_ino for p in items if p.name in inodes} == inodes
    assert staged_files(staging) == [], "the rerun finished (or swept) what the killed crawl staged"
    assert not [p for p in raw.iterdir() if p.name.startswith(".")]


def test_a_worker_killed_mid_item_is_recorded_and_replaced(tmp_path, bad_site, bad_server):
    """A worker that dies (here: SIGKILL while the trickling clip downloads) costs one item, not the batch."""
    storage = StorageResource(root=str(tmp_path / "store"))
    staging = (storage.store.scratch / "crawl")
    batch = BatchInfo(batch="demo-crash", source="demo", manifest_sha256="0" * 64, origin="test",
                      registered_at="2026-01-01T00:00:00+00:00", urls=2)
    manifest = "\n".join([bad_server.url("bad/slow.html"), bad_server.url("bad/latin1.html")])
    killed: list[int] = []
    seen = len(bad_server.requests)

    def kill_when_downloading() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "GET /media/slow.mp4" not in bad_server.requests[seen:]:
            time.sleep(0.02)
        for worker in mp.active_children():
            if worker.name == "mm-crawl-worker":  # the one worker
                killed.append(worker.pid)
                worker.kill()

    killer = threading.Thread(target=kill_when_downloading)
    killer.start()
    records = crawl_batch(storage, CrawlConfig(**{**SETTINGS, "workers": 1, "item_timeout_s": 60.0}), batch,
                          parse_manifest(manifest))
    killer.join()
    crashed, ok = records
    assert killed and (crashed.status, crashed.reason) == ("failed", "worker_crashed")
    assert str(-signal.SIGKILL) in crashed.message and crashed.elapsed_s < 30
    assert ok.status == "ok", "a fresh worker took the next item"
    assert not [p for p in staged_files(staging) if not is_resumable(p.name)], "at most a partial to resume"
