"""A running crawl's progress for the log: outcome counts, items/s and ETA, reported on a clock.

The pool calls `record` for each finished item and `tick` while items are in flight, so a batch of slow
downloads still reports every `every_s` seconds, not only when an item finishes.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from mm_assets.crawl.ledger import CrawlRecord


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class CrawlProgress:
    """Reports `done/total` with ok / skipped / failed, items/s and ETA: every `every_s` seconds, every `every_n`
    items (default a tenth of the batch), and when the last item is done."""

    def __init__(self, batch: str, total: int, report: Callable[[str], None], *, every_s: float = 10.0,
                 every_n: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.batch, self.total, self.report, self.clock = batch, total, report, clock
        self.every_s = every_s
        self.every_n = every_n or max(1, math.ceil(total / 10))
        self.status: Counter[str] = Counter()
        self.started = self._last_at = clock()
        self._last_done = 0

    @property
    def done(self) -> int:
        return sum(self.status.values())

    @property
    def failures(self) -> int:
        return self.status["failed"]

    def record(self, rec: CrawlRecord) -> None:
        self.status[rec.status] += 1
        if self.done >= self.total or self.done - self._last_done >= self.every_n:
            self._emit()
        else:
            self.tick()

    def tick(self) -> None:
        if self.clock() - self._last_at >= self.every_s:
            self._emit()

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        if self.done >= self.total:
            eta = f"took {_duration(elapsed)}"
        elif self.done:
            eta = f"ETA {_duration((self.total - self.done) / rate)}"
        else:
            eta = "ETA unknown (no item finished yet)"
        counts = ", ".join(f"{self.status[s]} {s}" for s in ("ok", "skipped", "failed"))
        return f"crawl {self.batch}: {self.done}/{self.total} items done ({counts}), {rate:.2f} items/s, {eta}"

    def _emit(self) -> None:
        self._last_at, self._last_done = self.clock(), self.done
        self.report(self.line())
