"""The `pretrain_gpt.py` argument list (argv items, never a shell string) derived from a training config.

Only flags that exist in current Megatron-LM are emitted; the reference's (§B.4) are corrected: no
`--train-tokens` / `--lr-decay-tokens` (a token budget becomes `--train-samples` / `--lr-decay-samples`),
`--clip-grad` not `--grad-clip-norm`, `--fp8-format hybrid` not `--fp8-hybrid`, no `--data-impl`,
`--attention-backend flash` not `--use-flash-attn`. Also left out on purpose: `--use-mcore-models` (ignored,
mcore is the default), `--exit-on-missing-checkpoint` (with `--load` = `--save` it would stop the first run,
whose checkpoint folder is still empty) and `--vocab-file` / `--merge-file` (our shards are token ids).
"""

from __future__ import annotations

from mm_assets.storage.s3_access import is_s3_url
from mm_assets.train.launch.blend import Blend
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.experiment import ExperimentConfig
from mm_assets.train.launch.rules import LaunchPlan
from mm_assets.train.launch.run_folders import RunFolders

# Every flag this module may emit, each checked against Megatron-LM's own parser
# (megatron/training/arguments.py `add_megatron_arguments`, NVIDIA/Megatron-LM main at d98e8a64, 2026-08-22).
# A test keeps the renderer inside this set: add a flag here only after checking it in that parser.
MEGATRON_FLAGS = frozenset(
    """
    --tensor-model-parallel-size --pipeline-model-parallel-size --context-parallel-size --sequence-parallel
    --num-layers-per-virtual-pipeline-stage --use-distributed-optimizer
    --num-layers --hidden-size --ffn-hidden-size --num-attention-heads --group-query-attention
    --num-query-groups --seq-length --max-position-embeddings --normalization --swiglu
    --position-embedding-type --rotary-base --untie-embeddings-and-output-weights --disable-bias-linear
    --attention-dropout --hidden-dropout --init-method-std --transformer-impl
    --micro-batch-size --global-batch-size --train-iters --train-samples
    --lr-warmup-iters --lr-decay-iters --lr-warmup-samples --lr-decay-samples --lr-decay-style
    --optimizer --lr --min-lr --adam-beta1 --adam-beta2 --adam-eps --weight-decay --clip-grad --seed
    --bf16 --fp8-format --attention-backend --recompute-granularity --recompute-method --recompute-num-layers
    --data-path --split --tokenizer-type --vocab-size --null-tokenizer-eod-id --null-tokenizer-pad-id
    --data-cache-path --object-storage-cache-path --no-mmap-bin-files --save --load --save-interval
    --exit-duration-in-mins
    --log-interval --log-throughput --eval-interval --eval-iters --tensorboard-dir --distributed-backend
    """.split()
)

# The reference's flags that must never come back (DESIGN.md §11).
REFERENCE_DEFECT_FLAGS = frozenset(
    ["--train-tokens", "--lr-decay-tokens", "--grad-clip-norm", "--fp8-hybrid", "--data-impl", "--use-flash-attn"]
)


def _num(value: int | float) -> str:
    """Integers as integers; floats as the shortest text that reads back the same (1e-05, 0.0001)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(float(value))


def megatron_arg_groups(exp: ExperimentConfig, plan: LaunchPlan, blend: Blend, run: RunFolders) -> list[tuple[str, ...]]:
    """The arguments as (flag, values...) groups, in a stable order (one group per line in the sbatch script)."""
    cfg = exp.training
    m, par, opt, s = cfg.model, cfg.parallelism, cfg.optimizer, cfg.schedule
    prec, d, c = cfg.precision, cfg.data, cfg.cluster
    if plan.vocab is None:
        raise LaunchConfigError(
            "model.vocab_size / data.eod_id / data.pad_id are from_shards: pass the shards' vocab layout "
            "(ShardVocab.from_layout) to render the launch"
        )
    g: list[tuple[str, ...]] = []
    add = g.append

    # Parallelism.
    add(("--tensor-model-parallel-size", _num(par.tensor_model_parallel_size)))
    add(("--pipeline-model-parallel-size", _num(par.pipeline_model_parallel_size)))
    add(("--context-parallel-size", _num(par.context_parallel_size)))
    if plan.sequence_parallel:
        add(("--sequence-parallel",))
    if par.num_layers_per_virtual_pipeline_stage is not None and plan.virtual_pipeline_size is not None:
        add(("--num-layers-per-virtual-pipeline-stage", _num(par.num_layers_per_virtual_pipeline_stage)))
    if par.use_distributed_optimizer:
        add(("--use-distributed-optimizer",))

    # Model.
    add(("--num-layers", _num(m.num_layers)))
    add(("--hidden-size", _num(m.hidden_size)))
    add(("--ffn-hidden-size", _num(m.ffn_hidden_size)))
    add(("--num-attention-heads", _num(m.num_attention_heads)))
    if m.num_query_groups is not None:
        add(("--group-query-attention",))
        add(("--num-query-groups", _num(m.num_query_groups)))
    add(("--seq-length", _num(m.seq_length)))
    add(("--max-position-embeddings", _num(m.max_position_embeddings)))
    add(("--normalization", m.normalization))
    if m.swiglu:
        add(("--swiglu",))
    add(("--position-embedding-type", m.position_embedding_type))
    if m.position_embedding_type == "rope":
        add(("--rotary-base", _num(m.rotary_base)))
    if m.untie_embeddings_and_output_weights:
        add(("--untie-embeddings-and-output-weights",))
    if m.disable_bias_linear:
        add(("--disable-bias-linear",))
    add(("--attention-dropout", _num(m.attention_dropout)))
    add(("--hidden-dropout", _num(m.hidden_dropout)))
    add(("--init-method-std", _num(m.init_method_std)))
    add(("--transformer-impl", m.transformer_impl))

    # Batch and run length: iterations or samples, never both (a token budget arrives here as samples).
    sched = plan.schedule
    add(("--micro-batch-size", _num(s.micro_batch_size)))
    add(("--global-batch-size", _num(s.global_batch_size)))
    unit = "iters" if sched.unit == "iters" else "samples"
    add((f"--train-{unit}", _num(sched.train)))
    add((f"--lr-warmup-{unit}", _num(sched.lr_warmup)))
    add((f"--lr-decay-{unit}", _num(sched.lr_decay)))
    add(("--lr-decay-style", s.lr_decay_style))

    # Optimizer.
    add(("--optimizer", opt.type))
    add(("--lr", _num(opt.lr)))
    add(("--min-lr", _num(opt.min_lr)))
    add(("--adam-beta1", _num(opt.adam_beta1)))
    add(("--adam-beta2", _num(opt.adam_beta2)))
    add(("--adam-eps", _num(opt.adam_eps)))
    add(("--weight-decay", _num(opt.weight_decay)))
    add(("--clip-grad", _num(opt.clip_grad)))
    add(("--seed", _num(s.seed)))

    # Precision and memory.
    if prec.bf16:
        add(("--bf16",))
    if prec.fp8 != "none":
        add(("--fp8-format", prec.fp8))
    add(("--attention-backend", prec.attention_backend))
    rc = prec.recompute
    if rc.granularity != "none":
        add(("--recompute-granularity", rc.granularity))
        if rc.granularity == "full":
            add(("--recompute-method", rc.method))
            add(("--recompute-num-layers", _num(rc.num_layers)))

    # Data: pre-tokenised shards, so NullTokenizer with the layout's size and special ids.
    add(("--data-path", *blend.data_path))
    add(("--split", d.split))
    add(("--tokenizer-type", d.tokenizer_type))
    add(("--vocab-size", _num(plan.vocab.vocab_size)))
    add(("--null-tokenizer-eod-id", _num(plan.vocab.eod_id)))
    add(("--null-tokenizer-pad-id", _num(plan.vocab.pad_id)))
    add(("--data-cache-path", str(run.data_cache)))
    if any(is_s3_url(item.prefix) for item in blend.items):
        # megatron-core reads s3:// prefixes itself: the .idx into this cache, the .bin by ranged GETs (no mmap).
        add(("--object-storage-cache-path", str(run.object_storage_cache)))
        add(("--no-mmap-bin-files",))

    # Checkpoints: one folder for --save and --load, so a resubmitted job resumes.
    add(("--save", str(run.checkpoints)))
    add(("--load", str(run.checkpoints)))
    add(("--save-interval", _num(s.save_interval)))
    if s.exit_duration_in_mins is not None:
        add(("--exit-duration-in-mins", _num(s.exit_duration_in_mins)))

    # Logging and evaluation.
    add(("--log-interval", _num(s.log_interval)))
    add(("--log-throughput",))
    add(("--eval-interval", _num(s.eval_interval)))
    add(("--eval-iters", _num(s.eval_iters)))
    if s.tensorboard:
        add(("--tensorboard-dir", str(run.tensorboard)))

    add(("--distributed-backend", "nccl" if c.gpus_per_node else "gloo"))

    unknown = sorted({grp[0] for grp in g} - MEGATRON_FLAGS)
    if unknown:  # a programming error, not a config one: the renderer left the verified set
        raise AssertionError(f"flags not verified against Megatron-LM: {unknown}")
    return g


def args_text(argv: list[str]) -> str:
    """One argument per line (the golden-file and run-record format). Arguments never hold a newline."""
    if any("\n" in a for a in argv):
        raise LaunchConfigError(f"an argument contains a newline: {[a for a in argv if chr(10) in a]}")
    return "".join(f"{a}\n" for a in argv)
