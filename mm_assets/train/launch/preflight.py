"""Everything checkable before a launch has any side effect: the blend's shards resolve, exist and share one
vocabulary, and the whole launch validates and renders (`mm train run` and `training_blend` both call it)."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path

from mm_assets.shards.vocab import ShardVocab, VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import Storage
from mm_assets.train.launch.blend import Blend, missing_shard_files, resolve_blend
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.experiment import ExperimentConfig
from mm_assets.train.launch.rules import validate_launch
from mm_assets.train.launch.run_folders import RunFolders
from mm_assets.train.launch.sbatch import LaunchFiles, render_launch


def shard_resolver(storage: Storage) -> Callable[[str], str]:
    """Blend `shard_batch` keys -> the token_shards prefix of that crawl batch, as Megatron reads it."""
    return lambda batch: storage.store.url(storage.layout.shard_prefix(batch))


def canary_resolver(storage: Storage) -> Callable[[str], str]:
    """Blend `canary_set` task names -> the canary_set prefix of that eval task, as Megatron reads it."""
    return lambda task: storage.store.url(storage.layout.canary_prefix(task))


def local_prefixes(storage: Storage) -> Callable[[str], Path]:
    """Where to read a blend prefix here: the store's local copy of one of its shards (its folder fetched
    whole, verified), else the path itself."""
    def local(prefix: str) -> Path:
        try:
            key = storage.store.key_of(prefix)
        except UnsafePathError:
            return Path(prefix)
        return storage.store.local_prefix(key)
    return local


def vocab_beside(prefix: Path) -> Path:
    """The vocab.json beside a Megatron prefix (a shard of ours, or one made elsewhere)."""
    return prefix.parent / ArtifactLayout.SHARD_VOCAB


def vocab_url(prefix: str) -> str:
    """The vocab.json beside a blend prefix, as the blend names it (a path or an s3:// URL)."""
    return f"{posixpath.dirname(prefix)}/{ArtifactLayout.SHARD_VOCAB}"


def blend_layout(blend: Blend, local: Callable[[str], Path] = Path) -> tuple[VocabLayout, list[str]]:
    """The vocabulary layout every blended shard shares, and the problems when they do not."""
    layouts = {item.prefix: VocabLayout.read(vocab_beside(local(item.prefix))) for item in blend.items
               if vocab_beside(local(item.prefix)).is_file()}
    problems = [f"{p}: no {ArtifactLayout.SHARD_VOCAB} beside the shard"
                for p in (i.prefix for i in blend.items) if p not in layouts]
    if len({layout.sha256 for layout in layouts.values()}) > 1:
        problems.append("the shards use different vocabulary layouts: " +
                        ", ".join(f"{p} ({layout.sha256[:12]})" for p, layout in layouts.items()) +
                        "; rematerialize token_shards of those batches with today's tokenizers config")
    if not layouts:
        raise LaunchConfigError(problems or ["the blend is empty"], source="training blend")
    return next(iter(layouts.values())), problems


def missing_problems(exp: ExperimentConfig, blend: Blend, local: Callable[[str], Path]) -> list[str]:
    """Each missing .bin/.idx of the blend, with the asset that makes it."""
    canaries = {local(item.prefix) for entry, item in zip(exp.training.data.blend, blend.items) if entry.canary_set}
    return [f"missing {path}: materialize " + ("canary_set (mm eval prepare)" if path.with_suffix("") in canaries
                                               else "token_shards for that batch")
            for path in missing_shard_files([local(item.prefix) for item in blend.items])]


def launch_preflight(exp: ExperimentConfig, storage: Storage) -> tuple[Blend, VocabLayout, LaunchFiles]:
    """Everything checkable before any side effect, as one LaunchConfigError listing every problem: the blend's
    shards exist and share one vocabulary, and the launch validates (world size, batch divisibility, heads,
    layers, vocabulary, …, see rules.py) and renders. Writes nothing."""
    problems: list[str] = []
    blend = layout = files = None
    local = local_prefixes(storage)
    try:
        blend = resolve_blend(exp.training.data.blend, base_dir=exp.base_dir, shard_prefix=shard_resolver(storage),
                              canary_prefix=canary_resolver(storage))
    except LaunchConfigError as err:
        problems += err.problems
    if blend is not None:
        problems += missing_problems(exp, blend, local)
        try:
            layout, layout_problems = blend_layout(blend, local)
            problems += layout_problems
        except LaunchConfigError as err:  # no shard has a vocab.json
            problems += err.problems
    try:
        if layout is not None:
            files = render_launch(exp, RunFolders.of(exp, storage), vocab=ShardVocab.from_layout(layout),
                                  shard_prefix=shard_resolver(storage), canary_prefix=canary_resolver(storage))
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
