"""The `training_blend` asset: an experiment's blend resolved to shard prefixes with one shared vocabulary.

Before it writes anything it runs the whole launch validation (`launch_preflight`, also what `mm train run`
calls before registering a partition), then compares each shard with what token_shards recorded
(blend_shards.py) and hands the verified digests to the launch in blend.json.
"""

import json
import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import PipelineConfig
from mm_assets.partitions import experiments
from mm_assets.shards import VocabLayout
from mm_assets.shards.assets import token_shards
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import Storage
from mm_assets.train.blend import Blend, missing_shard_files, resolve_blend
from mm_assets.train.blend_shards import verify_blend_shard
from mm_assets.train.launch.config import LaunchConfigError, ShardVocab
from mm_assets.train.launch.experiment import ExperimentConfig
from mm_assets.train.launch.experiment import load_experiment
from mm_assets.train.run_folders import RunFolders
from mm_assets.train.sbatch import LaunchFiles, render_launch
from mm_assets.train.validate import validate_launch
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


def shard_resolver(storage: Storage) -> Callable[[str], str]:
    """Blend `shard_batch` keys -> the token_shards prefix of that crawl batch, as Megatron reads it."""
    return lambda batch: storage.store.url(storage.layout.shard_prefix(batch))


def local_prefix(storage: Storage, prefix: str) -> Path:
    """Where to read a blend prefix here: the store's local copy of one of its shards (its folder fetched
    whole, verified), else the path itself."""
    try:
        key = storage.store.key_of(prefix)
    except UnsafePathError:
        return Path(prefix)
    return storage.store.local_prefix(key)


def _vocab_beside(prefix: Path) -> Path:
    return prefix.parent / ArtifactLayout.SHARD_VOCAB


def _vocab_url(prefix: str) -> str:
    """The vocab.json beside a prefix, as written (a path or an s3:// URL)."""
    return f"{posixpath.dirname(prefix)}/{ArtifactLayout.SHARD_VOCAB}"


def blend_layout(blend: Blend, local: Callable[[str], Path] = Path) -> tuple[VocabLayout, list[str]]:
    """The vocabulary layout every blended shard shares, and the problems when they do not."""
    layouts = {item.prefix: VocabLayout.read(_vocab_beside(local(item.prefix))) for item in blend.items
               if _vocab_beside(local(item.prefix)).is_file()}
    problems = [f"{p}: no {ArtifactLayout.SHARD_VOCAB} beside the shard"
                for p in (i.prefix for i in blend.items) if p not in layouts]
    if len({layout.sha256 for layout in layouts.values()}) > 1:
        problems.append("the shards use different vocabulary layouts: " +
                        ", ".join(f"{p} ({layout.sha256[:12]})" for p, layout in layouts.items()) +
                        "; rematerialize token_shards of those batches with today's tokenizers config")
    if not layouts:
        raise LaunchConfigError(problems or ["the blend is empty"], source="training blend")
    return next(iter(layouts.values())), problems


def launch_preflight(exp: ExperimentConfig, storage: Storage) -> tuple[Blend, VocabLayout, LaunchFiles]:
    """Everything checkable before any side effect, as one LaunchConfigError listing every problem: the blend's
    shards exist and share one vocabulary, and the launch validates (world size, batch divisibility, heads,
    layers, vocabulary, …, see validate.py) and renders. Writes nothing."""
    problems: list[str] = []
    blend = layout = files = None
    local = lambda prefix: local_prefix(storage, prefix)  # noqa: E731
    try:
        blend = resolve_blend(exp.training.data.blend, base_dir=exp.base_dir, shard_prefix=shard_resolver(storage))
    except LaunchConfigError as err:
        problems += err.problems
    if blend is not None:
        missing = missing_shard_files([local(i.prefix) for i in blend.items])
        problems += [f"missing {m}: materialize token_shards for that batch" for m in missing]
        try:
            layout, layout_problems = blend_layout(blend, local)
            problems += layout_problems
        except LaunchConfigError as err:  # no shard has a vocab.json
            problems += err.problems
    try:
        if layout is not None:
            files = render_launch(exp, RunFolders.of(exp, storage), vocab=ShardVocab.from_layout(layout),
                                  shard_prefix=shard_resolver(storage))
        else:
            validate_launch(exp.training)  # no vocabulary yet: every other rule still applies
    except LaunchConfigError as err:
        problems += err.problems
    except ValueError as err:  # a layout without <pad>
        problems.append(str(err))
    if problems or files is None:
        unique = list(dict.fromkeys(problems)) or ["the blend has no shard to read the vocabulary from"]
        raise LaunchConfigError(unique, source=f"experiment {exp.id}" + (f" ({exp.path})" if exp.path else ""))
    return blend, layout, files


def resolve_experiment_blend(exp: ExperimentConfig, storage: Storage,
                             materialized: Callable[[str], Mapping[str, Any] | None] = lambda batch: None) -> dict[str, Any]:
    """Everything training needs to know about its data, as written to the run's blend.json: after the
    preflight, each shard's .bin/.idx verified against what token_shards recorded (`materialized`: batch →
    its latest token_shards materialization metadata)."""
    blend, layout, _ = launch_preflight(exp, storage)
    shards, problems = {}, []
    for entry, item in zip(exp.training.data.blend, blend.items):
        batch = entry.shard_batch
        digests, found = verify_blend_shard(local_prefix(storage, item.prefix),
                                            materialized=materialized(batch) if batch else None,
                                            manifest_required=batch is not None)
        shards[item.prefix] = digests
        problems += [f"{item.key}: {p}" for p in found]
    if problems:
        raise LaunchConfigError(problems, source=f"experiment {exp.id} blend")
    return {
        "experiment": exp.id,
        "data_path": blend.data_path,
        "weight_sum": blend.weight_sum,
        "shares": blend.metadata(),
        "shards": shards,
        "vocab_sha256": layout.sha256,
        "vocab_size": layout.vocab_size,
        "vocab_file": _vocab_url(blend.items[0].prefix),
    }


def latest_shard_metadata(instance: dg.DagsterInstance) -> Callable[[str], Mapping[str, Any] | None]:
    """batch → the metadata of its latest token_shards materialization (None when there is none)."""
    def lookup(batch: str) -> Mapping[str, Any] | None:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=token_shards.key, asset_partitions=[batch]), limit=1).records
        if not found or found[0].asset_materialization is None:
            return None
        return {k: v.value for k, v in found[0].asset_materialization.metadata.items()}
    return lookup


def experiment_for(context, pipeline: PipelineConfigResource) -> tuple[PipelineConfig, ExperimentConfig]:
    cfg = pipeline.load()
    if cfg.training is None:
        raise dg.Failure("configs/pipeline.yaml has no training: section to base experiments on")
    try:
        return cfg, load_experiment(cfg, context.partition_key)
    except ConfigError as err:
        raise dg.Failure(str(err)) from None


@dg.asset(partitions_def=experiments, group_name="train", kinds={"megatron"},
          deps=[dg.AssetDep(token_shards, partition_mapping=dg.AllPartitionMapping())],
          description="The experiment's blend: weights + Megatron shard prefixes (--data-path), one vocabulary.")
def training_blend(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                   storage: StorageResource) -> dg.MaterializeResult:
    _, exp = experiment_for(context, pipeline)
    try:
        blend = resolve_experiment_blend(exp, storage, latest_shard_metadata(context.instance))
    except LaunchConfigError as err:
        raise dg.Failure(str(err)) from None
    out = storage.layout.run_blend(exp.id)
    storage.store.write_text(out, json.dumps(blend, indent=2, sort_keys=True))
    return dg.MaterializeResult(metadata={
        "data_path": " ".join(blend["data_path"]),
        "weight_sum": blend["weight_sum"],
        "shards": len(blend["shares"]),
        "vocab_size": blend["vocab_size"],
        "vocab_sha256": blend["vocab_sha256"],
        "shard_digests": dg.MetadataValue.json(blend["shards"]),
        "path": dg.MetadataValue.path(storage.store.url(out)),
    })


def read_blend(storage: Storage, experiment: str) -> dict[str, Any]:
    """The run's blend.json, as training_blend wrote it."""
    key = storage.layout.run_blend(experiment)
    if not storage.store.exists(key):
        raise dg.Failure(f"experiment {experiment} has no {storage.store.url(key)}: materialize training_blend first")
    return json.loads(storage.store.read_text(key))


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
    local = lambda prefix: local_prefix(storage, prefix)  # noqa: E731
    missing = missing_shard_files([local(p) for p in prefixes])
    sizes = size_problems(blend.get("shards", {}), local)
    share_sum = sum(blend["shares"].values())
    return dg.AssetCheckResult(
        passed=not missing and not sizes and set(blend.get("shards", {})) == set(prefixes)
        and abs(share_sum - 1.0) < 1e-9 and blend["weight_sum"] > 0,
        metadata={"prefixes": len(prefixes), "missing": "\n".join(map(str, missing)) or "none",
                  "size_mismatches": "\n".join(sizes) or "none", "share_sum": share_sum},
    )
