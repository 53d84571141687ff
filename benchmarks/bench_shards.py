"""Shard writing throughput: our ShardWriter vs megatron-core's IndexedDatasetBuilder vs a raw numpy tofile.

The same documents (int32 ids, random lengths) go through each writer, interleaved over several rounds; the
best round of each is compared (other jobs share this machine). Memory is pre-faulted by an untimed warm-up
round (DESIGN §9: memory freed seconds earlier is slow to touch again on these VMs), and `sync` runs before
each timed write so no writer pays for the previous one's dirty pages. Bytes are checked equal.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_shards.py [--tokens 50000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from mm_assets.shards.indexed import ShardWriter, bin_path, idx_path  # noqa: E402
from mm_assets.storage.paths import fsync_path, sha256_file  # noqa: E402


def make_documents(tokens: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """One int32 stream (ids < 2**20) cut into documents of 64..4096 tokens (views, ~2k mean)."""
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, 1 << 20, tokens, dtype=np.int32)
    lengths = rng.integers(64, 4097, tokens // 64 + 1)
    cuts = np.cumsum(lengths)
    cuts = cuts[cuts < tokens]
    return stream, np.split(stream, cuts)



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    stream, documents = make_documents(args.tokens)
    tensors = [torch.from_numpy(d) for d in documents]  # zero-copy views, made outside the timing
    work = Path(tempfile.mkdtemp(prefix="bench_shards.", dir=args.dir))

    def megatron_builder(prefix: Path) -> None:
        builder = IndexedDatasetBuilder(str(bin_path(prefix)), dtype=np.int32)
        for t in tensors:
            builder.add_item(t)
            builder.end_document()
        builder.finalize(str(idx_path(prefix)))

    def megatron_builder_sha_fsync(prefix: Path) -> None:
        megatron_builder(prefix)
        for path in (bin_path(prefix), idx_path(prefix)):
            sha256_file(path)
            fsync_path(path)

    def ours_bytes_only(prefix: Path) -> None:
        with ShardWriter(prefix, durable=False, checksum=False) as writer:
            writer.add_all(documents)

    def ours_no_copy(prefix: Path) -> None:  # writev straight from the documents (the asset's mode)
        with ShardWriter(prefix, durable=False, checksum=False, copy=False) as writer:
            writer.add_all(documents)

    def ours_default(prefix: Path) -> None:  # what the asset runs: sha256 while writing, fsync, rename
        with ShardWriter(prefix) as writer:
            writer.add_all(documents)

    def raw_tofile(prefix: Path) -> None:  # the floor: the .bin bytes already in one array, no index
        stream.tofile(bin_path(prefix))

    writers = {
        "builder": megatron_builder,
        "ours": ours_bytes_only,
        "tofile": raw_tofile,
        "builder+sha256+fsync": megatron_builder_sha_fsync,
        "ours default": ours_default,
        "ours no-copy": ours_no_copy,
    }
    labels = {
        "builder": "megatron-core IndexedDatasetBuilder",
        "ours": "ShardWriter, bytes only",
        "tofile": "raw numpy tofile (.bin only)",
        "builder+sha256+fsync": "builder, then sha256 + fsync",
        "ours default": "ShardWriter default (sha256, fsync)",
        "ours no-copy": "ShardWriter copy=False (writev), bytes only",
    }
    times: dict[str, list[float]] = {name: [] for name in writers}
    try:
        for round_ in range(args.rounds + 1):  # round 0 is the untimed warm-up that pre-faults memory
            for i, (name, write) in enumerate(writers.items()):
                prefix = work / f"w{i}"
                os.sync()  # every writer starts with no dirty pages queued by the one before it
                start = time.perf_counter()
                write(prefix)
                elapsed = time.perf_counter() - start
                if round_:
                    times[name].append(elapsed)
                if round_ < args.rounds:  # keep the last round's files for the byte comparison
                    bin_path(prefix).unlink(missing_ok=True)
                    idx_path(prefix).unlink(missing_ok=True)

        same = all(sha256_file(p(work / "w0")) == sha256_file(p(work / "w1")) for p in (bin_path, idx_path))
        same &= sha256_file(bin_path(work / "w2")) == sha256_file(bin_path(work / "w1"))
        same &= all(sha256_file(p(work / "w5")) == sha256_file(p(work / "w0")) for p in (bin_path, idx_path))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"{len(documents):,} documents, {args.tokens:,} int32 tokens ({args.tokens * 4 / 1e6:.0f} MB), "
          f"{args.rounds} rounds: best [median]")
    for name, t in times.items():
        rate, rate_median = args.tokens / best[name] / 1e6, args.tokens / median[name] / 1e6
        print(f"  {labels[name]:36s} {rate:5.0f}M tokens/s [{rate_median:4.0f}M]  "
              f"{best[name]:.3f}s [{median[name]:.3f}s]")
    print(f"bytes identical to megatron-core's builder: {same}")

    def ratio(slow: str, fast: str) -> str:
        return f"{best[slow] / best[fast]:.2f}x [{median[slow] / median[fast]:.2f}x]"

    print(f"ShardWriter, bytes only: {ratio('builder', 'ours')} faster than the builder (goal >= 3x)")
    print(f"ShardWriter, bytes only: {ratio('ours', 'tofile')} the time of raw tofile (goal <= 2x)")
    print(f"ShardWriter, no copy:    {ratio('builder', 'ours no-copy')} faster than the builder (goal >= 3x)")
    print(f"ShardWriter, no copy:    {ratio('ours no-copy', 'tofile')} the time of raw tofile (goal <= 2x)")
    print(f"ShardWriter, default:    {ratio('builder+sha256+fsync', 'ours default')} faster than builder + sha + fsync")
    print(f"ShardWriter, default:    {ratio('ours default', 'tofile')} the time of raw tofile")

if __name__ == "__main__":
    main()
