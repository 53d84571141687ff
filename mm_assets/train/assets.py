"""The training assets of one experiment: `checkpoint` (a Megatron launch run locally or on Slurm through
Dagster Pipes) and `training_log` (Megatron's text log as the reference's JSONL)."""

import json
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.monitor.curves import markdown_image, plot_curves
from mm_assets.monitor.publisher import TrainingMetricsPublisher
from mm_assets.monitor.run_spec import run_spec
from mm_assets.partitions import experiments
from mm_assets.paths import atomic_write_text, sha256_file
from mm_assets.project import PROJECT_ROOT
from mm_assets.shards import VocabLayout
from mm_assets.train.blend_assets import BLEND_FILE, experiment_for, shard_resolver, training_blend
from mm_assets.train.config import ExperimentConfig, LaunchConfigError, ShardVocab
from mm_assets.train.megatron_log import parse_log, write_jsonl
from mm_assets.train.sbatch import LaunchFiles, render_launch
from resources.compute import LocalPipesClient
from resources.config import PipelineConfigResource
from resources.slurm import SlurmPipesClient
from resources.storage import StorageResource

RUN_FILE = "run.json"  # what the checkpoint asset ran: backend, job id, log, git commit, times
TRACKER_FILE = "latest_checkpointed_iteration.txt"  # Megatron's tracker of the latest complete checkpoint
LOG_JSONL = "training_log.jsonl"


def git_commit() -> str:
    """The project's commit (with -dirty when the tree has changes), or 'unknown' outside a checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def blend_vocab(exp: ExperimentConfig) -> ShardVocab:
    blend = json.loads((exp.run_dir / BLEND_FILE).read_text())
    return ShardVocab.from_layout(VocabLayout.read(Path(blend["vocab_file"])))


def render_experiment(exp: ExperimentConfig, storage: StorageResource) -> LaunchFiles:
    return render_launch(exp, vocab=blend_vocab(exp), shard_prefix=shard_resolver(storage))


def checkpoint_files(folder: Path) -> dict[str, str]:
    """sha256 of every file of one checkpoint iteration, by path relative to the folder."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def latest_checkpoint(checkpoint_dir: Path) -> tuple[int, Path] | None:
    tracker = checkpoint_dir / TRACKER_FILE
    if not tracker.is_file():
        return None
    iteration = int(tracker.read_text().strip())
    return iteration, checkpoint_dir / f"iter_{iteration:07d}"


def _job_env() -> dict[str, str]:
    """The job finds this project's Python first on PATH (a `python` entrypoint means this interpreter)."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(PROJECT_ROOT)}


def _launch(context, cfg, exp: ExperimentConfig, files: LaunchFiles, run: dict[str, Any], observer):
    """Run the rendered launch on the configured backend; returns the Pipes invocation."""
    if cfg.compute.backend == "slurm":
        client = SlurmPipesClient(shared_dir=str(exp.run_dir / "pipes"), slurm_conf=cfg.compute.slurm_conf,
                                  poll_interval_s=cfg.compute.poll_interval_s, log_tail_lines=cfg.compute.log_tail_lines)
        invocation = client.run(context=context, script=files.sbatch, job_name=exp.job_name, env=_job_env(),
                                observer=observer)
        meta = {k: getattr(v, "value", v) for k, v in invocation.metadata.items()}  # MetadataValue -> plain
        run["slurm_job_id"], run["log"] = str(meta.get("slurm_job_id")), str(meta.get("slurm_log"))
        return invocation
    log = exp.log_dir / f"{exp.id}-local-{run['started_at'].replace(':', '')}.log"
    run["log"] = str(log)
    client = LocalPipesClient(poll_interval_s=min(cfg.compute.poll_interval_s, 2.0),
                              log_tail_lines=cfg.compute.log_tail_lines)
    return client.run(context=context, command=[*files.program, *files.argv], log_path=log,
                      env={**exp.training.cluster.env, **_job_env()}, observer=observer)


@dg.asset(partitions_def=experiments, deps=[training_blend], group_name="train", kinds={"megatron", "slurm"},
          description="A training run from the experiment's rendered Megatron launch; the latest checkpoint + sha256.")
def checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
               storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp, _ = experiment_for(context, pipeline)
    try:
        files = render_experiment(exp, storage)
    except LaunchConfigError as err:
        raise dg.Failure(str(err)) from None
    for warning in files.warnings:
        context.log.warning(f"launch {exp.id}: {warning}")
    written = files.write(exp.run_dir / "launch")
    for folder in files.dirs_to_create:
        Path(folder).mkdir(parents=True, exist_ok=True)
    resumed = latest_checkpoint(exp.checkpoint_dir)
    run = {"experiment": exp.id, "backend": cfg.compute.backend, "git_commit": git_commit(),
           "config_path": str(exp.path), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "resumed_from_iteration": resumed[0] if resumed else None, "sbatch": str(written["sbatch"])}
    started = time.monotonic()
    spec = run_spec(exp, blend_vocab(exp).vocab_size, cfg.monitoring.peak_flops_per_device)
    publisher = TrainingMetricsPublisher.from_config(cfg.monitoring, spec, warn=context.log.warning,
                                                     targets_path=storage.monitoring_targets_path(exp.id))
    try:
        invocation = _launch(context, cfg, exp, files, run, publisher)
    finally:
        publisher.finish()
    run["wall_s"] = round(time.monotonic() - started, 2)
    latest = latest_checkpoint(exp.checkpoint_dir)
    if latest is None:
        raise dg.Failure(f"the run of {exp.id} finished without a checkpoint in {exp.checkpoint_dir} "
                         f"(log: {run['log']})")
    iteration, folder = latest
    hashes = checkpoint_files(folder)
    run.update(iteration=iteration, checkpoint=str(folder), sha256=hashes,
               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_text(exp.run_dir / RUN_FILE, json.dumps(run, indent=2, sort_keys=True))
    reported = {k: v.value for k, v in (invocation.get_materialize_result().metadata or {}).items()} \
        if invocation.get_results() else {}
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(folder)),
        "iteration": iteration,
        "sha256": dg.MetadataValue.json(hashes),
        "backend": cfg.compute.backend,
        "slurm_job_id": run.get("slurm_job_id") or "none",
        "resumed_from_iteration": run["resumed_from_iteration"] if resumed else -1,
        "git_commit": run["git_commit"],
        "wall_s": run["wall_s"],
        "log": dg.MetadataValue.path(run["log"]),
        **{f"trainer.{k}": v for k, v in reported.items() if isinstance(v, (int, float, str))},
    })


def read_run(exp: ExperimentConfig) -> dict[str, Any]:
    path = exp.run_dir / RUN_FILE
    if not path.is_file():
        raise dg.Failure(f"experiment {exp.id} has no {path}: materialize checkpoint first")
    return json.loads(path.read_text())


@dg.asset(partitions_def=experiments, deps=[checkpoint], group_name="train", kinds={"json"},
          description="The run's Megatron log lines as the reference's JSON Lines (§B.4), and its loss/grad-norm curves.")
def training_log(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                 storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp, _ = experiment_for(context, pipeline)
    run = read_run(exp)
    log = Path(run["log"])
    with open(log, encoding="utf-8", errors="replace") as f:
        parsed = parse_log(f, seq_length=exp.training.model.seq_length)
    out = exp.run_dir / LOG_JSONL
    write_jsonl(out, parsed.training)
    losses = [r.loss for r in parsed.training if r.loss is not None]
    curves = plot_curves([r.to_json_dict() for r in parsed.training], storage.training_curves_path(out),
                         title=f"{exp.id}: loss and grad norm",
                         grad_norm_threshold=cfg.monitoring.signals.grad_norm_explosion.threshold)
    return dg.MaterializeResult(metadata={
        "records": len(parsed.training),
        "validation_records": len(parsed.validation),
        "malformed_lines": len(parsed.malformed),
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "last_iteration": parsed.training[-1].iteration if parsed.training else 0,
        "nan_iterations": sum(r.nan_iterations for r in parsed.training),
        "skipped_iterations": sum(r.skipped_iterations for r in parsed.training),
        "path": dg.MetadataValue.path(str(out)),
        "source_log": dg.MetadataValue.path(str(log)),
        "curves": dg.MetadataValue.md(markdown_image(curves, f"{exp.id} loss and grad norm")),
        "curves_path": dg.MetadataValue.path(str(curves)),
    })


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dg.asset_check(asset=checkpoint, blocking=True, description="The run finished with a checkpoint whose files match their sha256.")
def checkpoint_complete(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    _, exp, _ = experiment_for(context, pipeline)
    run = read_run(exp)
    folder = Path(run["checkpoint"])
    bad = [name for name, sha in run["sha256"].items() if not (folder / name).is_file() or sha256_file(folder / name) != sha]
    return dg.AssetCheckResult(passed=bool(run["sha256"]) and not bad,
                               metadata={"files": len(run["sha256"]), "mismatched": ", ".join(bad) or "none"})


@dg.asset_check(asset=training_log, blocking=True, description="Every logged loss is finite and the log has records.")
def loss_finite(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    _, exp, _ = experiment_for(context, pipeline)
    records = load_jsonl(exp.run_dir / LOG_JSONL)
    bad = [r["iteration"] for r in records if r["loss"] is None or not math.isfinite(r["loss"])]
    return dg.AssetCheckResult(passed=bool(records) and not bad,
                               metadata={"records": len(records), "non_finite_at": str(bad[:20]) or "none"})


@dg.asset_check(asset=training_log, description="The loss fell over the run (first vs last logged interval).")
def loss_decreased(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    _, exp, _ = experiment_for(context, pipeline)
    losses = [r["loss"] for r in load_jsonl(exp.run_dir / LOG_JSONL) if r["loss"] is not None]
    passed = len(losses) >= 2 and losses[-1] < losses[0]
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"first_loss": losses[0] if losses else -1.0, "last_loss": losses[-1] if losses else -1.0})


TRAIN_CHECKS = [checkpoint_complete, loss_finite, loss_decreased]
