"""Item staging: a stable folder per item that keeps only resumable partial downloads; the sweep leaves items in
progress and resumable partials (within the age and size bounds) alone; item locks exclude each other."""

from __future__ import annotations

import fcntl
import os
import threading
import time

from mm_assets.crawl.staging import item_key, item_lock, stage_item, sweep_stale
from mm_assets.storage.layout import ArtifactLayout

HOUR = 3600.0


def partial(staging, item_id: str, size: int, age_s: float = 0.0):
    """A staged item as an interrupted download leaves it: the .part plus finished side files."""
    with item_lock(staging, "demo", item_id):
        folder = stage_item(staging, "demo", item_id)
    (folder / "item.mp4.part").write_bytes(b"x" * size)
    (folder / "item.en.vtt").write_text("WEBVTT\n")
    past = time.time() - age_s
    for p in folder.iterdir():
        os.utime(p, (past, past))
    return folder


def test_an_item_is_staged_under_a_stable_key_keeping_only_partials(tmp_path):
    folder = partial(tmp_path, "clip-1", 10)
    (folder / "clip-1.wav").write_bytes(b"half-extracted audio")
    (folder / "item.f137.mp4.part-Frag3").write_bytes(b"f")
    (folder / "item.f137.mp4.ytdl").write_text("{}")
    (folder / "sub").mkdir()
    with item_lock(tmp_path, "demo", "clip-1"):
        again = stage_item(tmp_path, "demo", "clip-1")
    assert again == folder == tmp_path / ArtifactLayout.CRAWL_STAGED_ITEMS / item_key("demo", "clip-1")
    assert sorted(p.name for p in folder.iterdir()) == ["item.f137.mp4.part-Frag3", "item.f137.mp4.ytdl",
                                                        "item.mp4.part"]
    assert item_key("demo", "clip-1") != item_key("other", "clip-1") and len(item_key("demo", "x")) == 16


def test_sweep_keeps_work_in_progress_and_resumable_partials(tmp_path):
    busy = partial(tmp_path, "busy", 10, age_s=1000 * HOUR)
    resumable = partial(tmp_path, "resumable", 10, age_s=1 * HOUR)
    too_old = partial(tmp_path, "too-old", 10, age_s=200 * HOUR)
    nothing_to_resume = partial(tmp_path, "done-side-files", 10)
    (nothing_to_resume / "item.mp4.part").unlink()
    dead_worker, live_worker = tmp_path / "w-1-dead", tmp_path / "w-2-live"
    for folder in (dead_worker, live_worker):
        (folder / "work").mkdir(parents=True)
        folder.with_suffix(".lock").touch()

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:  # another crawl working on `busy` right now
        with item_lock(tmp_path, "demo", "busy"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    fd = os.open(live_worker.with_suffix(".lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = sweep_stale(tmp_path, max_age_s=168 * HOUR, max_bytes=10**9)
    finally:
        release.set()
        t.join(5)
        os.close(fd)

    assert set(removed) == {too_old, nothing_to_resume, dead_worker}
    assert busy.is_dir() and resumable.is_dir() and live_worker.is_dir()
    assert not dead_worker.with_suffix(".lock").exists()
    assert sweep_stale(tmp_path / "missing", max_age_s=1, max_bytes=0) == []


def test_sweep_bounds_the_bytes_kept_oldest_first(tmp_path):
    old = partial(tmp_path, "old", 600, age_s=3 * HOUR)
    mid = partial(tmp_path, "mid", 300, age_s=2 * HOUR)
    new = partial(tmp_path, "new", 300, age_s=1 * HOUR)
    assert sweep_stale(tmp_path, max_age_s=168 * HOUR, max_bytes=700) == [old]
    assert mid.is_dir() and new.is_dir()
    assert sweep_stale(tmp_path, max_age_s=168 * HOUR, max_bytes=0) == [mid, new]


def test_item_lock_is_exclusive(tmp_path):
    events = []

    def second():
        with item_lock(tmp_path, "demo", "abc"):
            events.append("second")

    with item_lock(tmp_path, "demo", "abc"):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        events.append("first done")
    t.join(5)
    assert events == ["first done", "second"]
    with item_lock(tmp_path, "demo", "abc"), item_lock(tmp_path, "demo", "other-id"):
        pass  # two items on different stripes: held together without waiting
