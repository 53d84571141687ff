"""Rerunning the token assets on an unchanged batch: first run (cold token cache, the baseline) vs rerun.

A batch of short clips (audio, video, poster image, subtitles) is tokenized by the four token assets through
Dagster (random weights, as in the demo) twice in one process; the rerun must cost < 10 % of the first run and
write byte-identical token files. An untimed warm-up batch of one other item pays the imports and Dagster's
first-run set-up first, and the demo tokenizer.json is trained before timing, so the baseline is tokenization.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_token_cache.py [--items 24] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import imageio_ffmpeg  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import soundfile as sf  # noqa: E402

from mm_assets.demo.media import make_clip, vtt  # noqa: E402
from mm_assets.partitions import crawl_batches  # noqa: E402
from mm_assets.tokens.assets import MODALITIES, TOKEN_ASSETS  # noqa: E402
from mm_assets.tokens.text import train_demo_bpe  # noqa: E402
from resources.config import PipelineConfigResource  # noqa: E402
from resources.storage import StorageResource  # noqa: E402

CONFIG = """storage: {root: data}
tokenizers:
  allow_random_weights: true
  audio: {batch_size: 1}
  text: {allow_train_demo: true}
"""
PATTERNS = ("testsrc", "smptebars", "rgbtestsrc", "testsrc2")


def make_batch(storage: StorageResource, batch: str, n: int, seconds: float, patterns=PATTERNS,
               base_hz: int = 200) -> None:
    """`n` items like the demo's clips (320x240 at 15 fps, a tone), each with a WAV, a poster and subtitles.
    Posters of one pattern are the same image (its first frame), as reused thumbnails are on the web."""
    rows = []
    for i in range(n):
        uid, hz, sr = f"{batch}_{i}", base_hz + 37 * i, 24000
        folder = storage.store.local_dir(storage.layout.item_dir("bench", uid))
        folder.mkdir(parents=True)
        clip = make_clip(folder / f"{uid}.mp4", seconds=seconds, freq_hz=hz, pattern=patterns[i % len(patterns)])
        t = np.arange(int(seconds * sr)) / sr
        sf.write(folder / f"{uid}.wav", (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), sr)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(clip), "-frames:v", "1",
                        str(folder / f"{uid}.png")], check=True)
        (folder / f"{uid}.en.vtt").write_text(vtt([f"clip {i} of {batch}", f"a tone at {hz} hertz"]))
        rows.append({"unique_id": uid, "data_paths": {
            "text": str(folder / f"{uid}.en.vtt"), "audio": str(folder / f"{uid}.wav"),
            "video": str(clip), "image": str(folder / f"{uid}.png")}, "metadata": {"duration_seconds": seconds}})
    out = storage.store.local_path(storage.layout.metadata_file(batch))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)


def run(config: Path, storage: StorageResource, batch: str, instance: dg.DagsterInstance) -> tuple[float, dict]:
    """Wall seconds of materializing the four token assets, and each one's cache counts."""
    resources = {"pipeline": PipelineConfigResource(path=str(config)), "storage": storage}
    started = time.perf_counter()
    result = dg.materialize(TOKEN_ASSETS, partition_key=batch, instance=instance, resources=resources)
    wall = time.perf_counter() - started
    counts = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            meta = {k: v.value for k, v in mat.metadata.items()}
            counts[mat.asset_key.to_user_string()] = (meta["cache_hits"], meta["cache_misses"], meta["wall_s"])
    return wall, counts


def token_bytes(storage: StorageResource, modality: str) -> bytes:
    return storage.store.read_bytes(storage.layout.token_file("bench", modality))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of each clip")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_token_cache."))
    try:
        (work / "configs").mkdir()
        config = work / "configs" / "pipeline.yaml"
        config.write_text(CONFIG)
        storage = StorageResource(root=str(work / "data"))
        make_batch(storage, "warmup", 1, args.seconds, ("pal75bars",), base_hz=3000)  # no file in common
        make_batch(storage, "bench", args.items, args.seconds)
        texts = [p.read_text() for p in storage.store.local_dir(storage.layout.raw_dir("bench")).rglob("*.vtt")]
        train_demo_bpe(texts, 2048, work / "models" / "tokenizer.json")
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(crawl_batches.name, ["warmup", "bench"])
            run(config, storage, "warmup", instance)
            first, first_counts = run(config, storage, "bench", instance)
            files = {m: token_bytes(storage, m) for m in MODALITIES}
            rerun, rerun_counts = run(config, storage, "bench", instance)
            same = files == {m: token_bytes(storage, m) for m in MODALITIES}
        print(f"{args.items} items of {args.seconds:g} s (audio, video, image, text), random weights, "
              f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
        print(f"{'asset':<14}{'first: misses':>14}{'wall_s':>8}{'rerun: hits':>13}{'wall_s':>8}")
        for name in sorted(first_counts):
            (_, miss, w1), (hit, _, w2) = first_counts[name], rerun_counts[name]
            print(f"{name:<14}{miss:>14}{w1:>8.2f}{hit:>13}{w2:>8.2f}")
        print(f"first run (baseline, cold cache): {first:.2f} s")
        print(f"rerun (same inputs, same tokenizers): {rerun:.2f} s")
        print(f"ratio rerun / first run: {rerun / first:.3f} ({100 * rerun / first:.1f} %, target < 10 %)")
        print(f"token files byte-identical: {same}")
        if not same:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
