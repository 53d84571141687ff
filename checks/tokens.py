"""Checks on the token assets: codes inside their codebook, rates consistent with durations, no empty item,
and (as a warning) whether the tokenizer ran on pretrained weights."""

import math
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.tokens.assets import TOKEN_ASSETS
from mm_assets.tokens.store import read_identity, read_tokens
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


def expected_shape(modality: str, cfg: PipelineConfig, identity: dict[str, Any]) -> tuple[int, int]:
    """(codebook size, levels) each modality's codes must have."""
    t = cfg.tokenizers
    if modality == "text":
        return int(identity.get("config", {}).get("vocab_size", 0)), 1
    if modality == "audio":
        return t.audio.codebook_size, t.audio.n_q
    if modality == "image":
        return t.image.codebook_size, 1
    return t.video.codebook_size, t.video.num_quantizers


def rate_problem(modality: str, cfg: PipelineConfig, frames: int, seconds: float | None) -> str | None:
    """Why `frames` does not fit the item's duration (audio: 75 Hz; video: tubelet steps from fps/sampling)."""
    if seconds is None or seconds <= 0:
        return None
    if modality == "audio":
        expected = seconds * cfg.tokenizers.audio.frame_rate
        tolerance = max(0.15 * cfg.tokenizers.audio.frame_rate, 0.02 * expected)
    elif modality == "video":
        v = cfg.tokenizers.video
        grid = v.latent_grid[0] * v.latent_grid[1]
        if frames % grid:
            return f"{frames} codes per level is not a whole number of {grid}-code tubelet steps"
        steps = frames // grid
        expected = math.ceil(seconds * v.fps / v.sampling_rate) / v.tubelet_size[0]
        frames, tolerance = steps, 1.0
    else:
        return None
    if abs(frames - expected) > tolerance:
        return f"{frames} frames for {seconds:.3f} s, expected about {expected:.1f}"
    return None


def check_tokens(path: Path, metadata_path: Path, modality: str, cfg: PipelineConfig) -> tuple[bool, dict[str, Any]]:
    """Every ok item: non-empty, right number of levels, codes in [0, codebook), frame count fits its duration."""
    identity = read_identity(path)
    codes, failed = read_tokens(path)
    size, levels = expected_shape(modality, cfg, identity)
    durations = dict(
        pl.read_parquet(metadata_path, columns=["unique_id", "metadata"])
        .select("unique_id", pl.col("metadata").struct.field("duration_seconds")).iter_rows()
    )
    problems = []
    for uid, c in codes.items():
        if c.size == 0:
            problems.append(f"{uid}: empty")
        elif c.shape[0] != levels:
            problems.append(f"{uid}: {c.shape[0]} levels, expected {levels}")
        elif c.min() < 0 or c.max() >= size:
            problems.append(f"{uid}: codes in [{c.min()}, {c.max()}], outside [0, {size})")
        elif why := rate_problem(modality, cfg, c.shape[1], durations.get(uid)):
            problems.append(f"{uid}: {why}")
    meta = {"items": len(codes), "failed_items": len(failed), "codebook_size": size, "levels": levels,
            "problems": len(problems), "first_problems": "\n".join(problems[:10])}
    return not problems, meta


def _token_checks(asset: dg.AssetsDefinition) -> list[dg.AssetChecksDefinition]:
    modality = asset.key.path[-1].removesuffix("_tokens")

    @dg.asset_check(asset=asset, name="codes_valid", blocking=True,
                    description="Codes inside the codebook, levels as configured, rate consistent, no empty item.")
    def codes_valid(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                    storage: StorageResource) -> dg.AssetCheckResult:
        batch, local = context.partition_key, storage.store.local_path
        passed, meta = check_tokens(local(storage.layout.token_file(batch, modality)),
                                    local(storage.layout.metadata_file(batch)), modality, pipeline.load())
        return dg.AssetCheckResult(passed=passed, metadata=meta)

    @dg.asset_check(asset=asset, name="tokenizer_weights_pretrained",
                    description="Warns when codes come from randomly initialised weights (demo/tests only).")
    def weights_pretrained(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        token_file = storage.layout.token_file(context.partition_key, modality)
        identity = read_identity(storage.store.local_path(token_file))
        weights = identity.get("weights", "none")
        return dg.AssetCheckResult(passed=weights != "random", severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"weights": weights, "weights_sha256": str(identity.get("weights_sha256"))})

    return [codes_valid, weights_pretrained]


TOKEN_CHECKS = [check for asset in TOKEN_ASSETS for check in _token_checks(asset)]
