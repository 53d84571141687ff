"""N worker processes, each with one YoutubeDL for its lifetime; the parent hands out entries one at a time.

The parent is the only clock: `socket_timeout` does not bound a server that trickles bytes (DESIGN.md §9),
so an item that overruns `crawl.item_timeout_s` has its worker killed (with its ffmpeg children: workers
lead their own process group), is recorded as `timeout`, and a fresh worker takes the slot. A worker that
dies mid-item gives `worker_crashed`. Workers die with the parent (PR_SET_PDEATHSIG); when the crawl is
interrupted (an exception such as Dagster's interrupt reaches this loop), busy workers are killed at once and idle
ones stopped. A killed worker's partial download stays in its item's staging folder for the next attempt to
resume (staging.py); nothing half-written is ever visible under raw/.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, ManifestEntry
from mm_assets.crawl.ledger import CrawlRecord
from mm_assets.crawl.progress import CrawlProgress
from mm_assets.crawl.staging import sweep_stale
from mm_assets.crawl.worker import CrawlTarget, Job, worker_main
from mm_assets.storage.store import Storage

STARTUP_TIMEOUT_S = 120.0
TICK_S = 1.0  # the loop wakes at least this often, so progress reports keep their clock
MAX_START_FAILURES = 3


class CrawlPoolError(RuntimeError):
    """The workers themselves cannot run (not one URL's fault): the batch cannot be crawled here."""


def manifest_record(batch: str, entry: ManifestEntry) -> CrawlRecord:
    """The record of a manifest line that is never fetched (invalid or repeated URL)."""
    duplicate = (entry.error or "").startswith("duplicate")
    return CrawlRecord(batch=batch, line_no=entry.line_no, url=entry.url,
                       status="skipped" if duplicate else "failed",
                       reason="duplicate_url" if duplicate else "invalid_url", message=entry.error)


class _Slot:
    """One worker process and the entry it is working on."""

    def __init__(self, ctx: mp.context.SpawnContext, target: CrawlTarget, cfg: CrawlConfig):
        self.ctx, self.target, self.cfg = ctx, target, cfg
        self.start()

    def start(self) -> None:
        parent_conn, child_conn = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=worker_main, args=(child_conn, self.target, self.cfg, os.getpid()),
                                     daemon=True, name="mm-crawl-worker")
        self.proc.start()
        child_conn.close()  # so that the parent sees EOF when the worker dies
        self.conn = parent_conn
        self.ready = False
        self.started = time.monotonic()
        self.entry: ManifestEntry | None = None
        self.item_started = 0.0

    def send(self, entry: ManifestEntry) -> None:
        self.entry, self.item_started, self.activity = entry, time.monotonic(), "started"
        self.conn.send(Job(entry.line_no, entry.url))

    @property
    def deadline(self) -> float:
        if self.entry is not None:
            return self.item_started + self.cfg.item_timeout_s
        return float("inf") if self.ready else self.started + STARTUP_TIMEOUT_S

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the worker and its ffmpeg children
        except (ProcessLookupError, PermissionError, TypeError):
            self.proc.kill()
        self.proc.join(10)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.kill()
        self.conn.close()


def sweep_staging(staging: Path, cfg: CrawlConfig) -> list[Path]:
    """Staging of items nobody works on, beyond what the next run may resume (crawl.partial_max_*)."""
    return sweep_stale(staging, max_age_s=cfg.partial_max_age_hours * 3600,
                       max_bytes=int(cfg.partial_max_gb * 1e9))


def crawl_entries(
    target: CrawlTarget,
    cfg: CrawlConfig,
    entries: list[ManifestEntry],
    progress: CrawlProgress | None = None,
) -> list[CrawlRecord]:
    """Crawl every entry with `cfg.workers` processes; exactly one record per entry, ordered by line."""
    records: list[CrawlRecord] = []

    def finish(rec: CrawlRecord) -> None:
        records.append(rec)
        if progress is not None:
            progress.record(rec)

    pending: deque[ManifestEntry] = deque()
    for entry in entries:
        if entry.error:
            finish(manifest_record(target.batch, entry))
        else:
            pending.append(entry)
    if not pending:
        return sorted(records, key=lambda r: r.line_no)

    staging = Path(target.staging_dir)
    staging.mkdir(parents=True, exist_ok=True)
    sweep_staging(staging, cfg)  # what earlier runs left and will not resume
    ctx = mp.get_context("spawn")
    slots = [_Slot(ctx, target, cfg) for _ in range(min(cfg.workers, len(pending)))]
    start_failures = 0

    def failed(slot: _Slot, reason: str, message: str) -> None:
        entry = slot.entry
        finish(CrawlRecord(batch=target.batch, line_no=entry.line_no, url=entry.url, status="failed",
                           reason=reason, message=message,
                           elapsed_s=round(time.monotonic() - slot.item_started, 3)))
        slot.entry = None

    def replace(slot: _Slot) -> None:
        slot.kill()
        if pending:
            slot.start()

    try:
        while pending or any(s.entry is not None for s in slots):
            for slot in slots:
                if slot.ready and slot.entry is None and pending and slot.proc.is_alive():
                    slot.send(pending.popleft())
            live = [s for s in slots if not s.conn.closed]
            if not live:
                break
            timeout = max(0.0, min(s.deadline for s in live) - time.monotonic())
            wait([s.conn for s in live] + [s.proc.sentinel for s in live], timeout=min(timeout, TICK_S))
            if progress is not None:
                progress.tick()
            now = time.monotonic()
            for slot in live:
                message, eof = None, False
                try:
                    if slot.conn.poll():
                        message = slot.conn.recv()
                except (EOFError, OSError):
                    eof = True
                    slot.proc.join(5)  # the worker is exiting: its pipe closed
                if message is not None:
                    kind, payload = message
                    if kind == "ready":
                        slot.ready, start_failures = True, 0
                    elif kind == "activity":
                        slot.activity = payload
                    elif kind == "done":
                        slot.entry = None
                        finish(payload)
                    continue
                if eof or not slot.proc.is_alive():
                    slot.proc.join(1)
                    if slot.entry is not None:
                        failed(slot, "worker_crashed", f"the worker exited with code {slot.proc.exitcode} "
                                                       "while crawling this item")
                    elif not slot.ready:
                        start_failures += 1
                        if start_failures >= MAX_START_FAILURES:
                            raise CrawlPoolError(f"crawl workers exit at start (code {slot.proc.exitcode}, "
                                                 f"{start_failures} times): run one in the foreground to see why")
                    replace(slot)
                elif now >= slot.deadline:
                    if slot.entry is not None:
                        failed(slot, "timeout", f"no result within crawl.item_timeout_s={cfg.item_timeout_s:g}s "
                                                f"(last activity: {slot.activity}); the worker was killed and replaced")
                    else:
                        start_failures += 1
                        if start_failures >= MAX_START_FAILURES:
                            raise CrawlPoolError(f"crawl workers did not start within {STARTUP_TIMEOUT_S:g}s")
                    replace(slot)
    except BaseException:  # interrupted (Dagster raises on SIGINT/SIGTERM): stop now, not after the item
        for slot in slots:
            if not slot.conn.closed:
                slot.kill()  # a partial download stays staged for the next run to resume
        raise
    finally:
        for slot in slots:
            if not slot.conn.closed:
                slot.stop()
        sweep_staging(staging, cfg)
    return sorted(records, key=lambda r: r.line_no)


def crawl_batch(storage: Storage, cfg: CrawlConfig, batch: BatchInfo, entries: list[ManifestEntry],
                progress: CrawlProgress | None = None) -> list[CrawlRecord]:
    """Crawl a batch's `entries` into storage's item folders: one record per entry, ordered by line.

    Items already published (by an earlier run of this batch or by another batch) are not downloaded again:
    `skipped`/`archived`, with the publishing batch in `owner_batch`. A partial download that an interrupted
    run left staged is resumed. `progress` hears each record and the loop's clock.
    """
    target = CrawlTarget(storage.store, storage.layout, source=batch.source, batch=batch.batch)
    return crawl_entries(target, cfg, entries, progress)
