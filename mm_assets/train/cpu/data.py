"""The data: --data-path blends of our shards, their vocabulary, and Megatron's GPTDataset / BlendedDataset."""

from __future__ import annotations

import argparse
import hashlib
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

from mm_assets.shards.vocab import ShardVocab, VocabLayout, VocabLayoutError
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.train.cpu import TrainerError
from mm_assets.train.cpu.args import Schedule

BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")  # of a GPTDataset sample, without attention_mask


def parse_data_path(words: Sequence[str]) -> tuple[list[str], list[float] | None]:
    """Megatron's --data-path: `PREFIX...` or `W1 PREFIX1 W2 PREFIX2 ...`, as separate words or one string."""
    items = [w for word in words for w in word.split()]
    if not items:
        raise TrainerError("--data-path is empty")

    def weight(text: str) -> float | None:
        try:
            return float(text)
        except ValueError:
            return None

    if len(items) % 2 == 0 and all(weight(items[i]) is not None for i in range(0, len(items), 2)):
        weights = [weight(items[i]) for i in range(0, len(items), 2)]
        prefixes = items[1::2]
        bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
        if bad:
            raise TrainerError(f"--data-path weights must be positive and finite, got {bad}")
        return prefixes, weights
    numeric = [i for i in items if weight(i) is not None]
    if numeric:
        raise TrainerError(f"--data-path {' '.join(items)!r}: expected PREFIX... or W1 PREFIX1 W2 PREFIX2 ... pairs")
    return items, None


def missing_prefixes(prefixes: Sequence[str]) -> list[str]:
    return [p for p in prefixes if not (Path(f"{p}.bin").is_file() and Path(f"{p}.idx").is_file())]


def resolve_vocab(args: argparse.Namespace, prefixes: Sequence[str]) -> ShardVocab:
    """--vocab-size / --null-tokenizer-eod-id / --null-tokenizer-pad-id, checked against (or, when left out,
    taken from) the vocab.json beside each shard. All shards of a blend must share one layout."""
    layouts = {}
    for prefix in prefixes:
        path = Path(prefix).parent / ArtifactLayout.SHARD_VOCAB
        if path.is_file():
            try:
                layouts[prefix] = VocabLayout.read(path)
            except (VocabLayoutError, ValueError, OSError) as err:
                raise TrainerError(f"{path}: {err}") from err
    shas = {layout.sha256 for layout in layouts.values()}
    if len(shas) > 1:
        raise TrainerError("the blend's shards have different vocab layouts: "
                           + ", ".join(f"{p} ({layouts[p].sha256[:12]})" for p in layouts))
    layout = next(iter(layouts.values()), None)
    size, eod, pad = args.vocab_size, args.null_tokenizer_eod_id, args.null_tokenizer_pad_id
    if layout is not None:
        given = {"--vocab-size": (size, layout.vocab_size), "--null-tokenizer-eod-id": (eod, layout.eod_id),
                 "--null-tokenizer-pad-id": (pad, layout.pad_id)}
        wrong = [f"{flag} {mine} but {ArtifactLayout.SHARD_VOCAB} says {theirs}" for flag, (mine, theirs) in given.items()
                 if mine is not None and theirs is not None and mine != theirs]
        if wrong:
            raise TrainerError("; ".join(wrong))
        size = layout.vocab_size if size is None else size
        eod = layout.eod_id if eod is None else eod
        pad = layout.pad_id if pad is None else pad
    if size is None:
        raise TrainerError(f"no vocabulary size: pass --vocab-size or put {ArtifactLayout.SHARD_VOCAB} beside the shards")
    eod = size - 1 if eod is None else eod  # Megatron's NullTokenizer defaults
    pad = -1 if pad is None else pad
    if not 0 <= eod < size or pad >= size:
        raise TrainerError(f"EOD id {eod} / pad id {pad} outside the vocabulary of {size}")
    return ShardVocab(size, eod, pad, layout.sha256 if layout is not None else "")


def padded_vocab_size(size: int, divisible_by: int) -> int:
    multiple = max(1, divisible_by)
    return -(-size // multiple) * multiple


def build_datasets(
    args, vocab: ShardVocab, blend: tuple[list[str], list[float] | None], sched: Schedule, cache: Path, notices: list[str],
    local: dict[str, str] | None = None,
):
    """Megatron's train/valid/test GPTDatasets (a BlendedDataset when weighted), as pretrain_gpt.py builds them.

    The cache folder is keyed by the .idx bytes of every prefix: GPTDataset's own cache key hashes paths and
    config, not content, so a shard rewritten in place would otherwise reuse stale indices. `local`: where each
    prefix's .idx is read here (an s3:// prefix's cached copy; megatron-core reads the .bin from the store).
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from mm_assets.shards.indexed import read_index

    local = local or {}
    content = hashlib.sha256()
    for prefix in blend[0]:
        content.update(Path(f"{local.get(prefix, prefix)}.idx").read_bytes())
    config = GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        split=args.split,
        path_to_cache=str(cache / content.hexdigest()[:16]),
        tokenizer=vocab,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,  # one shared causal mask instead (see causal_mask)
        mmap_bin_files=args.mmap_bin_files,
        object_storage_cache_path=args.object_storage_cache_path,
    )
    # A split without documents makes GPTDataset loop forever looking for tokens (Megatron-LM hangs the same
    # way on tiny shards): leave such a split out, exactly as a 0 in --split would.
    counts = {prefix: len(read_index(local.get(prefix, prefix)).lengths) for prefix in blend[0]}
    for i, name in enumerate(("train", "validation", "test")):
        bookends = config.split_matrix[i]
        if bookends is None:
            continue
        empty = [p for p, n in counts.items() if round(bookends[0] * n) == round(bookends[1] * n)]
        if empty and i == 0:
            raise TrainerError(f"--split {args.split!r} leaves no training documents in {', '.join(empty)}")
        if empty:
            config.split_matrix[i] = None
            notices.append(f"--split {args.split!r} leaves no {name} documents in {', '.join(empty)}: "
                           f"no {name} evaluation")
    sizes = [sched.train_samples, sched.valid_samples, sched.test_samples]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train, valid, test = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    if train is None or len(train) == 0:
        raise TrainerError(f"--split {args.split!r} leaves no training documents in {' '.join(blend[0])}")
    nonempty = [d if d is not None and len(d) else None for d in (valid, test)]
    return train, nonempty[0], nonempty[1]


def causal_mask(seq_length: int):
    """[1, 1, s, s], True above the diagonal (masked). megatron-core's default mask is built on "cuda"."""
    import torch

    return torch.triu(torch.ones(seq_length, seq_length, dtype=torch.bool), diagonal=1)[None, None]
