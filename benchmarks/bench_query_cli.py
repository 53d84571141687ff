"""`mm query` wall time (process start to exit) against baselines measured in the same run.

A temporary project gets a catalog over one metadata batch of `--rows` rows. Each command runs `--runs` times,
interleaved (other jobs share this machine), and the median is reported with its ratio to `python -c pass`
(the interpreter alone) and to `mm --help` (the CLI's own start-up). `import mm_assets.definitions` is the
start-up `mm query` paid before it stopped building every Dagster resource.

    .venv/bin/python benchmarks/bench_query_cli.py [--rows 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from mm_assets.etl.catalog import EXAMPLE_QUERIES, build_catalog  # noqa: E402
from resources.storage import StorageResource  # noqa: E402


def make_project(folder: Path, rows: int) -> Path:
    """A config whose storage root holds one batch of `rows` metadata rows and the catalog over it; its path."""
    root = folder / "data"
    (root / "metadata" / "bench").mkdir(parents=True)
    table = pa.table({
        "unique_id": [f"bench_{i}" for i in range(rows)],
        "source": [("youtube", "web", "demo")[i % 3] for i in range(rows)],
        "modalities": [["audio", "video"] if i % 2 else ["text"] for i in range(rows)],
        "metadata": [{"license": ("CC-BY-4.0", "CC0-1.0")[i % 2], "language": ("en", "zh", "fr")[i % 3],
                      "duration_seconds": float(i % 600)} for i in range(rows)],
    })
    pq.write_table(table, root / "metadata" / "bench" / "media_metadata.parquet")
    build_catalog(StorageResource(root=str(root)))
    config = folder / "configs" / "pipeline.yaml"
    config.parent.mkdir()
    config.write_text(f"storage: {{root: {root}}}\n")
    return config


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    python, mm = sys.executable, str(Path(sys.executable).with_name("mm"))
    work = Path(tempfile.mkdtemp(prefix="bench_query_cli."))
    try:
        config = make_project(work, args.rows)
        commands = {
            "python -c pass": [python, "-c", "pass"],
            "mm --help": [mm, "--help"],
            "import mm_assets.definitions (old query start-up)": [python, "-c", "import mm_assets.definitions"],
            'mm query "SELECT 1"': [mm, "--config", str(config), "query", "SELECT 1"],
            f"mm query licenses ({args.rows:,} rows)": [mm, "--config", str(config), "query",
                                                         EXAMPLE_QUERIES["licenses"]],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the page cache; not timed
            wall_time(argv)
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(wall_time(argv))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(t) for name, t in times.items()}
    base, cli = median["python -c pass"], median["mm --help"]
    print(f"median wall time of {args.runs} runs each")
    print(f"{'command':52} {'median s':>9} {'× python':>9} {'× mm --help':>12}")
    for name, t in median.items():
        print(f"{name:52} {t:9.3f} {t / base:9.1f} {t / cli:12.2f}")


if __name__ == "__main__":
    main()
