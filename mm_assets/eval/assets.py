"""The eval assets: `eval_sets` and `canary_set` (all configured tasks), then per experiment `eval_report`
(the evaluator run through the compute backend) and `decontamination_report`.

Lineage: eval_sets -> canary_set -> training_blend (a `canary_set` blend entry injects it) -> checkpoint ->
eval_report. Thin wrappers: the logic lives in the pure modules beside this one.
"""

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.eval.canary import canary_document, canary_marker, read_canary, select_canaries, write_canary_shard
from mm_assets.eval.config import EvalTask, load_tasks
from mm_assets.eval.datasets import EvalDataError, read_samples
from mm_assets.eval.decontamination import NgramIndex, scan_shards, shard_text_size
from mm_assets.eval.launch import eval_job
from mm_assets.eval.report import (
    leakage_verdicts,
    read_details,
    read_report,
    report_markdown,
    verdicts_markdown,
)
from mm_assets.eval.sets import load_eval_set, render_samples, write_eval_set
from mm_assets.partitions import experiments
from mm_assets.shards.assets import vocab_layout
from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import sha256_file
from mm_assets.storage.store import Storage
from mm_assets.tokens.assets import text_tokens, video_tokens
from mm_assets.train.assets import checkpoint, experiment_for, training_blend
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.preflight import local_prefixes
from mm_assets.train.lineage import NO_CLAIMED_PARTITIONS
from mm_assets.train.run_files import read_blend, read_run
from resources.compute import ComputeResource
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

CONTAMINATION_SCHEMA = pa.schema([
    ("experiment_id", pa.string()), ("task_name", pa.string()), ("sample_id", pa.string()), ("ngrams", pa.int64()),
    ("example", pa.string()), ("shard", pa.string()), ("document", pa.int64()),
])


def configured_tasks(cfg: PipelineConfig) -> list[EvalTask]:
    if not cfg.eval.tasks:
        raise dg.Failure("eval.tasks in configs/pipeline.yaml lists no task file: nothing to evaluate")
    try:
        return load_tasks(cfg.resolve(cfg.eval.tasks_dir), cfg.eval.tasks)
    except ConfigError as err:
        raise dg.Failure(str(err)) from None


def shard_layout(cfg: PipelineConfig) -> VocabLayout:
    """The layout token_shards writes under today's config: eval prompts use the same ids."""
    return vocab_layout(cfg, cfg.tokenizers.text.reserved_vocab_size)


def text_tokenizer(cfg: PipelineConfig):
    from mm_assets.tokens.text import TextTokenizer, TextTokenizerError

    try:
        return TextTokenizer.from_config(cfg.tokenizers.text, base_dir=cfg.base_dir)
    except TextTokenizerError as err:
        raise dg.Failure(f"{err} (the demo trains it when text_tokens of the first batch is materialized)") from None


def video_encoder(cfg: PipelineConfig, storage: Storage) -> Callable[[Path], np.ndarray]:
    """Clip -> raw codes (levels, T) with the configured video tokenizer, through the token cache (a clip the
    video_tokens asset already tokenized costs nothing); the model is built on the first miss only."""
    from mm_assets.tokens.cache import TokenCache
    from mm_assets.tokens.video import VideoTokenizer
    from mm_assets.tokens.vq import MediaDecodeError

    section = cfg.tokenizers.video
    identity = VideoTokenizer.identity_for(section, allow_random_weights=cfg.tokenizers.allow_random_weights,
                                           base_dir=cfg.base_dir)
    cache = TokenCache(storage, "video", identity.fingerprint)
    built: list[VideoTokenizer] = []

    def encode(path: Path) -> np.ndarray:
        if not path.is_file():
            raise EvalDataError(f"video {path} does not exist (dataset_config.video_root + the sample's video)")
        key = cache.key(sha256_file(path))
        if (hit := cache.get(key)) is not None:
            return hit.codes
        if not built:
            built.append(VideoTokenizer.from_identity(section, identity))
        try:
            codes = built[0].encode_file(path).codes
        except MediaDecodeError as err:
            raise EvalDataError(f"video {path}: {err}") from None
        cache.put(key, codes, None)
        return codes

    return encode


# The eval sets use the tokenizers the token assets use (the demo's text tokenizer is trained by text_tokens),
# not any batch's tokens: an asset-level edge that claims no partition (as training_blend's, lineage.py).
@dg.asset(group_name="eval", kinds={"parquet"},
          deps=[dg.AssetDep(a, partition_mapping=NO_CLAIMED_PARTITIONS) for a in (text_tokens, video_tokens)],
          description="Every configured eval task (configs/eval/*.yaml, reference §B.6) rendered into prompt ids "
                      "under the shards' vocabulary layout, with the dataset's sha256.")
def eval_sets(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
              storage: StorageResource) -> dg.MaterializeResult:
    cfg = pipeline.load()
    tasks = configured_tasks(cfg)
    layout, tokenizer = shard_layout(cfg), text_tokenizer(cfg)
    assembler = DocumentAssembler(layout, AssemblyConfig(order=tuple(cfg.shards.order), flatten=cfg.shards.flatten))
    encode_video = video_encoder(cfg, storage) if any(t.uses_video for t in tasks) else None
    metadata: dict[str, object] = {}
    for task in tasks:
        try:
            where, path, samples = read_samples(task, storage)
            rows = render_samples(task, samples, tokenizer.encode, assembler, encode_video)
        except (EvalDataError, ValueError) as err:
            raise dg.Failure(f"eval task {task.task_name}: {err}") from None
        manifest = {"task": task.model_dump(mode="json"), "dataset": where, "dataset_sha256": sha256_file(path),
                    "samples": len(rows), "vocab_sha256": layout.sha256, "text_tokenizer": tokenizer.identity.to_dict()}
        write_eval_set(storage, task.task_name, rows, manifest)
        context.log.info(f"eval set {task.task_name}: {len(rows)} samples from {where}")
        metadata[f"{task.task_name}.samples"] = len(rows)
        metadata[f"{task.task_name}.dataset"] = where
        metadata[f"{task.task_name}.dataset_sha256"] = manifest["dataset_sha256"]
    return dg.MaterializeResult(metadata={**metadata, "tasks": ", ".join(t.task_name for t in tasks),
                                          "vocab_sha256": layout.sha256,
                                          "text_tokenizer_sha256": tokenizer.identity.weights_sha256})


@dg.asset(group_name="eval", kinds={"numpy"}, deps=[eval_sets],
          description="The leakage canary: N samples per eval set (recorded seed), each a verbatim training document "
                      "ending with the set's unique marker, as a Megatron shard per set.")
def canary_set(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
               storage: StorageResource) -> dg.MaterializeResult:
    cfg = pipeline.load()
    layout, tokenizer = shard_layout(cfg), text_tokenizer(cfg)
    canary = cfg.eval.canary
    metadata: dict[str, object] = {"seed": canary.seed, "samples_per_set": canary.samples_per_set}
    for task in configured_tasks(cfg):
        eval_set = _eval_set(storage, task.task_name)
        if eval_set.manifest["vocab_sha256"] != layout.sha256:
            raise dg.Failure(f"eval set {task.task_name} was rendered under another vocabulary layout: "
                             "rematerialize eval_sets")
        ids = select_canaries(eval_set.ids, canary.samples_per_set, canary.seed, task.task_name)
        marker = canary_marker(task.task_name, canary.seed, eval_set.manifest["dataset_sha256"])
        rows = {r["sample_id"]: r for r in eval_set.rows}
        docs = [canary_document(rows[i]["prompt_ids"], (rows[i]["references"] or [""])[0], marker, tokenizer.encode,
                                layout.eod_id) for i in ids]
        if len(ids) < canary.samples_per_set:
            context.log.warning(f"canary {task.task_name}: {len(ids)} of {canary.samples_per_set} samples "
                                f"(at most half of its {len(rows)}, so the standard split keeps samples)")
        write_canary_shard(storage, task.task_name, docs, layout,
                           {"task": task.task_name, "seed": canary.seed, "samples_per_set": canary.samples_per_set,
                            "sample_ids": ids, "marker": marker, "dataset_sha256": eval_set.manifest["dataset_sha256"]})
        metadata[f"{task.task_name}.ids"] = ", ".join(ids) or "none (set too small)"
        metadata[f"{task.task_name}.marker"] = marker
        if docs:
            metadata[f"{task.task_name}.prefix"] = storage.store.url(storage.layout.canary_prefix(task.task_name))
    return dg.MaterializeResult(metadata=metadata)


def _eval_set(storage: Storage, task: str):
    try:
        return load_eval_set(storage, task)
    except FileNotFoundError as err:
        raise dg.Failure(str(err)) from None


def _plan(cfg: PipelineConfig, exp, storage: Storage, out: Path) -> dict:
    """What the evaluator job runs: local paths (the store's copies) of everything it reads, and `out`."""
    run, blend = read_run(storage, exp.id), read_blend(storage, exp.id)
    sets = []
    for task in configured_tasks(cfg):
        eval_set = _eval_set(storage, task.task_name)
        if eval_set.manifest["vocab_sha256"] != blend["vocab_sha256"]:
            raise dg.Failure(f"eval set {task.task_name} uses vocabulary layout "
                             f"{eval_set.manifest['vocab_sha256'][:12]}, the checkpoint's blend "
                             f"{blend['vocab_sha256'][:12]}: rematerialize eval_sets")
        canary = read_canary(storage, task.task_name) or {}
        folder = storage.store.local_dir(storage.layout.eval_set(task.task_name))
        sets.append({"task": task.task_name, "folder": str(folder), "canary_ids": canary.get("sample_ids", [])})
    return {"experiment": exp.id, "out": str(out), "vocab_file": str(local_prefixes(storage)(blend["vocab_file"])),
            "text_tokenizer": text_tokenizer(cfg).identity.weights_path,
            "checkpoint": {"folder": str(storage.store.local_dir(storage.store.key_of(run["checkpoint"]))),  # S3: a copy
                           "iteration": run["iteration"], "sha256": run["sha256"]},
            "sets": sets, "max_new_tokens": cfg.eval.max_new_tokens, "device": cfg.eval.device}


def _check_complete(out: Path) -> None:
    names = (ArtifactLayout.EVAL_METRICS, ArtifactLayout.EVAL_PREDICTIONS, ArtifactLayout.EVAL_REPORT_RECORD)
    missing = [n for n in names if not (out / n).is_file()]
    if missing:
        raise dg.Failure(f"the evaluator finished without {', '.join(missing)} in {out}")


def _plain(metadata) -> dict:
    return {k: getattr(v, "value", v) for k, v in (metadata or {}).items()}  # MetadataValue -> plain


@dg.asset(partitions_def=experiments, group_name="eval", kinds={"megatron", "parquet"},
          deps=[checkpoint, eval_sets, canary_set],
          description="The checkpoint evaluated on every eval task, standard and canary splits apart: one row per "
                      "task x split x metric, predictions per sample (evaluator run like training, under Pipes).")
def eval_report(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource, storage: StorageResource,
                compute: ComputeResource) -> dg.MaterializeResult:
    cfg, exp = experiment_for(context, pipeline)
    try:
        env = compute.environment(exp.training.cluster.env)  # a missing credentials file fails before any write
    except ConfigError as err:
        raise dg.Failure(str(err)) from None
    started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    layout, store = storage.layout, storage.store
    with store.publish(layout.eval_dir(exp.id), last=ArtifactLayout.EVAL_REPORT_RECORD,
                       what=f"eval report {exp.id}") as out:
        out.mkdir(parents=True)
        store.write_text(layout.eval_plan(exp.id), json.dumps(_plan(cfg, exp, storage, out), indent=2))
        command = ["python", "-m", "mm_assets.eval.evaluate", "--plan", str(store.local_path(layout.eval_plan(exp.id)))]
        try:
            job = eval_job(exp, storage, command, env, started_at)
        except LaunchConfigError as err:
            raise dg.Failure(str(err)) from None
        invocation = compute.run(context, job)
        _check_complete(out)
    rows, details = read_report(storage, exp.id), read_details(storage, exp.id)
    reported = _plain(invocation.get_materialize_result().metadata) if invocation.get_results() else {}
    job = _plain(invocation.metadata)
    return dg.MaterializeResult(metadata={
        "backend": compute.backend,
        "slurm_job_id": str(job.get("slurm_job_id", "none")),
        "log": dg.MetadataValue.path(str(job.get("log"))),
        "rows": len(rows),
        "samples": details["samples"],
        "report": dg.MetadataValue.md(report_markdown(rows)),
        "leakage": dg.MetadataValue.md(verdicts_markdown(leakage_verdicts(rows, cfg.eval.leakage))),
        "bleu_signature": " ; ".join(details["bleu_signatures"]) or "no BLEU task",
        "checkpoint_iteration": details["iteration"],
        "device": details["device"],
        "path": dg.MetadataValue.path(store.url(layout.eval_report(exp.id))),
        "metrics": dg.MetadataValue.path(store.url(layout.eval_metrics(exp.id))),
        "predictions": dg.MetadataValue.path(store.url(layout.eval_predictions(exp.id))),
        **{f"evaluator.{k}": v for k, v in reported.items() if isinstance(v, (int, float, str))},
    })


@dg.asset(partitions_def=experiments, group_name="eval", kinds={"parquet"}, deps=[training_blend, eval_sets],
          description="Eval samples that share a word n-gram with the text of the experiment's training shards "
                      "(canary shards excluded), with the matching n-gram and document.")
def decontamination_report(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                           storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp = experiment_for(context, pipeline)
    blend = read_blend(storage, exp.id)
    injected = {c["prefix"] for c in blend.get("canary", {}).values()}
    local = {str(local_prefixes(storage)(p)): p for p in blend["shares"] if p not in injected}  # local copy -> url
    shards = [(path, shard_text_size(path)) for path in local]
    index = NgramIndex(cfg.eval.decontamination.ngram)
    sizes = {}
    for task in configured_tasks(cfg):
        eval_set = _eval_set(storage, task.task_name)
        sizes[task.task_name] = len(eval_set.rows)
        for row in eval_set.rows:
            index.add((task.task_name, row["sample_id"]), row["content"])
    tokenizer = text_tokenizer(cfg)
    hits, documents = scan_shards(index, shards, lambda runs: tokenizer.tokenizer.decode_batch(runs))
    rows = [{"experiment_id": exp.id, "task_name": t, "sample_id": s, "ngrams": h.ngrams, "example": h.example,
             "shard": local[h.shard], "document": h.document} for (t, s), h in sorted(hits.items())]
    out = storage.layout.decontamination_report(exp.id)
    with storage.store.publish(out) as staged:
        pq.write_table(pa.Table.from_pylist(rows, schema=CONTAMINATION_SCHEMA), staged)
    shares = {t: sum(1 for r in rows if r["task_name"] == t) / n for t, n in sizes.items()}
    context.log.info(f"decontamination {exp.id}: {len(rows)} eval samples overlap {documents} training documents")
    return dg.MaterializeResult(metadata={
        "ngram": cfg.eval.decontamination.ngram, "training_documents": documents, "overlapping_samples": len(rows),
        "shares": dg.MetadataValue.json(shares), "shards": "\n".join(local.values()),
        "path": dg.MetadataValue.path(storage.store.url(out)),
    })


EVAL_ASSETS = [eval_sets, canary_set, eval_report, decontamination_report]
