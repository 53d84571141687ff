"""Which crawl batches an experiment trains on, as the UI shows it.

Dagster 1.13 cannot say it with a partition mapping: a custom PartitionMapping never reaches the UI (only
built-in mappings are serialised into the code location's snapshot), StaticPartitionMapping takes static
partitions only, and experiments and crawl batches are dynamic. So `training_blend` depends on `token_shards`
through a mapping that claims no partition (the old AllPartitionMapping said every experiment read every
batch), and each materialization names its sources itself: the metadata `shard_batches`, and `lineage`, a
table linking each blend entry to its batch's token_shards partition and to the run that wrote the shard the
blend verified. Its data version is the hash of what it verified, so a blend rebuilt from unchanged shards
keeps its version and leaves `checkpoint` fresh, and a changed shard makes it stale.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# The blend's dependency on token_shards: the asset-level edge, no claim about partitions (see above).
NO_CLAIMED_PARTITIONS = dg.SpecificPartitionsPartitionMapping([])


@dataclass(frozen=True)
class ShardMaterialization:
    """A token_shards materialization: the run that wrote the shard and what it recorded."""

    run_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BlendSource:
    """One entry of a blend and where its shard came from."""

    key: str  # data.blend.N
    prefix: str  # what Megatron reads
    weight: float
    share: float
    batch: str | None  # the crawl batch (a token_shards partition); None for a prefix made elsewhere
    run_id: str | None  # the token_shards run whose shard the blend verified (None: not made through Dagster)
    bin_sha256: str | None
    canary_set: str | None = None  # an eval task whose canary shard the blend injects on purpose

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "prefix": self.prefix, "weight": self.weight, "share": self.share,
                "shard_batch": self.batch, "token_shards_run_id": self.run_id, "bin_sha256": self.bin_sha256,
                "canary_set": self.canary_set}


def latest_shard_materialization(instance: dg.DagsterInstance, asset_key: dg.AssetKey
                                 ) -> Callable[[str], ShardMaterialization | None]:
    """batch → its latest token_shards materialization (None when there is none)."""
    def lookup(batch: str) -> ShardMaterialization | None:
        found = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[batch]), limit=1).records
        if not found or found[0].asset_materialization is None:
            return None
        metadata = {k: v.value for k, v in found[0].asset_materialization.metadata.items()}
        return ShardMaterialization(found[0].run_id, metadata)
    return lookup


def _row(source: BlendSource) -> str:
    if source.canary_set is not None:
        where, made = f"— (canary of eval set `{source.canary_set}`)", "[canary_set](/assets/canary_set)"
    elif source.batch is None:
        where, made = f"— (prefix `{source.prefix}`)", "made outside Dagster"
    else:
        where = f"[{source.batch}](/assets/token_shards?partition={source.batch})"
        made = f"[run {source.run_id[:8]}](/runs/{source.run_id})" if source.run_id else "not materialized in Dagster"
    sha = f"`{source.bin_sha256[:12]}…`" if source.bin_sha256 else "—"
    return f"| {source.key} | {where} | {source.weight:g} ({source.share:.1%}) | {made} | {sha} |"


def lineage_metadata(sources: Sequence[BlendSource]) -> dict[str, Any]:
    """The materialization metadata that names the blend's sources (shown on its partition in the UI)."""
    table = ["| blend entry | crawl batch (token_shards partition) | weight (share) | shard written by | .bin sha256 |",
             "|---|---|---|---|---|", *map(_row, sources)]
    return {
        "shard_batches": dg.MetadataValue.json(sorted({s.batch for s in sources if s.batch})),
        "lineage": dg.MetadataValue.md("\n".join(table)),
    }


def blend_data_version(blend: Mapping[str, Any]) -> dg.DataVersion:
    """A hash of what the blend verified: its --data-path, every shard's digests and the vocabulary."""
    verified = {k: blend[k] for k in ("data_path", "shards", "vocab_sha256")}
    return dg.DataVersion(hashlib.sha256(json.dumps(verified, sort_keys=True).encode()).hexdigest()[:24])
