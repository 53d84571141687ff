"""Crawl progress lines: on a clock while nothing finishes, every tenth of the batch, and at the end."""

from mm_assets.crawl.ledger import CrawlRecord
from mm_assets.crawl.progress import CrawlProgress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def rec(status: str) -> CrawlRecord:
    return CrawlRecord(batch="b", line_no=1, url="http://127.0.0.1/x", status=status)


def test_reports_on_the_clock_every_tenth_and_at_the_end():
    clock, lines = Clock(), []
    progress = CrawlProgress("demo-b", 20, lines.append, clock=clock)
    progress.tick()
    clock.now += 9.9
    progress.tick()
    assert lines == [], "nothing due yet"
    clock.now += 0.1
    progress.tick()
    assert lines == ["crawl demo-b: 0/20 items done (0 ok, 0 skipped, 0 failed), 0.00 items/s, "
                     "ETA unknown (no item finished yet)"]
    clock.now += 10
    progress.record(rec("ok"))  # due by the clock, not by the count
    assert lines[-1] == "crawl demo-b: 1/20 items done (1 ok, 0 skipped, 0 failed), 0.05 items/s, ETA 6m20s"
    progress.record(rec("skipped"))  # neither due
    assert len(lines) == 2
    progress.record(rec("failed"))  # a tenth of the batch (2 items) since the last line
    assert lines[-1].startswith("crawl demo-b: 3/20 items done (1 ok, 1 skipped, 1 failed)")
    for _ in range(17):
        progress.record(rec("ok"))
    assert lines[-1] == "crawl demo-b: 20/20 items done (18 ok, 1 skipped, 1 failed), 1.00 items/s, took 20s"
    assert (progress.done, progress.failures) == (20, 1)
