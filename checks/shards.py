"""Checks on `token_shards` (reference §B.9 "silent data bugs"): files as the manifest recorded them and an
index consistent with its .bin, ids in range, documents complete, special-token ratio and document lengths
within the configured bounds."""

from typing import Any

import dagster as dg
import pyarrow.parquet as pq

from mm_assets.config.pipeline import ShardsConfig
from mm_assets.shards.assets import token_shards
from mm_assets.shards.manifest import shard_problems
from mm_assets.shards.stats import ShardStats, shard_stats
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.store import Storage
from mm_assets.tokens.assets import MODALITIES
from mm_assets.tokens.store import read_tokens
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


def _stats(storage: Storage, batch: str) -> ShardStats:
    prefix = storage.store.local_prefix(storage.layout.shard_prefix(batch))  # the shard folder, fetched whole
    return shard_stats(prefix, VocabLayout.read(prefix.parent / storage.layout.SHARD_VOCAB))


def ids_problems(stats: ShardStats) -> list[str]:
    problems = [f"{r.name}: {r.out_of_range} ids outside [{r.start}, {r.stop})"
                for r in stats.modalities.values() if r.out_of_range]
    if stats.unbalanced_documents:
        problems.append(f"{stats.unbalanced_documents} documents with unbalanced modality markers")
    if stats.documents_without_eod:
        problems.append(f"{stats.documents_without_eod} documents do not end with EOD")
    return problems


def distribution_problems(stats: ShardStats, cfg: ShardsConfig) -> list[str]:
    problems = []
    if stats.special_token_ratio > cfg.special_token_ratio_max:
        problems.append(f"special-token ratio {stats.special_token_ratio:.4f} > shards.special_token_ratio_max "
                        f"{cfg.special_token_ratio_max}")
    if stats.documents and stats.lengths.min < cfg.min_document_tokens:
        problems.append(f"shortest document {stats.lengths.min} tokens < shards.min_document_tokens {cfg.min_document_tokens}")
    if stats.documents and stats.lengths.max > cfg.max_document_tokens:
        problems.append(f"longest document {stats.lengths.max} tokens > shards.max_document_tokens {cfg.max_document_tokens}")
    return problems


def tokenized_items(storage: Storage, batch: str) -> set[str]:
    local = storage.store.local_path
    return {uid for m in MODALITIES for uid in read_tokens(local(storage.layout.token_file(batch, m)))[0]}


def _result(problems: list[str], meta: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not problems, metadata={**meta, "problems": "\n".join(problems) or "none"})


def metadata_rows(storage: Storage, batch: str) -> int | None:
    key = storage.layout.metadata_file(batch)
    return pq.ParquetFile(storage.store.local_path(key)).metadata.num_rows if storage.store.exists(key) else None


@dg.asset_check(asset=token_shards, blocking=True,
                description="Index consistent (pointers, document index, .bin size, documents > 0); files match manifest.json.")
def shard_files_consistent(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    """A batch whose metadata has no row (every item a duplicate or failed) may have an empty shard: the blend
    and the trainer refuse it. Any other batch must yield documents."""
    batch = context.partition_key
    prefix = storage.layout.shard_prefix(batch)
    rows = metadata_rows(storage, batch)
    return _result(shard_problems(storage.store.local_prefix(prefix), allow_empty=rows == 0),
                   {"prefix": dg.MetadataValue.path(storage.store.url(prefix)),
                    "metadata_rows": -1 if rows is None else rows})


@dg.asset_check(asset=token_shards, blocking=True, description="Every id inside its modality's range; markers balanced; EOD last.")
def shard_ids_in_range(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    stats = _stats(storage, context.partition_key)
    return _result(ids_problems(stats), {"out_of_range": stats.out_of_range, "tokens": stats.tokens})


@dg.asset_check(asset=token_shards, blocking=True, description="No empty document; one document per tokenized item.")
def shard_documents_complete(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    batch = context.partition_key
    stats = _stats(storage, batch)
    documents = storage.store.local_path(storage.layout.shard_documents(batch))
    mapped = pq.read_table(documents).column("unique_id").to_pylist()
    expected = tokenized_items(storage, batch)
    problems = []
    if stats.empty_documents:
        problems.append(f"{stats.empty_documents} empty documents")
    if stats.documents != len(expected) or set(mapped) != expected:
        problems.append(f"{stats.documents} documents for {len(expected)} tokenized items "
                        f"(missing: {sorted(expected - set(mapped))[:5]})")
    return _result(problems, {"documents": stats.documents, "tokenized_items": len(expected)})


@dg.asset_check(asset=token_shards, blocking=True, description="Special-token ratio and document lengths inside shards.* bounds.")
def shard_token_distribution(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                             storage: StorageResource) -> dg.AssetCheckResult:
    stats = _stats(storage, context.partition_key)
    meta = {"special_token_ratio": round(stats.special_token_ratio, 6), "length_min": stats.lengths.min,
            "length_p50": stats.lengths.p50, "length_p95": stats.lengths.p95, "length_max": stats.lengths.max}
    return _result(distribution_problems(stats, pipeline.load().shards), meta)


SHARD_CHECKS = [shard_files_consistent, shard_ids_in_range, shard_documents_complete, shard_token_distribution]
