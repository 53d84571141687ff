"""Megatron-LM's command line as the CPU trainer takes it: the parser, refused and ignored values, the schedule."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.train.cpu import TrainerError

PROG = "python -m mm_assets.train.cpu"

DESCRIPTION = "The CPU trainer: `pretrain_gpt.py`'s arguments, log lines and checkpoint layout, for CI and the demo."


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # raise instead of exiting, so that Pipes reports the reason too
        raise TrainerError(message)


def build_parser() -> argparse.ArgumentParser:
    """Megatron-LM's flag names and defaults (arguments.py), restricted to what a CPU run uses."""
    p = _Parser(prog=PROG, description=DESCRIPTION, allow_abbrev=False)
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
    g.add_argument("--vocab-size", type=int, default=None, help=f"default: the shards' {ArtifactLayout.SHARD_VOCAB}")
    g.add_argument("--null-tokenizer-eod-id", type=int, default=None)
    g.add_argument("--null-tokenizer-pad-id", type=int, default=None)
    g.add_argument("--data-cache-path", default=None, help=f"default: <--save>/{ArtifactLayout.RUN_DATA_CACHE} or a temp folder")
    g.add_argument("--object-storage-cache-path", default=None,
                   help="where the .idx of s3:// prefixes are cached (megatron-core's ObjectStorageConfig)")
    g.add_argument("--no-mmap-bin-files", action="store_false", dest="mmap_bin_files",
                   help="read .bin files without mmap (required for s3:// prefixes)")

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
