"""megatron-core interop for our shards: the tokenizer stand-in GPTDataset needs, IndexedDataset and GPTDataset
builders (megatron.core is imported lazily: it takes seconds)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mm_assets.shards.indexed import idx_path
from mm_assets.shards.vocab import VocabLayout

@dataclass(frozen=True)
class ShardTokenizer:
    """What megatron-core 0.16.1's GPTDataset reads from its `tokenizer`: no tokenizer needed.

    `eod` for masks, `pad` for short samples (if it equals eod, Megatron warns and pads with -1),
    `vocab_size` (its fast-cache path, which skips the .idx header, assumes uint16 tokens when it is
    <= 65536) and `unique_identifiers`, part of the JSON hashed into the index cache file names.
    """

    vocab_size: int
    eod: int
    pad: int
    layout_sha256: str

    @classmethod
    def from_layout(cls, layout: VocabLayout) -> ShardTokenizer:
        pad = layout.pad_id
        if pad is None:
            raise ValueError("the vocab layout has no <pad> token: GPTDataset needs one distinct from <eod>")
        return cls(layout.vocab_size, layout.eod_id, pad, layout.sha256)

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "vocab_size": self.vocab_size, "layout_sha256": self.layout_sha256}


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
        tokenizer=ShardTokenizer.from_layout(layout),
        **options,
    )
    builder = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, None, None], lambda: True, gpt_config)
    return builder.build()[0]


