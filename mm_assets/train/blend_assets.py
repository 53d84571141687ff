"""The `training_blend` asset: an experiment's blend resolved to shard prefixes with one shared vocabulary."""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.config import PipelineConfig
from mm_assets.eval.canary import CANARY_FILE
from mm_assets.partitions import experiments
from mm_assets.paths import atomic_write_text, sha256_file
from mm_assets.shards import VocabLayout
from mm_assets.shards.assets import SHARD_PREFIX, VOCAB_FILE, token_shards
from mm_assets.train.blend import Blend, missing_shard_files, resolve_blend
from mm_assets.train.config import ExperimentConfig, LaunchConfigError
from mm_assets.train.experiments import load_experiment_file
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

BLEND_FILE = "blend.json"


def shard_resolver(storage: StorageResource):
    """Blend `shard_batch` keys -> the token_shards prefix of that crawl batch."""
    return lambda batch: storage.path("shards", batch, SHARD_PREFIX)


def blend_layout(blend: Blend) -> tuple[VocabLayout, list[str]]:
    """The vocabulary layout every blended shard shares, and the problems when they do not."""
    layouts = {item.prefix: VocabLayout.read(Path(item.prefix).parent / VOCAB_FILE) for item in blend.items
               if (Path(item.prefix).parent / VOCAB_FILE).is_file()}
    problems = [f"{p}: no {VOCAB_FILE} beside the shard" for p in (i.prefix for i in blend.items) if p not in layouts]
    if len({layout.sha256 for layout in layouts.values()}) > 1:
        problems.append("the shards use different vocabulary layouts: " +
                        ", ".join(f"{p} ({layout.sha256[:12]})" for p, layout in layouts.items()) +
                        "; rematerialize token_shards of those batches with today's tokenizers config")
    if not layouts:
        raise LaunchConfigError(problems or ["the blend is empty"], source="training blend")
    return next(iter(layouts.values())), problems


def injected_canaries(exp: ExperimentConfig, storage: StorageResource) -> dict[str, dict[str, Any]]:
    """The canary sets the blend injects: task -> prefix, marker and sample ids (from canary.json)."""
    out = {}
    for entry in exp.training.data.blend:
        if entry.canary_set is not None:
            folder = storage.canary_dir(entry.canary_set)
            manifest = json.loads((folder / CANARY_FILE).read_text()) if (folder / CANARY_FILE).is_file() else {}
            out[entry.canary_set] = {"prefix": str(storage.canary_prefix(entry.canary_set)), "weight": entry.weight,
                                     "marker": manifest.get("marker"), "sample_ids": manifest.get("sample_ids", [])}
    return out


def resolve_experiment_blend(exp: ExperimentConfig, storage: StorageResource) -> dict[str, Any]:
    """Everything training needs to know about its data, as written to <run dir>/blend.json."""
    blend = resolve_blend(exp.training.data.blend, base_dir=exp.base_dir, shard_prefix=shard_resolver(storage),
                          canary_prefix=storage.canary_prefix)
    canaries = injected_canaries(exp, storage)
    canary_prefixes = {c["prefix"] for c in canaries.values()}
    missing = missing_shard_files([i.prefix for i in blend.items])
    if missing:
        what = lambda m: "canary_set (mm eval prepare)" if str(m.with_suffix("")) in canary_prefixes \
            else "token_shards for that batch"  # noqa: E731
        raise LaunchConfigError([f"missing {m}: materialize {what(m)}" for m in missing],
                                source=f"experiment {exp.id} blend")
    layout, problems = blend_layout(blend)
    if problems:
        raise LaunchConfigError(problems, source=f"experiment {exp.id} blend")
    return {
        "experiment": exp.id,
        "data_path": blend.data_path,
        "weight_sum": blend.weight_sum,
        "shares": blend.metadata(),
        "idx_sha256": {i.prefix: sha256_file(Path(f"{i.prefix}.idx")) for i in blend.items},
        "vocab_sha256": layout.sha256,
        "vocab_size": layout.vocab_size,
        "vocab_file": str(Path(blend.items[0].prefix).parent / VOCAB_FILE),
        "canary": canaries,  # injected on purpose: decontamination skips these shards, eval_report splits on them
    }


def experiment_for(context, pipeline: PipelineConfigResource) -> tuple[PipelineConfig, ExperimentConfig, str]:
    cfg = pipeline.load()
    if cfg.training is None:
        raise dg.Failure("configs/pipeline.yaml has no training: section to base experiments on")
    exp, notes = load_experiment_file(cfg, pipeline.path, context.partition_key)
    return cfg, exp, notes


@dg.asset(partitions_def=experiments, group_name="train", kinds={"megatron"},
          deps=[dg.AssetDep(token_shards, partition_mapping=dg.AllPartitionMapping()), dg.AssetKey("canary_set")],
          description="The experiment's blend: weights + Megatron shard prefixes (--data-path), one vocabulary; "
                      "optionally an eval set's canary shard, injected on purpose (data.blend canary_set).")
def training_blend(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.MaterializeResult:
    _, exp, _ = experiment_for(context, pipeline)
    try:
        blend = resolve_experiment_blend(exp, storage)
    except LaunchConfigError as err:
        raise dg.Failure(str(err)) from None
    out = exp.run_dir / BLEND_FILE
    atomic_write_text(out, json.dumps(blend, indent=2, sort_keys=True))
    return dg.MaterializeResult(metadata={
        "data_path": " ".join(blend["data_path"]),
        "weight_sum": blend["weight_sum"],
        "shards": len(blend["shares"]),
        "vocab_size": blend["vocab_size"],
        "vocab_sha256": blend["vocab_sha256"],
        "canary_sets": ", ".join(blend["canary"]) or "none",
        "path": dg.MetadataValue.path(str(out)),
    })


@dg.asset_check(asset=training_blend, blocking=True, description="Weights positive, every prefix's .bin/.idx exists, one vocabulary.")
def blend_complete(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.AssetCheckResult:
    _, exp, _ = experiment_for(context, pipeline)
    blend = json.loads((exp.run_dir / BLEND_FILE).read_text())
    prefixes = list(blend["shares"])
    missing = missing_shard_files(prefixes)
    share_sum = sum(blend["shares"].values())
    return dg.AssetCheckResult(
        passed=not missing and abs(share_sum - 1.0) < 1e-9 and blend["weight_sum"] > 0,
        metadata={"prefixes": len(prefixes), "missing": "\n".join(map(str, missing)) or "none",
                  "share_sum": share_sum},
    )
