"""The eval assets: `eval_sets` and `canary_set` (all configured tasks), then per experiment `eval_report`
(the evaluator run through the compute backend) and `decontamination_report`.

Lineage: eval_sets -> canary_set -> training_blend (a `canary_set` blend entry injects it) -> checkpoint ->
eval_report. Thin wrappers: the logic lives in the pure modules beside this one.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.config import PipelineConfig
from mm_assets.eval.canary import canary_document, canary_marker, read_canary, select_canaries, write_canary_shard
from mm_assets.eval.config import EvalTask, load_tasks
from mm_assets.eval.datasets import EvalDataError, read_samples
from mm_assets.eval.decontamination import NgramIndex, scan_shards, shard_text_size
from mm_assets.eval.launch import launch_program
from mm_assets.eval.report import (
    DETAILS_FILE,
    PREDICTIONS_FILE,
    REPORT_FILE,
    leakage_verdicts,
    read_details,
    read_report,
    report_markdown,
    verdicts_markdown,
)
from mm_assets.eval.sets import read_eval_set, render_samples, write_eval_set
from mm_assets.partitions import experiments
from mm_assets.paths import atomic_path, publish_dir, sha256_file
from mm_assets.project import ConfigError
from mm_assets.shards.assets import vocab_layout
from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler
from mm_assets.shards.vocab import VocabLayout
from mm_assets.tokens.assets import text_tokens, video_tokens
from mm_assets.train.assets import checkpoint, read_run
from mm_assets.train.blend_assets import BLEND_FILE, experiment_for, training_blend
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


def video_encoder(cfg: PipelineConfig, storage: StorageResource) -> Callable[[Path], np.ndarray]:
    """Clip -> raw codes (levels, T) with the configured video tokenizer, through the token cache (a clip the
    video_tokens asset already tokenized costs nothing); the model is built on the first miss only."""
    from mm_assets.tokens.cache import TokenCache
    from mm_assets.tokens.video import VideoTokenizer
    from mm_assets.tokens.vq import MediaDecodeError

    section = cfg.tokenizers.video
    identity = VideoTokenizer.identity_for(section, allow_random_weights=cfg.tokenizers.allow_random_weights,
                                           base_dir=cfg.base_dir)
    cache = TokenCache(storage.token_cache_dir("video"), "video", identity.fingerprint)
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


@dg.asset(group_name="eval", kinds={"parquet"},
          deps=[dg.AssetDep(a, partition_mapping=dg.AllPartitionMapping()) for a in (text_tokens, video_tokens)],
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
            path, samples = read_samples(task, storage)
            rows = render_samples(task, samples, tokenizer.encode, assembler, encode_video)
        except (EvalDataError, ValueError) as err:
            raise dg.Failure(f"eval task {task.task_name}: {err}") from None
        manifest = {"task": task.model_dump(mode="json"), "dataset": str(path), "dataset_sha256": sha256_file(path),
                    "samples": len(rows), "vocab_sha256": layout.sha256, "text_tokenizer": tokenizer.identity.to_dict()}
        write_eval_set(storage.eval_set_dir(task.task_name), rows, manifest)
        context.log.info(f"eval set {task.task_name}: {len(rows)} samples from {path}")
        metadata[f"{task.task_name}.samples"] = len(rows)
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
        eval_set = read_eval_set(storage.eval_set_dir(task.task_name))
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
        if docs:
            write_canary_shard(storage.canary_dir(task.task_name), docs, layout,
                               {"task": task.task_name, "seed": canary.seed, "samples_per_set": canary.samples_per_set,
                                "sample_ids": ids, "marker": marker,
                                "dataset_sha256": eval_set.manifest["dataset_sha256"]})
        else:  # too small for a canary: no shard, and no stale one from an earlier, larger set
            shutil.rmtree(storage.canary_dir(task.task_name), ignore_errors=True)
        metadata[f"{task.task_name}.ids"] = ", ".join(ids) or "none (set too small)"
        metadata[f"{task.task_name}.marker"] = marker
    return dg.MaterializeResult(metadata=metadata)


def _plan(cfg: PipelineConfig, exp, storage: StorageResource, out: Path) -> dict:
    run = read_run(exp)
    blend = json.loads((exp.run_dir / BLEND_FILE).read_text())
    sets = []
    for task in configured_tasks(cfg):
        folder = storage.eval_set_dir(task.task_name)
        try:
            eval_set = read_eval_set(folder)
        except FileNotFoundError as err:
            raise dg.Failure(str(err)) from None
        if eval_set.manifest["vocab_sha256"] != blend["vocab_sha256"]:
            raise dg.Failure(f"eval set {task.task_name} uses vocabulary layout {eval_set.manifest['vocab_sha256'][:12]}"
                             f", the checkpoint's blend {blend['vocab_sha256'][:12]}: rematerialize eval_sets")
        canary_dir = storage.canary_dir(task.task_name)
        ids = read_canary(canary_dir)["sample_ids"] if (canary_dir / "canary.json").is_file() else []
        sets.append({"task": task.task_name, "folder": str(folder), "canary_ids": ids})
    return {"experiment": exp.id, "out": str(out), "vocab_file": blend["vocab_file"],
            "text_tokenizer": text_tokenizer(cfg).identity.weights_path,
            "checkpoint": {"folder": run["checkpoint"], "iteration": run["iteration"], "sha256": run["sha256"]},
            "sets": sets, "max_new_tokens": cfg.eval.max_new_tokens, "device": cfg.eval.device}


@dg.asset(partitions_def=experiments, group_name="eval", kinds={"megatron", "parquet"},
          deps=[checkpoint, eval_sets, canary_set],
          description="The checkpoint evaluated on every eval task, standard and canary splits apart: one row per "
                      "task x split x metric, predictions per sample (evaluator run like training, under Pipes).")
def eval_report(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp, _ = experiment_for(context, pipeline)
    final = storage.eval_report_dir(exp.id)
    staging = final.with_name(f".staging-{final.name}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        plan_path = staging / "plan.json"
        plan_path.write_text(json.dumps(_plan(cfg, exp, storage, staging), indent=2))
        invocation = launch_program(context, cfg, exp, ["python", "-m", "mm_assets.eval.evaluate", "--plan",
                                                        str(plan_path)], exp.run_dir / "eval")
        missing = [n for n in (REPORT_FILE, PREDICTIONS_FILE, DETAILS_FILE) if not (staging / n).is_file()]
        if missing:
            raise dg.Failure(f"the evaluator finished without {', '.join(missing)} in {staging}")
        publish_dir(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rows, details = read_report(final), read_details(final)
    reported = {k: v.value for k, v in (invocation.get_materialize_result().metadata or {}).items()} \
        if invocation.get_results() else {}
    job = {k: getattr(v, "value", v) for k, v in invocation.metadata.items()}  # MetadataValue -> plain
    return dg.MaterializeResult(metadata={
        "backend": cfg.compute.backend,
        "slurm_job_id": str(job.get("slurm_job_id", "none")),
        "log": dg.MetadataValue.path(str(job.get("slurm_log") or job.get("log"))),
        "rows": len(rows),
        "samples": details["samples"],
        "report": dg.MetadataValue.md(report_markdown(rows)),
        "leakage": dg.MetadataValue.md(verdicts_markdown(leakage_verdicts(rows, cfg.eval.leakage))),
        "bleu_signature": " ; ".join(details["bleu_signatures"]) or "no BLEU task",
        "checkpoint_iteration": details["iteration"],
        "device": details["device"],
        "path": dg.MetadataValue.path(str(final / REPORT_FILE)),
        "predictions": dg.MetadataValue.path(str(final / PREDICTIONS_FILE)),
        **{f"evaluator.{k}": v for k, v in reported.items() if isinstance(v, (int, float, str))},
    })


@dg.asset(partitions_def=experiments, group_name="eval", kinds={"parquet"}, deps=[training_blend, eval_sets],
          description="Eval samples that share a word n-gram with the text of the experiment's training shards "
                      "(canary shards excluded), with the matching n-gram and document.")
def decontamination_report(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                           storage: StorageResource) -> dg.MaterializeResult:
    cfg, exp, _ = experiment_for(context, pipeline)
    blend = json.loads((exp.run_dir / BLEND_FILE).read_text())
    injected = {c["prefix"] for c in blend.get("canary", {}).values()}
    shards = [(p, shard_text_size(p)) for p in blend["shares"] if p not in injected]
    index = NgramIndex(cfg.eval.decontamination.ngram)
    sizes = {}
    for task in configured_tasks(cfg):
        eval_set = read_eval_set(storage.eval_set_dir(task.task_name))
        sizes[task.task_name] = len(eval_set.rows)
        for row in eval_set.rows:
            index.add((task.task_name, row["sample_id"]), row["content"])
    tokenizer = text_tokenizer(cfg)
    hits, documents = scan_shards(index, shards, lambda runs: tokenizer.tokenizer.decode_batch(runs))
    rows = [{"experiment_id": exp.id, "task_name": t, "sample_id": s, "ngrams": h.ngrams, "example": h.example,
             "shard": h.shard, "document": h.document} for (t, s), h in sorted(hits.items())]
    out = storage.decontamination_path(exp.id)
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=CONTAMINATION_SCHEMA), tmp)
    shares = {t: sum(1 for r in rows if r["task_name"] == t) / n for t, n in sizes.items()}
    context.log.info(f"decontamination {exp.id}: {len(rows)} eval samples overlap {documents} training documents")
    return dg.MaterializeResult(metadata={
        "ngram": cfg.eval.decontamination.ngram, "training_documents": documents, "overlapping_samples": len(rows),
        "shares": dg.MetadataValue.json(shares), "shards": "\n".join(p for p, _ in shards),
        "path": dg.MetadataValue.path(str(out)),
    })


EVAL_ASSETS = [eval_sets, canary_set, eval_report, decontamination_report]
