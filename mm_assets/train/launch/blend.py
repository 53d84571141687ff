"""The training blend → Megatron's `--data-path w1 p1 w2 p2 …`, and the check that every shard exists.

Megatron normalises blend weights itself, so the configured weights are passed through unchanged (a config
that says 2 and 1 gets "2.0" and "1.0"); we only require them positive and finite, and report the normalised
shares for the asset's metadata. Each prefix is its own argv item: never joined into one string, never split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mm_assets.shards.indexed import bin_path, idx_path
from mm_assets.storage.s3_access import S3_SCHEME, is_s3_url
from mm_assets.train.launch.config import BlendEntry, LaunchConfigError


@dataclass(frozen=True)
class BlendItem:
    prefix: str  # absolute Megatron prefix: <prefix>.bin and <prefix>.idx (a path, or s3://bucket/key)
    weight: float  # as configured
    share: float  # weight / sum of weights: what Megatron will sample
    key: str  # the config key it came from, for messages (data.blend.0)


@dataclass(frozen=True)
class Blend:
    items: tuple[BlendItem, ...]

    @property
    def data_path(self) -> list[str]:
        """The values of `--data-path`: weight, prefix, weight, prefix, …"""
        return blend_data_path([(i.weight, i.prefix) for i in self.items])

    @property
    def weight_sum(self) -> float:
        return sum(i.weight for i in self.items)

    def metadata(self) -> dict[str, float]:
        """prefix → normalised share, for asset metadata."""
        return {i.prefix: i.share for i in self.items}


def format_weight(weight: float) -> str:
    """Shortest text that reads back as the same float (Megatron parses it with float())."""
    return repr(float(weight))


def blend_data_path(pairs: Sequence[tuple[float, str]]) -> list[str]:
    """`[w1, p1, w2, p2, …]` from (weight, prefix) pairs, after checking each pair."""
    problems = []
    for n, (weight, prefix) in enumerate(pairs):
        problems += [f"blend item {n}: {p}" for p in _pair_problems(weight, prefix)]
    if not pairs:
        problems.append("the blend is empty")
    if problems:
        raise LaunchConfigError(problems)
    out: list[str] = []
    for weight, prefix in pairs:
        out += [format_weight(weight), str(prefix)]
    return out


def _pair_problems(weight: float, prefix: str) -> list[str]:
    problems = []
    if not (isinstance(weight, (int, float)) and weight > 0 and weight != float("inf")):
        problems.append(f"weight {weight!r} must be a positive finite number")
    prefix = str(prefix)
    if not prefix.startswith("/") and not is_s3_url(prefix):
        # Relative prefixes depend on the job's working directory; one starting with '-' would be read by
        # argparse as an option, and one that parses as a number would be taken for a weight.
        problems.append(f"prefix {prefix!r} must be an absolute path (or {S3_SCHEME}bucket/key)")
    if prefix != prefix.strip() or any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        problems.append(
            f"prefix {prefix!r} has surrounding whitespace or control characters (Megatron strips prefixes)"
        )
    return problems


def resolve_blend(
    entries: Sequence[BlendEntry],
    *,
    base_dir: Path,
    shard_prefix: Callable[[str], str | Path] | None = None,
    canary_prefix: Callable[[str], str | Path] | None = None,
) -> Blend:
    """Absolute prefixes for the configured blend: relative prefixes against `base_dir`, shard batches through
    `shard_prefix` (batch key → prefix, provided by the token_shards asset), canary sets through `canary_prefix`
    (eval task → its canary shard, provided by the canary_set asset). All problems in one error."""
    problems, items = [], []
    total = sum(e.weight for e in entries)
    for n, entry in enumerate(entries):
        key = f"data.blend.{n}"
        named = [(field, value, resolver) for field, value, resolver in
                 (("shard_batch", entry.shard_batch, shard_prefix), ("canary_set", entry.canary_set, canary_prefix))
                 if value is not None]
        if named:
            field, value, resolver = named[0]
            if resolver is None:
                kind = "shard" if field == "shard_batch" else "canary"
                problems.append(f"{key}.{field}={value}: no {kind} resolver was given to find its prefix")
                continue
            try:
                found = str(resolver(value))
                prefix = found if is_s3_url(found) else Path(found)
            except (KeyError, LookupError, ValueError) as err:
                problems.append(f"{key}.{field}={value}: {err}")
                continue
        else:
            prefix = Path(entry.prefix)
            if not prefix.is_absolute():
                prefix = Path(base_dir) / prefix
        problems += [f"{key}: {p}" for p in _pair_problems(entry.weight, str(prefix))]
        items.append(BlendItem(str(prefix), float(entry.weight), float(entry.weight) / total, key))
    seen: dict[str, str] = {}
    for item in items:
        if item.prefix in seen:
            problems.append(f"{item.key}: prefix {item.prefix} is already in the blend as {seen[item.prefix]}")
        seen.setdefault(item.prefix, item.key)
    if problems:
        raise LaunchConfigError(problems)
    return Blend(tuple(items))


def missing_shard_files(prefixes: Sequence[str | Path]) -> list[Path]:
    """Every `<prefix>.bin` / `<prefix>.idx` that does not exist (empty when the blend is complete)."""
    return [path for prefix in prefixes for path in (bin_path(prefix), idx_path(prefix)) if not path.is_file()]
