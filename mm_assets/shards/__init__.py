"""Token shards: the unified vocabulary layout, document assembly, Megatron indexed datasets and their stats.

A pure library (no Dagster): the `token_shards` asset and its checks are thin wrappers around it.
"""

from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler, DocumentError, flatten_codes
from mm_assets.shards.indexed import (
    ShardFiles,
    ShardIndex,
    ShardWriter,
    iter_documents,
    read_index,
    read_tokens,
    write_shard,
)
from mm_assets.shards.megatron import ShardTokenizer, build_gpt_dataset, open_indexed_dataset
from mm_assets.shards.stats import (
    LengthStats,
    RangeStats,
    ShardStats,
    document_stats,
    length_distribution,
    shard_stats,
    special_token_ratio,
)
from mm_assets.shards.vocab import Codebook, ModalityRange, TokenRange, VocabLayout, VocabLayoutError

__all__ = [
    "AssemblyConfig",
    "Codebook",
    "DocumentAssembler",
    "DocumentError",
    "LengthStats",
    "ModalityRange",
    "RangeStats",
    "ShardFiles",
    "ShardIndex",
    "ShardStats",
    "ShardTokenizer",
    "ShardWriter",
    "TokenRange",
    "VocabLayout",
    "VocabLayoutError",
    "build_gpt_dataset",
    "document_stats",
    "flatten_codes",
    "iter_documents",
    "length_distribution",
    "open_indexed_dataset",
    "read_index",
    "read_tokens",
    "shard_stats",
    "special_token_ratio",
    "write_shard",
]
