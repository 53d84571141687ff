"""A crawl batch as the token assets read it: real media files per item and the batch's metadata Parquet.

Only the columns the token and shard assets read are written (unique_id, data_paths, metadata.duration_seconds),
so these tests do not depend on the rest of the ETL. Media are made with the bundled ffmpeg and soundfile.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dagster as dg
import imageio_ffmpeg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf

from mm_assets.demo.media import make_clip, vtt
from mm_assets.partitions import crawl_batches
from mm_assets.shards.assets import token_shards
from mm_assets.tokens.assets import TOKEN_ASSETS
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

SECONDS = 1.0


def write_wav(path: Path, freq_hz: float, seconds: float = SECONDS, sr: int = 24000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq_hz * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32), sr)
    return path


def write_png(path: Path, pattern: str) -> Path:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"{pattern}=size=96x64", "-frames:v", "1", str(path)], check=True)
    return path


def write_media_batch(storage: StorageResource, batch: str, n: int, *, subtitles: bool = True,
                      seconds: float = SECONDS) -> dict[str, dict[str, Path]]:
    """`n` items `<batch>_<i>` with audio, video, a poster and (optionally) subtitles; returns their files."""
    items: dict[str, dict[str, Path]] = {}
    patterns = ("testsrc", "smptebars", "rgbtestsrc", "testsrc2")
    for i in range(n):
        uid = f"{batch}_{i}"
        folder = storage.store.local_dir(storage.layout.item_dir("test", uid))
        folder.mkdir(parents=True)
        files = {
            "audio": write_wav(folder / f"{uid}.wav", 220 + 110 * i, seconds),
            "video": make_clip(folder / f"{uid}.mp4", seconds=seconds, freq_hz=300 + 50 * i, size="64x48", fps=12,
                               pattern=patterns[i % len(patterns)]),
            "image": write_png(folder / f"{uid}.png", patterns[(i + 1) % len(patterns)]),
        }
        if subtitles:
            files["text"] = folder / f"{uid}.en.vtt"
            files["text"].write_text(vtt([f"item {i} says hello to the world", f"and counts to {i * 7} slowly"]))
        items[uid] = files
    write_metadata(storage, batch, items, seconds)
    return items


def write_metadata(storage: StorageResource, batch: str, items: dict[str, dict[str, Path]], seconds: float) -> Path:
    paths = pa.struct([(m, pa.string()) for m in ("text", "audio", "video", "image")])
    table = pa.table({
        "unique_id": pa.array(list(items), pa.string()),
        "data_paths": pa.array([{m: str(f[m]) if m in f else None for m in ("text", "audio", "video", "image")}
                                for f in items.values()], paths),
        "metadata": pa.array([{"duration_seconds": seconds}] * len(items),
                             pa.struct([("duration_seconds", pa.float64())])),
    })
    out = storage.store.local_path(storage.layout.metadata_file(batch))
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out


def materialize(config_path: Path, storage: StorageResource, batch: str, instance: dg.DagsterInstance,
                assets=(*TOKEN_ASSETS, token_shards)) -> dict[str, dict]:
    """Materialize `assets` for `batch` through Dagster; asset name -> materialization metadata (plain values)."""
    instance.add_dynamic_partitions(crawl_batches.name, [batch])
    result = dg.materialize(list(assets), partition_key=batch, instance=instance, selection=list(assets),
                            resources={"pipeline": PipelineConfigResource(path=str(config_path)), "storage": storage})
    assert result.success
    return _materializations(result)


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            out[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return out
