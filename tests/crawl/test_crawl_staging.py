"""Staging folders of dead workers are swept, live ones are not; item locks exclude each other."""

from __future__ import annotations

import os
import threading
import time

from mm_assets.crawl.staging import ORPHAN_AGE_S, WorkerDirs, item_lock, sweep_stale


def test_sweep_removes_only_dead_workers(tmp_path):
    live = WorkerDirs(tmp_path)
    (live.fresh_work() / "item.mp4.part").write_bytes(b"x")
    dead = tmp_path / "w-1-dead"
    (dead / "work").mkdir(parents=True)
    (dead / "work" / "item.mp4.part").write_bytes(b"x")
    (tmp_path / "w-1-dead.lock").touch()  # nobody holds it: its worker was killed
    old_orphan, young_orphan = tmp_path / "w-2-old", tmp_path / "w-3-young"
    old_orphan.mkdir()
    young_orphan.mkdir()
    past = time.time() - ORPHAN_AGE_S - 10
    os.utime(old_orphan, (past, past))

    removed = sweep_stale(tmp_path)

    assert set(removed) == {dead, old_orphan}
    assert live.work.is_dir() and young_orphan.is_dir() and not dead.exists()
    live.close()
    assert not live.root.exists() and not live.lock_path.exists()
    assert sweep_stale(tmp_path / "missing") == []


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
