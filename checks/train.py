"""Checks on the training assets: the blend's shards as recorded, the checkpoint's files as hashed, a finite
loss that falls; and on training_log, the alert rules' conditions over the whole run (mm_assets/monitor/
run_checks.py: stagnation, grad-norm explosion, skipped iterations, throughput/MFU floors) with severities from
`monitoring.signals.*.check`, which the alert sensor delivers when they fail."""

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.monitor import run_checks
from mm_assets.monitor.run_spec import run_spec
from mm_assets.storage.paths import sha256_file
from mm_assets.train.assets import checkpoint, experiment_for, training_blend, training_log
from mm_assets.train.launch.blend import missing_shard_files
from mm_assets.train.launch.preflight import local_prefixes
from mm_assets.train.run_files import read_blend, read_run, read_training_log, run_training
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


def size_problems(shards: Mapping[str, Mapping[str, Any]], local: Callable[[str], Path]) -> list[str]:
    """Each recorded .bin/.idx still has its recorded size (cheap: the asset has just hashed them)."""
    problems = []
    for prefix, digests in shards.items():
        for kind, recorded in digests.items():
            path = Path(f"{local(prefix)}.{kind}")
            size = path.stat().st_size if path.is_file() else None
            if size != recorded.get("bytes"):
                problems.append(f"{path}: {'missing' if size is None else f'{size} bytes'}, "
                                f"blend.json recorded {recorded.get('bytes')}")
    return problems


@dg.asset_check(asset=training_blend, blocking=True,
                description="Weights positive, every prefix's .bin/.idx exists with its recorded size, one vocabulary.")
def blend_complete(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.AssetCheckResult:
    _, exp = experiment_for(context, pipeline)
    blend = read_blend(storage, exp.id)
    prefixes = list(blend["shares"])
    local = local_prefixes(storage)
    missing = missing_shard_files([local(p) for p in prefixes])
    sizes = size_problems(blend.get("shards", {}), local)
    share_sum = sum(blend["shares"].values())
    return dg.AssetCheckResult(
        passed=not missing and not sizes and set(blend.get("shards", {})) == set(prefixes)
        and abs(share_sum - 1.0) < 1e-9 and blend["weight_sum"] > 0,
        metadata={"prefixes": len(prefixes), "missing": "\n".join(map(str, missing)) or "none",
                  "size_mismatches": "\n".join(sizes) or "none", "share_sum": share_sum},
    )


@dg.asset_check(asset=checkpoint, blocking=True, description="The run finished with a checkpoint whose files match their sha256.")
def checkpoint_complete(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                        storage: StorageResource) -> dg.AssetCheckResult:
    _, exp = experiment_for(context, pipeline)
    run = read_run(storage, exp.id)
    folder = storage.store.local_dir(storage.store.key_of(run["checkpoint"]))  # the published copy
    bad = [name for name, sha in run["sha256"].items() if not (folder / name).is_file() or sha256_file(folder / name) != sha]
    return dg.AssetCheckResult(passed=bool(run["sha256"]) and not bad,
                               metadata={"files": len(run["sha256"]), "mismatched": ", ".join(bad) or "none"})


@dg.asset_check(asset=training_log, blocking=True, description="Every logged loss is finite and the log has records.")
def loss_finite(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                storage: StorageResource) -> dg.AssetCheckResult:
    _, exp = experiment_for(context, pipeline)
    records = read_training_log(storage, exp.id)
    bad = [r["iteration"] for r in records if r["loss"] is None or not math.isfinite(r["loss"])]
    return dg.AssetCheckResult(passed=bool(records) and not bad,
                               metadata={"records": len(records), "non_finite_at": str(bad[:20]) or "none"})


@dg.asset_check(asset=training_log, description="The loss fell over the run (first vs last logged interval).")
def loss_decreased(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.AssetCheckResult:
    _, exp = experiment_for(context, pipeline)
    losses = [r["loss"] for r in read_training_log(storage, exp.id) if r["loss"] is not None]
    passed = len(losses) >= 2 and losses[-1] < losses[0]
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"first_loss": losses[0] if losses else -1.0, "last_loss": losses[-1] if losses else -1.0})


def _verdict(verdict: run_checks.Verdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=verdict.passed, severity=dg.AssetCheckSeverity(verdict.severity),
                               metadata=verdict.metadata)


@dg.asset_check(asset=training_log, description="The mean loss keeps moving from one window of iterations to the next.")
def loss_not_stagnant(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                      storage: StorageResource) -> dg.AssetCheckResult:
    cfg, exp = experiment_for(context, pipeline)
    return _verdict(run_checks.loss_stagnation(read_training_log(storage, exp.id), cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="No logged grad norm above monitoring.signals.grad_norm_explosion.threshold.")
def grad_norm_bounded(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                      storage: StorageResource) -> dg.AssetCheckResult:
    cfg, exp = experiment_for(context, pipeline)
    return _verdict(run_checks.grad_norm_explosion(read_training_log(storage, exp.id), cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="Skipped iterations (loss-scale overflow, NaN) within the allowed count.")
def few_skipped_iterations(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                           storage: StorageResource) -> dg.AssetCheckResult:
    cfg, exp = experiment_for(context, pipeline)
    # The reference's JSONL has no skip counts: they come from Megatron's log lines, every job's.
    parsed, _ = run_training(storage, read_run(storage, exp.id), seq_length=exp.training.model.seq_length)
    skipped = sum(r.skipped_iterations for r in parsed.training)
    return _verdict(run_checks.skipped_iterations(read_training_log(storage, exp.id), skipped, cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="Median tokens/s and the MFU from it above their floors.")
def throughput_above_floor(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                           storage: StorageResource) -> dg.AssetCheckResult:
    cfg, exp = experiment_for(context, pipeline)
    spec = run_spec(exp, read_blend(storage, exp.id)["vocab_size"], cfg.monitoring.peak_flops_per_device)
    return _verdict(run_checks.throughput_floor(read_training_log(storage, exp.id), spec, cfg.monitoring.signals))


TRAIN_CHECKS = [blend_complete, checkpoint_complete, loss_finite, loss_decreased,
                loss_not_stagnant, grad_norm_bounded, few_skipped_iterations, throughput_above_floor]
