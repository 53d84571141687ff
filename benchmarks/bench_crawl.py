"""Crawl throughput on loopback: items/s of our worker pool against one yt-dlp process per URL.

Baseline (named, measured in the same run): `python -m yt_dlp` started once per URL with the reference's
recipe as a command line (mm_assets.crawl.options.cli_args: same format, subtitles, wav extraction at the same
rate, info.json, kept video), run `--workers` at a time. Ours: crawl_batch (raw_media's crawl) with the same number
of worker processes, each holding one YoutubeDL; its time includes starting the workers. DESIGN.md §9 expects
~10x. Both must produce every item (video, wav, subtitles, info.json), or the run fails.

    .venv/bin/python benchmarks/bench_crawl.py [--items 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.batch import BatchInfo, parse_manifest
from mm_assets.crawl.ledger import CrawlRecord
from mm_assets.crawl.options import cli_args
from mm_assets.crawl.pool import crawl_batch
from mm_assets.crawl.progress import CrawlProgress
from mm_assets.demo.media import build_bench_site
from mm_assets.demo.server import serve
from resources.storage import StorageResource

SOURCE = "bench"


def count_outputs(raw: Path) -> dict[str, int]:
    return {ext: len(list(raw.rglob(f"*.{ext}"))) for ext in ("mp4", "wav", "vtt", "info.json")}


def run_baseline(urls: list[str], cfg: CrawlConfig, out: Path) -> float:
    """One `python -m yt_dlp` process per URL, cfg.workers at a time; returns wall seconds."""
    archive = out / "archive.txt"
    base = [sys.executable, "-m", "yt_dlp", *cli_args(cfg, str(out), SOURCE, str(archive))]

    def one(url: str) -> int:
        return subprocess.run([*base, url], capture_output=True, check=False, timeout=300).returncode

    start = time.perf_counter()
    with ThreadPoolExecutor(cfg.workers) as pool:
        codes = list(pool.map(one, urls))
    wall = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"baseline: {sum(c != 0 for c in codes)} yt-dlp processes failed (exit codes {codes})")
    return wall


def run_pool(urls: list[str], cfg: CrawlConfig, root: Path) -> tuple[float, float]:
    """Our pool; returns (wall seconds including worker start-up, seconds from the first item done to the last)."""
    storage = StorageResource(root=str(root))
    entries = parse_manifest("\n".join(urls))
    batch = BatchInfo(batch="bench-1", source=SOURCE, manifest_sha256="-", origin="bench",
                      registered_at="-", urls=len(entries))
    progress = DoneTimes(batch.batch, len(entries))
    start = time.perf_counter()
    records = crawl_batch(storage, cfg, batch, entries, progress=progress)
    wall = time.perf_counter() - start
    bad = [r for r in records if r.status != "ok"]
    if bad:
        raise SystemExit(f"pool: {len(bad)} items not ok, first: {bad[0]}")
    return wall, progress.done_at[-1] - progress.done_at[0]


class DoneTimes(CrawlProgress):
    """Progress that notes when each item finished, and reports nothing."""

    def __init__(self, batch: str, total: int):
        super().__init__(batch, total, lambda _line: None)
        self.done_at: list[float] = []

    def record(self, rec: CrawlRecord) -> None:
        super().record(rec)
        self.done_at.append(time.perf_counter())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = CrawlConfig(workers=args.workers, subtitle_languages=["en"])
    with tempfile.TemporaryDirectory(prefix="bench-crawl-") as tmp:
        tmp_path = Path(tmp)
        site = build_bench_site(tmp_path / "site", n=args.items)
        with serve(site.root) as server:
            urls = site.urls(server.base_url)
            base_s = run_baseline(urls, cfg, tmp_path / "baseline")
            pool_s, steady_s = run_pool(urls, cfg, tmp_path / "pool")
        outputs = {name: count_outputs(tmp_path / name / "raw" / SOURCE) for name in ("baseline", "pool")}
    for name, counts in outputs.items():
        if any(v != args.items for v in counts.values()):
            raise SystemExit(f"{name} did not produce every file of every item: {counts}")
    n = args.items
    print(f"crawl of {n} loopback items, {args.workers} workers, "
          f"{cfg.audio_format} at {cfg.audio_sample_rate_hz} Hz, subtitles {cfg.subtitle_languages}")
    print(f"  baseline (one yt-dlp process per URL): {base_s:7.2f} s  {n / base_s:6.2f} items/s")
    print(f"  worker pool (one YoutubeDL per worker): {pool_s:7.2f} s  {n / pool_s:6.2f} items/s")
    print(f"  speed-up: {base_s / pool_s:.1f}x (pool time includes starting its workers)")
    if n > 1 and steady_s > 0:
        steady = (n - 1) / steady_s
        print(f"  pool once started: {steady:6.2f} items/s, {steady * base_s / n:.1f}x the baseline")


if __name__ == "__main__":
    main()
