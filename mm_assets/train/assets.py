"""The training assets of one experiment partition: `training_blend` (the blend verified against what
token_shards recorded), `checkpoint` (the rendered Megatron launch run on the compute resource) and
`training_log` (Megatron's text log as the reference's JSONL).

Nothing is trusted on the way: the blend runs the whole launch preflight before it writes, `checkpoint` checks
the blend's shards and the checkpoint it resumes from before it submits (verified_shards.py,
verified_checkpoints.py) and, after the job, records the sha256s of the new checkpoints, never publishing one
whose loss was not finite. Each run's files are ArtifactLayout's runs/<experiment>/.
"""

import json
import subprocess
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.config.base import PROJECT_ROOT, ConfigError
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.monitor.curves import markdown_image, plot_curves
from mm_assets.monitor.publisher import TrainingMetricsPublisher
from mm_assets.monitor.run_spec import run_spec
from mm_assets.partitions import experiments
from mm_assets.shards.assets import token_shards
from mm_assets.shards.vocab import ShardVocab, VocabLayout
from mm_assets.storage.store import Storage
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.experiment import ExperimentConfig, load_experiment
from mm_assets.train.launch.preflight import (
    canary_resolver,
    launch_preflight,
    local_prefixes,
    shard_resolver,
    vocab_url,
)
from mm_assets.train.launch.run_folders import RunFolders
from mm_assets.train.launch.sbatch import LaunchFiles, render_launch
from mm_assets.train.lineage import (
    NO_CLAIMED_PARTITIONS,
    BlendSource,
    ShardMaterialization,
    blend_data_version,
    latest_shard_materialization,
    lineage_metadata,
)
from mm_assets.train.megatron_log.events import TrainingRecord
from mm_assets.train.megatron_log.stream import jsonl_text, parse_log
from mm_assets.train.run_files import log_ref, read_blend, read_run, record_attempt, run_training
from mm_assets.train.verified_checkpoints import (
    CheckpointHashes,
    CheckpointMismatchError,
    Resume,
    Settled,
    non_finite,
    prepare_resume,
    settle_after_job,
)
from mm_assets.train.verified_shards import launch_shard_problems, verify_blend_shard
from resources.compute import ComputeResource, JobSpec
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


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


def render_experiment(exp: ExperimentConfig, storage: Storage) -> LaunchFiles:
    blend = read_blend(storage, exp.id)
    vocab = ShardVocab.from_layout(VocabLayout.read(local_prefixes(storage)(blend["vocab_file"])))
    return render_launch(exp, RunFolders.of(exp, storage), vocab=vocab, shard_prefix=shard_resolver(storage),
                         canary_prefix=canary_resolver(storage))


def _plain(metadata) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in (metadata or {}).items()}  # MetadataValue -> plain


def _launch(context, compute: ComputeResource, job: JobSpec, run: dict[str, Any]) -> dg.PipesClientCompletedInvocation:
    """Run the job on the configured backend; run["log"] names the job's log even when the job fails."""
    run["log"] = str(job.log)  # the local backend's; Slurm's comes back with the result
    try:
        invocation = compute.run(context, job)
    except dg.Failure as err:
        run["log"] = _plain(err.metadata).get("log") or run["log"]
        raise
    meta = _plain(invocation.metadata)
    run["log"] = str(meta["log"])
    if "slurm_job_id" in meta:
        run["slurm_job_id"] = str(meta["slurm_job_id"])
    return invocation


def _logged_training(exp: ExperimentConfig, log: str | None) -> list[TrainingRecord]:
    if not log or not Path(log).is_file():
        return []
    with open(log, encoding="utf-8", errors="replace") as f:
        return parse_log(f, seq_length=exp.training.model.seq_length).training


def _attempt(storage: Storage, run: dict[str, Any], outcome: str) -> dict[str, Any]:
    """This job's entry in attempts.json: what training_log needs to read the run's whole history."""
    keys = ("started_at", "resumed_from_iteration", "slurm_job_id")
    return {**{k: run[k] for k in keys if k in run}, "log": log_ref(storage, run["log"]), "outcome": outcome}


def metrics_publisher(context, cfg: PipelineConfig, exp: ExperimentConfig, storage: Storage,
                      vocab_size: int) -> TrainingMetricsPublisher:
    """Publishes the job's log to the Pushgateway as it streams (monitoring.pushgateway; none: targets only)."""
    spec = run_spec(exp, vocab_size, cfg.monitoring.peak_flops_per_device)
    return TrainingMetricsPublisher.from_config(cfg.monitoring, spec, storage=storage, warn=context.log.warning)


def _before_launch(context, storage: Storage, files: LaunchFiles, hashes: CheckpointHashes) -> Resume:
    """The handoffs training relies on, checked before anything is submitted: the blend's shards as
    training_blend verified them, and the checkpoint to resume from as its run recorded it."""
    exp = files.experiment
    blend = read_blend(storage, exp.id)
    if "shards" not in blend:
        raise dg.Failure(f"experiment {exp.id}: its blend.json records no shard sha256s: rematerialize training_blend")
    problems = launch_shard_problems(blend["shards"], local_prefixes(storage))
    if problems:
        raise dg.Failure(f"experiment {exp.id}: refusing to launch: the blend's shards changed after "
                         "training_blend verified them:\n" + "\n".join(f"  - {p}" for p in problems))
    try:
        resume = prepare_resume(files.run.checkpoints, hashes,
                                fallback=exp.training.resume.on_mismatch == "previous_verified")
    except CheckpointMismatchError as err:
        raise dg.Failure(f"experiment {exp.id}: {err}") from None
    for note in resume.notes:
        context.log.warning(f"checkpoint {exp.id}: {note}")
    return resume


def _after_job(context, files: LaunchFiles, hashes: CheckpointHashes, since: int | None,
               records: list[TrainingRecord]) -> Settled:
    """Record the new checkpoints' sha256s; never leave one whose loss was not finite published or tracked."""
    exp = files.experiment
    settled = settle_after_job(files.run.checkpoints, hashes, records, since=since)
    if settled.recorded:
        context.log.info(f"checkpoint {exp.id}: recorded the sha256s of iterations {settled.recorded}")
    if settled.rejected:
        context.log.error(f"checkpoint {exp.id}: {settled.describe()}")
    return settled


def experiment_for(context, pipeline: PipelineConfigResource) -> tuple[PipelineConfig, ExperimentConfig]:
    cfg = pipeline.load()
    if cfg.training is None:
        raise dg.Failure("configs/pipeline.yaml has no training: section to base experiments on")
    try:
        return cfg, load_experiment(cfg, context.partition_key)
    except ConfigError as err:
        raise dg.Failure(str(err)) from None


def injected_canaries(exp: ExperimentConfig, storage: Storage) -> dict[str, dict[str, Any]]:
    """The eval sets' canaries the blend injects on purpose: task -> prefix, weight, marker and sample ids
    (from the canary set's canary.json). The evaluator splits on them; decontamination skips their shards."""
    out = {}
    for entry in exp.training.data.blend:
        if entry.canary_set is not None:
            key = storage.layout.canary_record(entry.canary_set)
            record = json.loads(storage.store.read_text(key)) if storage.store.exists(key) else {}
            out[entry.canary_set] = {"prefix": canary_resolver(storage)(entry.canary_set), "weight": entry.weight,
                                     "marker": record.get("marker"), "sample_ids": record.get("sample_ids", [])}
    return out


def resolve_experiment_blend(exp: ExperimentConfig, storage: Storage,
                             materialized: Callable[[str], ShardMaterialization | None] = lambda batch: None,
                             ) -> tuple[dict[str, Any], list[BlendSource]]:
    """Everything training needs to know about its data, as written to the run's blend.json: after the
    preflight, each shard's .bin/.idx verified against what token_shards recorded (`materialized`: batch →
    its latest token_shards materialization); and where each entry came from."""
    blend, layout, _ = launch_preflight(exp, storage)
    shards, sources, problems = {}, [], []
    for entry, item in zip(exp.training.data.blend, blend.items):
        batch = entry.shard_batch
        made = materialized(batch) if batch else None
        digests, found = verify_blend_shard(local_prefixes(storage)(item.prefix),
                                            materialized=made.metadata if made else None,
                                            manifest_required=batch is not None or entry.canary_set is not None)
        shards[item.prefix] = digests
        sources.append(BlendSource(item.key, item.prefix, item.weight, item.share, batch,
                                   made.run_id if made else None, digests.get("bin", {}).get("sha256"),
                                   canary_set=entry.canary_set))
        problems += [f"{item.key}: {p}" for p in found]
    if problems:
        raise LaunchConfigError(problems, source=f"experiment {exp.id} blend")
    return {
        "experiment": exp.id,
        "data_path": blend.data_path,
        "weight_sum": blend.weight_sum,
        "shares": blend.metadata(),
        "shards": shards,
        "sources": [s.as_dict() for s in sources],
        "vocab_sha256": layout.sha256,
        "vocab_size": layout.vocab_size,
        "vocab_file": vocab_url(blend.items[0].prefix),
        "canary": injected_canaries(exp, storage),
    }, sources


@dg.asset(partitions_def=experiments, group_name="train", kinds={"megatron"},
          deps=[dg.AssetDep(token_shards, partition_mapping=NO_CLAIMED_PARTITIONS),  # lineage.py says why
                dg.AssetKey("canary_set")],  # eval's canary shards, which a blend entry may inject on purpose
          description="The experiment's blend: weights + Megatron shard prefixes (--data-path), one vocabulary; "
                      "its materialization names the crawl batches it reads (metadata `lineage`) and any eval "
                      "canary set injected on purpose (data.blend canary_set).")
def training_blend(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.MaterializeResult:
    _, exp = experiment_for(context, pipeline)
    try:
        latest = latest_shard_materialization(context.instance, token_shards.key)
        blend, sources = resolve_experiment_blend(exp, storage, latest)
    except LaunchConfigError as err:
        raise dg.Failure(str(err)) from None
    out = storage.layout.run_blend(exp.id)
    storage.store.write_text(out, json.dumps(blend, indent=2, sort_keys=True))
    return dg.MaterializeResult(data_version=blend_data_version(blend), metadata={
        **lineage_metadata(sources),
        "data_path": " ".join(blend["data_path"]),
        "weight_sum": blend["weight_sum"],
        "shards": len(blend["shares"]),
        "vocab_size": blend["vocab_size"],
        "vocab_sha256": blend["vocab_sha256"],
        "shard_digests": dg.MetadataValue.json(blend["shards"]),
        "canary_sets": ", ".join(blend["canary"]) or "none",
        "path": dg.MetadataValue.path(storage.store.url(out)),
    })


@dg.asset(partitions_def=experiments, deps=[training_blend], group_name="train", kinds={"megatron", "slurm"},
          description="A training run from the experiment's rendered Megatron launch; the latest checkpoint + sha256.")
def checkpoint(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource, storage: StorageResource,
               compute: ComputeResource) -> dg.MaterializeResult:
    cfg, exp = experiment_for(context, pipeline)
    try:
        files = render_experiment(exp, storage)
        env = compute.environment(exp.training.cluster.env)  # a missing credentials file fails before any write
    except ConfigError as err:
        raise dg.Failure(str(err)) from None
    for warning in files.warnings:
        context.log.warning(f"launch {exp.id}: {warning}")
    layout, store = storage.layout, storage.store
    with store.working_dir(layout.run_dir(exp.id)):  # the job updates its checkpoints in place
        hashes = CheckpointHashes.load(store.working_path(layout.checkpoint_hashes(exp.id)))
        resume = _before_launch(context, storage, files, hashes)
        with store.publish(layout.run_launch(exp.id)) as staged:
            files.write(staged)
        for folder in files.run.to_create:
            folder.mkdir(parents=True, exist_ok=True)
        run = {"experiment": exp.id, "backend": compute.backend, "git_commit": git_commit(),
               "config_path": str(exp.path), "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "resumed_from_iteration": resume.iteration, "sbatch": store.url(layout.launch_file(exp.id, "sbatch")),
               "log": None}
        if resume.fell_back_from is not None:
            run["fell_back_from_iteration"] = resume.fell_back_from
        publisher = metrics_publisher(context, cfg, exp, storage, read_blend(storage, exp.id)["vocab_size"])
        job = JobSpec(name=exp.job_name, command=[*files.program, *files.argv], sbatch=files.sbatch,
                      log=store.working_path(layout.local_job_log(exp.id, run["started_at"])),
                      pipes_dir=files.run.pipes, env=env, on_line=publisher.on_line, on_start=publisher.job_started)
        started, outcome = time.monotonic(), "failed"
        try:
            invocation = _launch(context, compute, job, run)
            outcome = "ok"
        finally:  # a failed or cancelled job's checkpoints are settled too: the next run resumes from them
            publisher.finish()
            records = _logged_training(exp, run["log"])
            settled = _after_job(context, files, hashes, resume.iteration, records)
            run["attempts"] = record_attempt(storage, exp.id, _attempt(storage, run, outcome))
    run["wall_s"] = round(time.monotonic() - started, 2)
    if settled.rejected:
        raise dg.Failure(f"experiment {exp.id}: {settled.describe()} (log: {run['log']})")
    if records and non_finite(records[-1]):
        raise dg.Failure(f"experiment {exp.id}: the run logged a non-finite loss at iteration {records[-1].iteration}, "
                         f"its last; {settled.describe()} (log: {run['log']})")
    if settled.latest is None:
        raise dg.Failure(f"the run of {exp.id} finished without a checkpoint in {files.run.checkpoints} "
                         f"(log: {run['log']})")
    iteration = settled.latest
    folder = store.url(layout.checkpoint_dir(exp.id, iteration))  # published with the run folder
    sha256 = {name: entry["sha256"] for name, entry in hashes.entries[iteration]["files"].items()}
    run["log"] = store.url(store.key_of(run["log"]))  # the job wrote it in the run folder: where it is kept
    run.update(iteration=iteration, checkpoint=folder, sha256=sha256,
               finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    store.write_text(layout.run_record(exp.id), json.dumps(run, indent=2, sort_keys=True))
    reported = {k: v.value for k, v in (invocation.get_materialize_result().metadata or {}).items()} \
        if invocation.get_results() else {}
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(folder),
        "iteration": iteration,
        "sha256": dg.MetadataValue.json(sha256),
        "backend": compute.backend,
        "slurm_job_id": run.get("slurm_job_id") or "none",
        "resumed_from_iteration": resume.iteration if resume.iteration is not None else -1,
        "fell_back_from_iteration": resume.fell_back_from if resume.fell_back_from is not None else -1,
        "git_commit": run["git_commit"],
        "wall_s": run["wall_s"],
        "log": dg.MetadataValue.path(run["log"]),
        **{f"trainer.{k}": v for k, v in reported.items() if isinstance(v, (int, float, str))},
    })


@dg.asset(partitions_def=experiments, deps=[checkpoint], group_name="train", kinds={"json"},
          description="The run's Megatron log lines, every job's in order, as the reference's JSON Lines (§B.4); "
                      "its loss and grad-norm curves.")
def training_log(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                 storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp = experiment_for(context, pipeline)
    run = read_run(storage, exp.id)
    parsed, missing = run_training(storage, run, seq_length=exp.training.model.seq_length)
    for log in missing:
        context.log.warning(f"training_log {exp.id}: the job log {log} is gone: its iterations are missing")
    layout, store = storage.layout, storage.store
    out = layout.training_log(exp.id)
    store.write_text(out, jsonl_text(parsed.training))
    png = plot_curves([r.to_json_dict() for r in parsed.training], title=f"{exp.id}: loss and grad norm",
                      grad_norm_threshold=cfg.monitoring.signals.grad_norm_explosion.threshold)
    store.write_bytes(layout.training_curves(exp.id), png)
    losses = [r.loss for r in parsed.training if r.loss is not None]
    return dg.MaterializeResult(metadata={
        "records": len(parsed.training),
        "validation_records": len(parsed.validation),
        "malformed_lines": len(parsed.malformed),
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "last_iteration": parsed.training[-1].iteration if parsed.training else 0,
        "nan_iterations": sum(r.nan_iterations for r in parsed.training),
        "skipped_iterations": sum(r.skipped_iterations for r in parsed.training),
        "attempts": len(run.get("attempts") or [run]),
        "missing_logs": "\n".join(missing) or "none",
        "path": dg.MetadataValue.path(store.url(out)),
        "source_log": dg.MetadataValue.path(run["log"]),
        "curves": dg.MetadataValue.md(markdown_image(png, f"{exp.id} loss and grad norm")),
        "curves_path": dg.MetadataValue.path(store.url(layout.training_curves(exp.id))),
    })
