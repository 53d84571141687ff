"""megatron-core interop for our shards: IndexedDataset and GPTDataset builders (megatron.core is imported lazily:
it takes seconds; ShardVocab is the tokenizer GPTDataset takes)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mm_assets.shards.indexed import idx_path
from mm_assets.shards.vocab import ShardVocab, VocabLayout


def open_indexed_dataset(prefix: str | Path):
    """megatron-core's own reader over the shard (`IndexedDataset`, mmap)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    return IndexedDataset(str(prefix), multimodal=False, mmap=True)


def build_gpt_dataset(
    prefix: str | Path,
    layout: VocabLayout,
    *,
    sequence_length: int,
    cache_dir: str | Path,
    num_samples: int | None = None,
    seed: int = 1234,
    **config: Any,
):
    """The training split of a GPTDataset over one shard, built the way Megatron training builds it (CPU).

    GPTDataset caches its indices (.npy + description) under a hash of the path and config but not of the
    shard's content: a shard rewritten at the same prefix would hit a stale cache (wrong length, then a read
    past the end). So the cache goes to `cache_dir/<sha256 of the .idx>`: the indices depend only on the
    lengths stored there. Left unset, Megatron would write inside the prefix (`<prefix>/cache/...`).
    Extra `config` goes to GPTDatasetConfig.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    options = dict(reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False)
    options.update(config)
    gpt_config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=sequence_length,
        blend=([str(prefix)], None),
        split="1,0,0",
        path_to_cache=str(Path(cache_dir) / hashlib.sha256(idx_path(prefix).read_bytes()).hexdigest()[:16]),
        tokenizer=ShardVocab.from_layout(layout),
        **options,
    )
    builder = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, None, None], lambda: True, gpt_config)
    return builder.build()[0]


