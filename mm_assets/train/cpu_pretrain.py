"""The CPU trainer: `pretrain_gpt.py`'s arguments, log lines and checkpoint layout, for CI and the demo.

`python -m mm_assets.train.cpu_pretrain <Megatron-LM arguments>` trains a small GPT built with megatron-core
0.16.1 (`GPTModel` + `get_gpt_layer_local_spec()`) on the CPU, one process, gloo, reading our shards through
Megatron's GPTDataset / BlendedDataset. The launch renderer (mm_assets.train.megatron_args) hands it the same
argv it hands `pretrain_gpt.py`: every flag it can emit is accepted; those that have no meaning on one CPU
process (sequence parallel, distributed optimizer, recompute, attention backend, tensorboard) are accepted and
ignored with a notice; values it cannot honour (TP/PP/CP > 1, bf16, fp8, transformer_engine, nccl) are refused.

What matches Megatron-LM (main, d98e8a64): the stdout lines (`training_log`, `evaluate_and_print_results`,
`save_checkpoint`; parsed by mm_assets.train.megatron_log), the LR schedule (megatron-core's own
OptimizerParamScheduler, stepped in samples; lr 0 at the first step of a warmup), weight decay off for biases
and norms, per-token loss averaged over micro-batches, skipped-iteration bookkeeping, dataset sizes, and the
checkpoint layout (`iter_0000100/mp_rank_00/model_optim_rng.pt` + `latest_checkpointed_iteration.txt`). What
differs: the optimizer is plain torch AdamW (SGD for --optimizer sgd); a non-finite loss or grad norm skips the
step instead of stopping the run; the log time is UTC; on resume the schedule's shape comes from the current
arguments (Megatron would assert it equals the checkpoint's), so a run can be extended with a larger
--train-iters; checkpoints load with `torch.load(weights_only=True)`.

Under Dagster Pipes (DAGSTER_PIPES_CONTEXT set, e.g. by the Slurm Pipes client) the log lines go to Dagster's
log and the end of the run reports a materialization (final loss, iterations, checkpoint path and sha256s,
wall time); without it, it is a plain command. Exit status: 0 done, 2 bad arguments or data, 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mm_assets.paths import atomic_write_text, fsync_dir, publish_dir, sha256_file
from mm_assets.train import megatron_log as mlog

PROG = "python -m mm_assets.train.cpu_pretrain"
TRACKER_FILE = "latest_checkpointed_iteration.txt"  # Megatron's tracker: the latest complete iteration
CHECKPOINT_FILE = Path("mp_rank_00") / "model_optim_rng.pt"  # legacy "torch" format, TP = PP = 1
CHECKPOINT_VERSION = 3.0
VOCAB_FILE = "vocab.json"  # beside each shard prefix (mm_assets.shards.assets)
BATCH_KEYS = ("tokens", "labels", "loss_mask", "position_ids")  # of a GPTDataset sample, without attention_mask


class TrainerError(Exception):
    """Bad arguments, data or checkpoint: reported as one line on stderr, exit status 2."""


# -- arguments ----------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of exiting, so that Pipes reports the reason too
        raise TrainerError(message)


def build_parser() -> argparse.ArgumentParser:
    """Megatron-LM's flag names and defaults (arguments.py), restricted to what a CPU run uses."""
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0], allow_abbrev=False)
    g = p.add_argument_group("parallelism (one CPU process: all must be 1)")
    g.add_argument("--tensor-model-parallel-size", type=int, default=1)
    g.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    g.add_argument("--context-parallel-size", type=int, default=1)
    g.add_argument("--num-layers-per-virtual-pipeline-stage", type=int, default=None)
    g.add_argument("--sequence-parallel", action="store_true", help="ignored: Megatron turns it off at TP=1")
    g.add_argument("--use-distributed-optimizer", action="store_true", help="ignored: one rank, nothing to shard")
    g.add_argument("--distributed-backend", default="gloo", choices=["gloo", "nccl"])

    g = p.add_argument_group("model")
    g.add_argument("--num-layers", type=int, required=True)
    g.add_argument("--hidden-size", type=int, required=True)
    g.add_argument("--ffn-hidden-size", type=int, default=None, help="default 4 × hidden size")
    g.add_argument("--num-attention-heads", type=int, required=True)
    g.add_argument("--group-query-attention", action="store_true")
    g.add_argument("--num-query-groups", type=int, default=1)
    g.add_argument("--seq-length", type=int, required=True)
    g.add_argument("--max-position-embeddings", type=int, default=None, help="default --seq-length")
    g.add_argument("--normalization", default="LayerNorm", choices=["LayerNorm", "RMSNorm"])
    g.add_argument("--swiglu", action="store_true")
    g.add_argument("--position-embedding-type", default="learned_absolute",
                   choices=["learned_absolute", "rope", "none"])
    g.add_argument("--rotary-base", type=int, default=10000)
    g.add_argument("--untie-embeddings-and-output-weights", action="store_true")
    g.add_argument("--disable-bias-linear", action="store_true")
    g.add_argument("--attention-dropout", type=float, default=0.1)
    g.add_argument("--hidden-dropout", type=float, default=0.1)
    g.add_argument("--init-method-std", type=float, default=0.02)
    g.add_argument("--transformer-impl", default="local", choices=["local", "transformer_engine"])
    g.add_argument("--make-vocab-size-divisible-by", type=int, default=128)

    g = p.add_argument_group("batch, length and schedule")
    g.add_argument("--micro-batch-size", type=int, required=True)
    g.add_argument("--global-batch-size", type=int, default=None, help="default: micro batch (no accumulation)")
    g.add_argument("--train-iters", type=int, default=None)
    g.add_argument("--train-samples", type=int, default=None)
    g.add_argument("--lr-warmup-iters", type=int, default=0)
    g.add_argument("--lr-warmup-samples", type=int, default=0)
    g.add_argument("--lr-decay-iters", type=int, default=None)
    g.add_argument("--lr-decay-samples", type=int, default=None)
    g.add_argument("--lr-decay-style", default="linear",
                   choices=["constant", "linear", "cosine", "inverse-square-root"])
    g.add_argument("--lr-warmup-init", type=float, default=0.0)
    g.add_argument("--exit-duration-in-mins", type=float, default=None)

    g = p.add_argument_group("optimizer")
    g.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    g.add_argument("--lr", type=float, required=True)
    g.add_argument("--min-lr", type=float, default=0.0)
    g.add_argument("--adam-beta1", type=float, default=0.9)
    g.add_argument("--adam-beta2", type=float, default=0.999)
    g.add_argument("--adam-eps", type=float, default=1e-8)
    g.add_argument("--sgd-momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--clip-grad", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=1234)

    g = p.add_argument_group("precision and memory (fp32 on the CPU)")
    g.add_argument("--bf16", action="store_true")
    g.add_argument("--fp16", action="store_true")
    g.add_argument("--fp8-format", default=None)
    g.add_argument("--attention-backend", default="auto")
    g.add_argument("--recompute-granularity", default=None, choices=["full", "selective"])
    g.add_argument("--recompute-method", default=None, choices=["uniform", "block"])
    g.add_argument("--recompute-num-layers", type=int, default=None)

    g = p.add_argument_group("data (our shards: int32 token ids, one document per sequence ending with EOD)")
    g.add_argument("--data-path", nargs="*", default=None,
                   help="PREFIX | W1 PREFIX1 W2 PREFIX2 ... (separate words or one quoted string)")
    g.add_argument("--split", default="969, 30, 1")
    g.add_argument("--tokenizer-type", default="NullTokenizer")
    g.add_argument("--vocab-size", type=int, default=None, help=f"default: the shards' {VOCAB_FILE}")
    g.add_argument("--null-tokenizer-eod-id", type=int, default=None)
    g.add_argument("--null-tokenizer-pad-id", type=int, default=None)
    g.add_argument("--data-cache-path", default=None, help="default: <--save>/data-cache or a temp folder")

    g = p.add_argument_group("checkpoints, logging and evaluation")
    g.add_argument("--save", default=None)
    g.add_argument("--load", default=None)
    g.add_argument("--save-interval", type=int, default=None)
    g.add_argument("--log-interval", type=int, default=100)
    g.add_argument("--log-throughput", action="store_true")
    g.add_argument("--eval-interval", type=int, default=1000)
    g.add_argument("--eval-iters", type=int, default=100)
    g.add_argument("--tensorboard-dir", default=None)
    return p


@dataclass(frozen=True)
class Schedule:
    """Run length and LR schedule, in Megatron's units: iterations for the loop, samples for the scheduler."""

    train_iters: int
    train_samples: int
    lr_warmup_steps: int  # samples
    lr_decay_steps: int  # samples
    valid_samples: int
    test_samples: int


def check_args(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(problems, notices): every refused value at once, and what is accepted but ignored."""
    problems, notices = [], []
    for flag in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"):
        if getattr(args, flag) != 1:
            problems.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}: "
                            "the CPU trainer runs one process (1 only)")
    if args.num_layers_per_virtual_pipeline_stage is not None:
        problems.append("--num-layers-per-virtual-pipeline-stage needs pipeline parallelism (not on the CPU)")
    if args.distributed_backend != "gloo":
        problems.append(f"--distributed-backend {args.distributed_backend}: only gloo runs on the CPU")
    if args.transformer_impl != "local":
        problems.append("--transformer-impl transformer_engine needs CUDA: use local")
    if args.bf16 or args.fp16 or args.fp8_format:
        problems.append("--bf16 / --fp16 / --fp8-format: the CPU trainer computes in fp32")
    if args.tokenizer_type != "NullTokenizer":
        problems.append(f"--tokenizer-type {args.tokenizer_type}: our shards hold token ids (NullTokenizer)")
    if not args.data_path:
        problems.append("--data-path is required (PREFIX, or W1 PREFIX1 W2 PREFIX2 ...)")
    if (args.train_iters is None) == (args.train_samples is None):
        problems.append("give exactly one of --train-iters and --train-samples")
    if args.train_iters is not None and (args.lr_warmup_samples or args.lr_decay_samples is not None):
        problems.append("--train-iters goes with --lr-warmup-iters / --lr-decay-iters, not the -samples flags")
    if args.train_samples is not None and (args.lr_warmup_iters or args.lr_decay_iters is not None):
        problems.append("--train-samples goes with --lr-warmup-samples / --lr-decay-samples, not the -iters flags")
    for flag in ("num_layers", "hidden_size", "num_attention_heads", "seq_length", "micro_batch_size"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.hidden_size % max(1, args.num_attention_heads):
        problems.append(f"--hidden-size {args.hidden_size} is not divisible by --num-attention-heads "
                        f"{args.num_attention_heads}")
    if args.group_query_attention and args.num_attention_heads % max(1, args.num_query_groups):
        problems.append(f"--num-attention-heads {args.num_attention_heads} is not divisible by --num-query-groups "
                        f"{args.num_query_groups}")
    gbs = args.global_batch_size or args.micro_batch_size
    if args.micro_batch_size >= 1 and gbs % args.micro_batch_size:
        problems.append(f"--global-batch-size {gbs} is not divisible by --micro-batch-size {args.micro_batch_size} "
                        "× data-parallel size 1")
    max_pos = args.max_position_embeddings or args.seq_length
    if args.position_embedding_type == "learned_absolute" and max_pos < args.seq_length:
        problems.append(f"--max-position-embeddings {max_pos} is shorter than --seq-length {args.seq_length}")
    if not 0 <= args.min_lr <= args.lr:
        problems.append(f"--min-lr {args.min_lr} must be between 0 and --lr {args.lr}")
    for flag in ("log_interval", "eval_interval"):
        if getattr(args, flag) < 1:
            problems.append(f"--{flag.replace('_', '-')} must be >= 1")
    if args.eval_iters < 0:
        problems.append("--eval-iters must be >= 0")
    if args.save_interval is not None and args.save_interval < 1:
        problems.append("--save-interval must be >= 1")
    if args.save_interval is not None and args.save is None:
        problems.append("--save-interval needs --save")

    if args.sequence_parallel:
        notices.append("--sequence-parallel ignored: Megatron turns it off at tensor-parallel size 1")
    if args.use_distributed_optimizer:
        notices.append("--use-distributed-optimizer ignored: one rank holds the whole optimizer")
    if args.recompute_granularity:
        notices.append(f"--recompute-granularity {args.recompute_granularity} ignored: activations fit on the CPU")
    if args.attention_backend not in ("auto", "local", "unfused"):
        notices.append(f"--attention-backend {args.attention_backend} ignored: the local spec's unfused attention runs")
    if args.tensorboard_dir:
        notices.append("--tensorboard-dir ignored: the CPU trainer logs to stdout only")
    return problems, notices


def schedule_of(args: argparse.Namespace) -> Schedule:
    """Megatron's arithmetic: iterations from samples, scheduler steps in samples, eval dataset sizes."""
    gbs = args.global_batch_size or args.micro_batch_size
    if args.train_iters is not None:
        train_iters, train_samples = args.train_iters, args.train_iters * gbs
        warmup = args.lr_warmup_iters * gbs
        decay = (args.lr_decay_iters if args.lr_decay_iters is not None else args.train_iters) * gbs
    else:
        train_samples = args.train_samples
        train_iters = train_samples // gbs
        warmup = args.lr_warmup_samples
        decay = args.lr_decay_samples if args.lr_decay_samples is not None else train_samples
    if train_iters < 1:
        raise TrainerError(f"{train_samples} train samples make no iteration of global batch {gbs}")
    if decay < 1 or warmup >= decay:
        raise TrainerError(f"LR warmup ({warmup} samples) must be shorter than the decay ({decay} samples)")
    valid = (train_iters // args.eval_interval + 1) * args.eval_iters * gbs
    return Schedule(train_iters, train_samples, warmup, decay, valid, args.eval_iters * gbs)


# -- data ---------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class Vocab:
    size: int
    eod: int
    pad: int
    layout_sha256: str  # of the shards' vocab.json ("" when the shards have none)


def resolve_vocab(args: argparse.Namespace, prefixes: Sequence[str]) -> Vocab:
    """--vocab-size / --null-tokenizer-eod-id / --null-tokenizer-pad-id, checked against (or, when left out,
    taken from) the vocab.json beside each shard. All shards of a blend must share one layout."""
    from mm_assets.shards.vocab import VocabLayout, VocabLayoutError

    layouts = {}
    for prefix in prefixes:
        path = Path(prefix).parent / VOCAB_FILE
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
        wrong = [f"{flag} {mine} but {VOCAB_FILE} says {theirs}" for flag, (mine, theirs) in given.items()
                 if mine is not None and theirs is not None and mine != theirs]
        if wrong:
            raise TrainerError("; ".join(wrong))
        size = layout.vocab_size if size is None else size
        eod = layout.eod_id if eod is None else eod
        pad = layout.pad_id if pad is None else pad
    if size is None:
        raise TrainerError(f"no vocabulary size: pass --vocab-size or put {VOCAB_FILE} beside the shards")
    eod = size - 1 if eod is None else eod  # Megatron's NullTokenizer defaults
    pad = -1 if pad is None else pad
    if not 0 <= eod < size or pad >= size:
        raise TrainerError(f"EOD id {eod} / pad id {pad} outside the vocabulary of {size}")
    return Vocab(size, eod, pad, layout.sha256 if layout is not None else "")


def padded_vocab_size(size: int, divisible_by: int) -> int:
    multiple = max(1, divisible_by)
    return -(-size // multiple) * multiple


def build_datasets(
    args, vocab: Vocab, blend: tuple[list[str], list[float] | None], sched: Schedule, cache: Path, notices: list[str]
):
    """Megatron's train/valid/test GPTDatasets (a BlendedDataset when weighted), as pretrain_gpt.py builds them.

    The cache folder is keyed by the .idx bytes of every prefix: GPTDataset's own cache key hashes paths and
    config, not content, so a shard rewritten in place would otherwise reuse stale indices.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    from mm_assets.shards.indexed import ShardTokenizer, read_index

    content = hashlib.sha256()
    for prefix in blend[0]:
        content.update(Path(f"{prefix}.idx").read_bytes())
    config = GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        split=args.split,
        path_to_cache=str(cache / content.hexdigest()[:16]),
        tokenizer=ShardTokenizer(vocab.size, vocab.eod, vocab.pad, vocab.layout_sha256),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,  # one shared causal mask instead (see causal_mask)
    )
    # A split without documents makes GPTDataset loop forever looking for tokens (Megatron-LM hangs the same
    # way on tiny shards): leave such a split out, exactly as a 0 in --split would.
    counts = {prefix: len(read_index(prefix).lengths) for prefix in blend[0]}
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


# -- model and optimizer ------------------------------------------------------------------------------------


def install_cpu_shims() -> None:
    """The two patches that let megatron-core 0.16.1 train on the CPU (DESIGN.md §9); this process only.

    RoPE moves its frequencies to `torch.cuda.current_device()`, and attention dropout (and Megatron's
    GPU weight init) enter `get_cuda_rng_tracker().fork()`, which needs CUDA RNG states
    (`model_parallel_cuda_manual_seed`). On one CPU process there is nothing to fork: dropout draws from the
    CPU generator, which the checkpoint saves.
    """
    import torch
    from megatron.core.tensor_parallel.random import get_cuda_rng_tracker

    torch.cuda.current_device = lambda: torch.device("cpu")
    get_cuda_rng_tracker().fork = lambda *_, **__: contextlib.nullcontext()


def build_model(args, vocab_padded: int):
    import torch
    import torch.nn.functional as F

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Apex is not installed. Falling back to Torch Norm", cuda graph scope
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
        from megatron.core.transformer.transformer_config import TransformerConfig

        config = TransformerConfig(
            num_layers=args.num_layers,
            hidden_size=args.hidden_size,
            ffn_hidden_size=args.ffn_hidden_size or 4 * args.hidden_size,
            num_attention_heads=args.num_attention_heads,
            num_query_groups=args.num_query_groups if args.group_query_attention else None,
            normalization=args.normalization,
            gated_linear_unit=args.swiglu,
            activation_func=F.silu if args.swiglu else F.gelu,
            add_bias_linear=not args.disable_bias_linear,
            hidden_dropout=args.hidden_dropout,
            attention_dropout=args.attention_dropout,
            init_method_std=args.init_method_std,
            use_cpu_initialization=True,  # Megatron's GPU init forks the CUDA RNG
            params_dtype=torch.float32,
            pipeline_dtype=torch.float32,
        )
        return GPTModel(
            config=config,
            transformer_layer_spec=get_gpt_layer_local_spec(normalization=args.normalization),
            vocab_size=vocab_padded,
            max_sequence_length=args.max_position_embeddings or args.seq_length,
            pre_process=True,
            post_process=True,
            share_embeddings_and_output_weights=not args.untie_embeddings_and_output_weights,
            position_embedding_type=args.position_embedding_type,
            rotary_base=args.rotary_base,
        )


def build_optimizer(args, model, sched: Schedule):
    """Plain torch optimizer with Megatron's parameter groups (no decay for biases and 1-D params) and
    megatron-core's OptimizerParamScheduler driving lr and weight decay, stepped in samples."""
    import torch
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(".bias") or param.dim() == 1 else decay).append(param)
    groups = [{"params": decay, "wd_mult": 1.0}, {"params": no_decay, "wd_mult": 0.0}]
    if args.optimizer == "adam":
        optimizer = torch.optim.AdamW(groups, lr=args.lr, betas=(args.adam_beta1, args.adam_beta2),
                                      eps=args.adam_eps, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=args.lr, momentum=args.sgd_momentum, weight_decay=args.weight_decay)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = OptimizerParamScheduler(
            optimizer,
            init_lr=args.lr_warmup_init,
            max_lr=args.lr,
            min_lr=args.min_lr,
            lr_warmup_steps=sched.lr_warmup_steps,
            lr_decay_steps=sched.lr_decay_steps,
            lr_decay_style=args.lr_decay_style,
            start_wd=args.weight_decay,
            end_wd=args.weight_decay,
            wd_incr_steps=sched.train_samples,
            wd_incr_style="constant",
        )
    return optimizer, scheduler


def flops_per_batch(args, batch_size: int, vocab_padded: int) -> float:
    """Megatron's num_floating_point_operations for a dense GPT (forward + backward, BSHD)."""
    h, s, layers = args.hidden_size, args.seq_length, args.num_layers
    kv = h // args.num_attention_heads
    groups = args.num_query_groups if args.group_query_attention else args.num_attention_heads
    q, k = kv * args.num_attention_heads, kv * groups
    ffn = args.ffn_hidden_size or 4 * h
    mlp = h * ffn * (3 if args.swiglu else 2)
    attention_projections = h * (q + 2 * k) + q * h
    per_token = 6 * ((mlp + attention_projections) * layers + h * vocab_padded)
    return batch_size * s * per_token + batch_size * s * s * 6 * q * layers  # + causal QK^T and (QK^T)V


# -- checkpoints --------------------------------------------------------------------------------------------

MODEL_SHAPE_ARGS = (
    "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "group_query_attention",
    "num_query_groups", "normalization", "swiglu", "position_embedding_type", "untie_embeddings_and_output_weights",
    "disable_bias_linear", "max_position_embeddings", "padded_vocab_size",
)


def checkpoint_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def read_tracker(root: str | Path) -> int | None:
    """The iteration in `latest_checkpointed_iteration.txt`, or None when there is no checkpoint yet."""
    path = Path(root) / TRACKER_FILE
    if not path.is_file():
        return None
    text = path.read_text().strip()
    if not text.isdigit():
        raise TrainerError(f"{path} holds {text!r}, not an iteration (release checkpoints are not supported)")
    return int(text)


def save_checkpoint(root: str | Path, iteration: int, state: dict[str, Any]) -> Path:
    """Write `iter_NNNNNNN/mp_rank_00/model_optim_rng.pt` aside, publish the folder with one rename, then
    update the tracker (also by rename): a crash leaves the previous checkpoint the latest."""
    import torch

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, iteration)
    staged = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        target = staged / CHECKPOINT_FILE
        target.parent.mkdir(parents=True)
        with open(target, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(target.parent)
        publish_dir(staged, final)
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise
    atomic_write_text(root / TRACKER_FILE, str(iteration))
    return final


def load_checkpoint(root: str | Path, iteration: int) -> dict[str, Any]:
    import torch

    path = checkpoint_dir(root, iteration) / CHECKPOINT_FILE
    if not path.is_file():
        raise TrainerError(f"{Path(root) / TRACKER_FILE} names iteration {iteration} but {path} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_sha256(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def rng_state() -> dict[str, Any]:
    import torch

    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "random_rng_state": random.getstate(),
        # A tensor, not an ndarray: torch.load(weights_only=True) refuses numpy objects.
        "np_rng_state": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch_rng_state": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["random_rng_state"])
    name, keys, pos, has_gauss, gauss = state["np_rng_state"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch_rng_state"])


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class Progress:
    iteration: int = 0
    consumed_train_samples: int = 0
    consumed_valid_samples: int = 0
    flops_so_far: float = 0.0


@dataclass
class Interval:
    """Megatron's total_loss_dict between two log lines."""

    loss_sum: float = 0.0
    advanced: int = 0
    skipped: int = 0
    nan: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.loss_sum, self.advanced, self.skipped, self.nan, self.seconds = 0.0, 0, 0, 0, 0.0


@dataclass
class RunResult:
    first_loss: float | None = None
    last_loss: float | None = None
    last_validation_loss: float | None = None
    resumed_from: int | None = None
    checkpoint: Path | None = None


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # printed without a zone, like Megatron


class Trainer:
    def __init__(self, args, sched: Schedule, vocab: Vocab, datasets, emit: Callable[[str, bool], None]) -> None:
        import torch

        self.args, self.sched, self.vocab, self.emit = args, sched, vocab, emit
        self.train_ds, self.valid_ds, self.test_ds = datasets
        self.gbs = args.global_batch_size or args.micro_batch_size
        self.num_micro = self.gbs // args.micro_batch_size
        self.vocab_padded = padded_vocab_size(vocab.size, args.make_vocab_size_divisible_by)
        self.model = build_model(args, self.vocab_padded)
        self.optimizer, self.scheduler = build_optimizer(args, self.model, sched)
        self.mask = causal_mask(args.seq_length)
        self.flops = flops_per_batch(args, self.gbs, self.vocab_padded)
        self.progress = Progress()
        self.result = RunResult()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.torch = torch

    # - batches -

    def _micro_batches(self, dataset, start: int, count: int) -> list[dict]:
        mbs = self.args.micro_batch_size
        n = len(dataset)
        out = []
        for m in range(count):
            samples = [dataset[(start + m * mbs + i) % n] for i in range(mbs)]
            batch = {k: self.torch.stack([s[k] for s in samples]) for k in BATCH_KEYS}
            top = int(batch["tokens"].max())
            if top >= self.vocab.size:
                raise TrainerError(f"token id {top} in the data is outside --vocab-size {self.vocab.size}")
            out.append(batch)
        return out

    def _loss(self, batch) -> tuple[Any, Any]:
        """(sum of per-token losses under the loss mask, number of such tokens) for one micro-batch."""
        per_token = self.model(batch["tokens"], batch["position_ids"], self.mask, labels=batch["labels"])
        mask = batch["loss_mask"].float()
        return (per_token.float() * mask).sum(), mask.sum()

    # - one iteration -

    def train_step(self) -> tuple[float, float | None, bool]:
        """(loss, grad norm, skipped) for one global batch: Megatron's per-micro-batch token average, averaged
        over micro-batches for the gradient; the reported loss is the global token average."""
        torch = self.torch
        p = self.progress
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens = 0.0, 0.0
        for batch in self._micro_batches(self.train_ds, p.consumed_train_samples, self.num_micro):
            loss_sum, count = self._loss(batch)
            (loss_sum / count.clamp(min=1) / self.num_micro).backward()
            total += float(loss_sum.detach())
            tokens += float(count)
        loss = total / max(tokens, 1.0)
        params = [q for q in self.model.parameters() if q.grad is not None]
        if self.args.clip_grad > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.args.clip_grad))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in params])))
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if not skipped:
            self.optimizer.step()
            self.scheduler.step(increment=self.gbs)
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm, skipped

    def evaluate(self, dataset, label: str) -> float | None:
        """`evaluate_and_print_results`: --eval-iters global batches, token-averaged loss."""
        if dataset is None or self.args.eval_iters == 0:
            return None
        self.model.eval()
        total, tokens = 0.0, 0.0
        start = self.progress.consumed_valid_samples if dataset is self.valid_ds else 0
        with self.torch.no_grad():
            for batch in self._micro_batches(dataset, start, self.args.eval_iters * self.num_micro):
                loss_sum, count = self._loss(batch)
                total += float(loss_sum)
                tokens += float(count)
        self.model.train()
        if dataset is self.valid_ds:
            self.progress.consumed_valid_samples += self.args.eval_iters * self.gbs
        loss = total / max(tokens, 1.0)
        rule, line, _ = mlog.format_validation_block(label, [(mlog.LM_LOSS, loss)])
        self.emit(rule, False)
        self.emit(line, True)
        self.emit(rule, False)
        self.result.last_validation_loss = loss
        return loss

    # - checkpoints -

    def state_dict(self) -> dict[str, Any]:
        p = self.progress
        args = {k: v for k, v in vars(self.args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}
        args.update(padded_vocab_size=self.vocab_padded, consumed_train_samples=p.consumed_train_samples,
                    consumed_valid_samples=p.consumed_valid_samples)
        return {
            "checkpoint_version": CHECKPOINT_VERSION,
            "iteration": p.iteration,
            "args": args,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "opt_param_scheduler": self.scheduler.state_dict(),
            "rng_state": [rng_state()],
            "num_floating_point_operations_so_far": p.flops_so_far,
            "trainer": "mm_assets.train.cpu_pretrain",
        }

    def save(self) -> None:
        if not self.args.save:
            return
        it = self.progress.iteration
        self.emit(mlog.format_saving_checkpoint(now(), it, self.args.save), True)
        self.result.checkpoint = save_checkpoint(self.args.save, it, self.state_dict())
        self.emit(mlog.format_saved_checkpoint(now(), it, self.args.save), False)

    def load(self) -> None:
        """Resume from --load's latest checkpoint: model, optimizer, schedule position, counters, RNG."""
        root = self.args.load
        if not root:
            return
        iteration = read_tracker(root)
        if iteration is None:
            self.emit(f"WARNING: could not find the metadata file {Path(root) / TRACKER_FILE}", False)
            self.emit("    will not load any checkpoints and will start from random", False)
            return
        self.emit(f" loading checkpoint from {root} at iteration {iteration}", False)
        state = load_checkpoint(root, iteration)
        saved = state.get("args", {})
        mine = {**vars(self.args), "padded_vocab_size": self.vocab_padded,
                "ffn_hidden_size": self.args.ffn_hidden_size or 4 * self.args.hidden_size,
                "max_position_embeddings": self.args.max_position_embeddings or self.args.seq_length}
        saved = {**saved, "ffn_hidden_size": saved.get("ffn_hidden_size") or 4 * saved.get("hidden_size", 0),
                 "max_position_embeddings": saved.get("max_position_embeddings") or saved.get("seq_length")}
        differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} in the checkpoint, {mine[k]!r} now"
                  for k in MODEL_SHAPE_ARGS if k in saved and saved.get(k) != mine[k]]
        if differ:
            raise TrainerError(f"{checkpoint_dir(root, iteration)} is a different model: " + "; ".join(differ))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        sched_state = state["opt_param_scheduler"]
        changed = [k for k in ("max_lr", "min_lr", "lr_warmup_steps", "lr_decay_steps", "lr_decay_style")
                   if sched_state.get(k) != getattr(self.scheduler, k)]
        if changed:
            self.emit(f" > LR schedule {', '.join(changed)} differ from the checkpoint: using this run's", False)
        self.scheduler.num_steps = int(sched_state["num_steps"])
        self.scheduler.step(0)
        set_rng_state(state["rng_state"][0])
        p = self.progress
        p.iteration = int(state["iteration"])
        p.consumed_train_samples = int(saved.get("consumed_train_samples", p.iteration * self.gbs))
        p.consumed_valid_samples = int(saved.get("consumed_valid_samples", 0))
        p.flops_so_far = float(state.get("num_floating_point_operations_so_far", 0.0))
        self.result.resumed_from = p.iteration
        self.result.checkpoint = checkpoint_dir(root, iteration)
        self.emit(mlog.format_loaded_checkpoint(root, iteration), False)

    # - the loop -

    def train(self) -> bool:
        """Megatron's train(): False when --exit-duration-in-mins ended it early (after a checkpoint)."""
        args, p = self.args, self.progress
        interval = Interval()
        first = True
        start = time.monotonic()
        saved_at = p.iteration if self.result.resumed_from is not None else None
        while p.iteration < self.sched.train_iters:
            t0 = time.perf_counter()
            loss, grad_norm, skipped = self.train_step()
            interval.seconds += time.perf_counter() - t0
            p.iteration += 1
            p.consumed_train_samples += self.gbs
            p.flops_so_far += self.flops
            if skipped:
                interval.skipped += 1
                interval.nan += int(not math.isfinite(loss))
            else:
                interval.advanced += 1
                interval.loss_sum += loss
                if self.result.first_loss is None:
                    self.result.first_loss = loss
                self.result.last_loss = loss
            if p.iteration % args.log_interval == 0 or first:
                self._log(interval, grad_norm, reset=not first)
                first = False
            if args.eval_interval and p.iteration % args.eval_interval == 0:
                self.evaluate(self.valid_ds, f"iteration {p.iteration}")
            if args.save_interval and p.iteration % args.save_interval == 0:
                self.save()
                saved_at = p.iteration
            if args.exit_duration_in_mins is not None and (time.monotonic() - start) / 60 > args.exit_duration_in_mins:
                if saved_at != p.iteration:
                    self.save()
                self.emit(f"[{mlog.format_time(now())}] exiting program after "
                          f"{(time.monotonic() - start) / 60} minutes", False)
                return False
        if args.save and p.iteration and saved_at != p.iteration:
            self.save()
        return True

    def _log(self, interval: Interval, grad_norm: float | None, *, reset: bool) -> None:
        iters = interval.advanced + interval.skipped
        per_iter = interval.seconds / max(iters, 1)
        avg = interval.loss_sum / max(interval.advanced, 1)
        line = mlog.format_training_line(
            moment=now(),
            iteration=self.progress.iteration,
            train_iters=self.sched.train_iters,
            consumed_samples=self.progress.consumed_train_samples,
            elapsed_ms=per_iter * 1000.0,
            tflops_per_gpu=self.flops / (per_iter * 1e12) if self.args.log_throughput and per_iter > 0 else None,
            learning_rate=self.optimizer.param_groups[0]["lr"],
            global_batch_size=self.gbs,
            losses=[(mlog.LM_LOSS, avg)],
            loss_scale=1.0,
            grad_norm=grad_norm if grad_norm is not None and math.isfinite(grad_norm) else None,
            skipped_iterations=interval.skipped,
            nan_iterations=interval.nan,
        )
        self.emit(line, True)
        if reset:
            interval.reset()


# -- entry point --------------------------------------------------------------------------------------------


def _pipes_context():
    """dagster_pipes' context when launched under Pipes (its bootstrap variable is set), else None."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return None
    return open_dagster_pipes()


def _asset_key(pipes) -> str | None:
    """The asset to report: the only one in scope, else extras["asset_key"], else one named `checkpoint`."""
    if not pipes.is_asset_step:
        return None
    keys = list(pipes.asset_keys)
    if len(keys) == 1:
        return keys[0]
    wanted = pipes.extras.get("asset_key") if pipes.extras else None
    if wanted in keys:
        return wanted
    named = [k for k in keys if k.split("/")[-1] == "checkpoint"]
    return named[0] if len(named) == 1 else None


def materialization_metadata(trainer: Trainer, wall_s: float) -> dict[str, Any]:
    p, r = trainer.progress, trainer.result
    meta: dict[str, Any] = {
        "iterations": p.iteration,
        "train_iters": trainer.sched.train_iters,
        "consumed_samples": p.consumed_train_samples,
        "consumed_tokens": p.consumed_train_samples * trainer.args.seq_length,
        "parameters": trainer.params,
        "wall_time_s": round(wall_s, 3),
    }
    if r.first_loss is not None:
        meta["first_loss"] = r.first_loss
    if r.last_loss is not None:
        meta["final_loss"] = r.last_loss
    if r.last_validation_loss is not None:
        meta["final_validation_loss"] = r.last_validation_loss
    if r.resumed_from is not None:
        meta["resumed_from_iteration"] = r.resumed_from
    if r.checkpoint is not None:
        meta["checkpoint_dir"] = {"raw_value": str(r.checkpoint), "type": "path"}
        meta["checkpoint_sha256"] = {"raw_value": checkpoint_sha256(r.checkpoint), "type": "json"}
    return meta


def run(argv: Sequence[str], pipes=None) -> int:
    wall0 = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(list(argv))  # TrainerError on an unknown or malformed flag
    problems, notices = check_args(args)
    if problems:
        raise TrainerError("; ".join(problems))
    sched = schedule_of(args)
    prefixes, weights = parse_data_path(args.data_path)
    missing = missing_prefixes(prefixes)
    if missing:
        raise TrainerError("--data-path: no shard at " + ", ".join(f"{m} (.bin/.idx)" for m in missing))
    vocab = resolve_vocab(args, prefixes)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != 1:
        raise TrainerError(f"WORLD_SIZE={world}: the CPU trainer is one process (cluster.use_torchrun: false)")

    def emit(line: str, record: bool) -> None:
        print(line, flush=True)
        if pipes is not None and record:
            pipes.log.info(line.strip())

    for notice in notices:
        emit(f"NOTICE: {notice}", False)

    import torch
    import torch.distributed as dist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core import parallel_state

    install_cpu_shims()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="cpu-pretrain-rdzv-") as rdzv:
        dist.init_process_group("gloo", init_method=f"file://{rdzv}/store", rank=0, world_size=1)
        try:
            parallel_state.initialize_model_parallel(1, 1)
            cache_root = args.data_cache_path or (Path(args.save) / "data-cache" if args.save else Path(rdzv) / "cache")
            emit("> building train, validation, and test datasets ...", False)
            data_notices: list[str] = []
            datasets = build_datasets(args, vocab, (prefixes, weights), sched, Path(cache_root), data_notices)
            for notice in data_notices:
                emit(f"NOTICE: {notice}", False)
            emit(f" > padded vocab (size: {vocab.size}) with "
                 f"{padded_vocab_size(vocab.size, args.make_vocab_size_divisible_by) - vocab.size} dummy tokens "
                 f"(new size: {padded_vocab_size(vocab.size, args.make_vocab_size_divisible_by)})", False)
            trainer = Trainer(args, sched, vocab, datasets, emit)
            emit(f" > number of parameters on (tensor, pipeline) model parallel rank (0, 0): {trainer.params}", False)
            trainer.load()
            emit(f"[before the start of training step] datetime: {now():%Y-%m-%d %H:%M:%S}", False)
            if trainer.train():  # Megatron skips the final evaluation when it exits on time
                emit(f"[after training is done] datetime: {now():%Y-%m-%d %H:%M:%S}", False)
                if trainer.valid_ds is not None:
                    trainer.evaluate(trainer.valid_ds, f"iteration {trainer.progress.iteration} on validation set")
                if trainer.test_ds is not None:
                    trainer.evaluate(trainer.test_ds, f"iteration {trainer.progress.iteration} on test set")
        finally:
            parallel_state.destroy_model_parallel()
            dist.destroy_process_group()
    if pipes is not None:
        metadata = materialization_metadata(trainer, time.monotonic() - wall0)
        if pipes.is_asset_step:
            pipes.report_asset_materialization(metadata=metadata, asset_key=_asset_key(pipes))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with contextlib.ExitStack() as stack:
            pipes = _pipes_context()
            if pipes is not None:
                stack.enter_context(pipes)  # an exception leaving this block is reported to Dagster
            return run(argv, pipes)
    except TrainerError as err:
        print(f"cpu_pretrain: error: {err}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
