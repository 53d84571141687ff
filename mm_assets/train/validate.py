"""Every check Megatron-LM would make at start-up (and a few it skips), made before anything is submitted.

A 256-GPU job that dies on an assertion after queueing for a day is the failure this module prevents. All
problems are collected and raised together as one LaunchConfigError, each naming the keys and numbers
involved; what Megatron silently changes (sequence parallel at TP=1, a rounded token budget) is returned as
warnings in the LaunchPlan instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mm_assets.train.launch.config import FROM_SHARDS, LaunchConfigError, ShardVocab, TrainingConfig, time_limit_minutes, tokens_to_samples

# Transformer Engine's FP8 needs compute capability >= 8.9 (Ada, Hopper, Blackwell).
FP8_GPUS = ("h100", "h200", "h800", "h20", "gh200", "b100", "b200", "b300", "gb200", "gb300", "l40s", "l4")
NO_FP8_GPUS = ("a100", "a800", "a40", "a30", "a10", "v100", "t4", "p100", "rtx3090")


@dataclass(frozen=True)
class ResolvedSchedule:
    """The run's length in the one unit Megatron gets: iterations or samples, never both."""

    unit: Literal["iters", "samples"]
    train: int
    lr_warmup: int
    lr_decay: int
    notes: tuple[str, ...] = ()  # how a token budget became samples


@dataclass(frozen=True)
class LaunchPlan:
    """What the config implies, derived once: the numbers Megatron will print at start-up, and warnings."""

    world_size: int
    data_parallel_size: int
    model_parallel_size: int  # TP × PP × CP
    micro_batches_per_step: int  # gradient accumulation steps per data-parallel rank (Megatron derives it)
    layers_per_pipeline_stage: int
    virtual_pipeline_size: int | None
    sequence_parallel: bool  # effective (off at TP=1)
    schedule: ResolvedSchedule
    train_iterations: int
    tokens_per_iteration: int
    train_tokens: int  # tokens the run will actually consume
    vocab: ShardVocab | None  # None until the shards' vocabulary is known
    warnings: tuple[str, ...]


def _gpu_fp8(gpu_type: str | None) -> bool | None:
    if not gpu_type:
        return None
    name = gpu_type.lower().removeprefix("nvidia-").removeprefix("nvidia ")
    if name.startswith(NO_FP8_GPUS):
        return False
    if name.startswith(FP8_GPUS):
        return True
    return None


def resolve_schedule(cfg: TrainingConfig, problems: list[str], warnings: list[str]) -> ResolvedSchedule | None:
    s, seq = cfg.schedule, cfg.model.seq_length
    given = [name for name in ("iterations", "samples", "tokens") if getattr(s, name) is not None]
    if len(given) != 1:
        problems.append(
            f"schedule: give exactly one of schedule.iterations, schedule.samples, schedule.tokens (got "
            f"{', '.join(given) or 'none'}): Megatron never mixes iteration- and sample-based settings"
        )
        return None
    kind = given[0]
    if kind == "iterations":
        it = s.iterations
        resolved = ResolvedSchedule("iters", it.train_iters, it.lr_warmup_iters, it.lr_decay_iters or it.train_iters)
    elif kind == "samples":
        sa = s.samples
        resolved = ResolvedSchedule(
            "samples", sa.train_samples, sa.lr_warmup_samples, sa.lr_decay_samples or sa.train_samples
        )
    else:
        tk, notes = s.tokens, []

        def convert(key: str, tokens: int) -> int:
            samples = tokens_to_samples(tokens, seq)
            if samples * seq != tokens:
                notes.append(
                    f"schedule.tokens.{key}={tokens} is not a multiple of model.seq_length={seq}: rounded to "
                    f"{samples} samples ({samples * seq} tokens, {samples * seq - tokens:+d})"
                )
            return samples

        train = convert("train_tokens", tk.train_tokens)
        warmup = convert("lr_warmup_tokens", tk.lr_warmup_tokens)
        decay = convert("lr_decay_tokens", tk.lr_decay_tokens) if tk.lr_decay_tokens is not None else train
        resolved = ResolvedSchedule("samples", train, warmup, decay, tuple(notes))
        warnings.extend(notes)
        if train == 0:
            problems.append(f"schedule.tokens.train_tokens={tk.train_tokens} is under half a sequence ({seq} tokens)")
        if tk.lr_decay_tokens is not None and decay == 0:
            problems.append(
                f"schedule.tokens.lr_decay_tokens={tk.lr_decay_tokens} is under half a sequence ({seq} tokens)"
            )
    suffix = {"iterations": "iters", "samples": "samples", "tokens": "tokens"}[kind]
    warmup_key, decay_key, train_key = (f"schedule.{kind}.{n}_{suffix}" for n in ("lr_warmup", "lr_decay", "train"))
    if resolved.lr_decay > 0 and resolved.lr_warmup >= resolved.lr_decay:
        problems.append(
            f"{warmup_key} ({resolved.lr_warmup} {resolved.unit}) must be smaller than {decay_key} "
            f"({resolved.lr_decay} {resolved.unit}; the whole run when unset): Megatron asserts warmup < decay"
        )
    if resolved.lr_decay > resolved.train:
        warnings.append(
            f"{decay_key} ({resolved.lr_decay}) is longer than {train_key} ({resolved.train}): "
            f"the learning rate will not reach optimizer.min_lr={cfg.optimizer.min_lr}"
        )
    return resolved


def _resolve_vocab(cfg: TrainingConfig, vocab: ShardVocab | None, problems: list[str]) -> ShardVocab | None:
    m, d = cfg.model, cfg.data
    if vocab is not None:
        if m.vocab_size != FROM_SHARDS and m.vocab_size < vocab.vocab_size:
            problems.append(
                f"model.vocab_size={m.vocab_size} is smaller than the shards' vocabulary ({vocab.vocab_size}): "
                "token ids would index past the embedding"
            )
        for key, value, shard_value in (("eod_id", d.eod_id, vocab.eod_id), ("pad_id", d.pad_id, vocab.pad_id)):
            if value != FROM_SHARDS and value != shard_value:
                problems.append(f"data.{key}={value} differs from the shards' {key} ({shard_value}); use from_shards")
    def pick(value: int | str, attr: str) -> int | None:
        return value if value != FROM_SHARDS else (getattr(vocab, attr) if vocab else None)

    size, eod, pad = pick(m.vocab_size, "vocab_size"), pick(d.eod_id, "eod_id"), pick(d.pad_id, "pad_id")
    if size is not None:
        for key, value in (("data.eod_id", eod), ("data.pad_id", pad)):
            if value is not None and value >= size:
                problems.append(f"{key}={value} is outside the vocabulary (model.vocab_size={size})")
    if eod is not None and eod == pad:
        problems.append(f"data.eod_id and data.pad_id are both {eod}: GPTDataset needs a pad id distinct from <eod>")
    if None in (size, eod, pad):
        return None
    return ShardVocab(size, eod, pad)


def validate_launch(cfg: TrainingConfig, *, vocab: ShardVocab | None = None) -> LaunchPlan:
    """The LaunchPlan of a launchable config, or one LaunchConfigError listing every problem.

    `vocab` (the shards' layout) resolves `from_shards` values and is cross-checked against stated ones;
    without it the plan's vocab is None and rendering the arguments will ask for it.
    """
    problems: list[str] = []
    warnings: list[str] = []
    m, par, opt, s, prec, c = cfg.model, cfg.parallelism, cfg.optimizer, cfg.schedule, cfg.precision, cfg.cluster
    tp, pp, cp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size, par.context_parallel_size

    # World size and data parallelism.
    world, mp = c.world_size, tp * pp * cp
    procs = (
        f"cluster.gpus_per_node={c.gpus_per_node}"
        if c.gpus_per_node
        else "1 process per CPU node (cluster.gpus_per_node=0)"
    )
    dp = world // mp if world % mp == 0 else 0
    if not dp:
        problems.append(
            f"world size = cluster.nodes={c.nodes} × {procs} = {world} is not divisible by "
            f"parallelism.tensor_model_parallel_size × pipeline_model_parallel_size × context_parallel_size = "
            f"{tp} × {pp} × {cp} = {mp}"
        )
    micro_batches = 0
    if dp:
        per_step = s.micro_batch_size * dp
        if s.global_batch_size % per_step:
            problems.append(
                f"schedule.global_batch_size={s.global_batch_size} is not divisible by schedule.micro_batch_size × "
                f"data-parallel size = {s.micro_batch_size} × {dp} = {per_step} "
                f"(data-parallel size = world size {world} / (TP × PP × CP) {mp})"
            )
        else:
            micro_batches = s.global_batch_size // per_step

    # Attention and MLP shapes against tensor parallelism.
    if m.num_attention_heads % tp:
        problems.append(
            f"model.num_attention_heads={m.num_attention_heads} is not divisible by "
            f"parallelism.tensor_model_parallel_size={tp}"
        )
    if m.hidden_size % m.num_attention_heads:
        problems.append(
            f"model.hidden_size={m.hidden_size} is not divisible by model.num_attention_heads={m.num_attention_heads}"
        )
    if m.num_query_groups is not None:
        if m.num_attention_heads % m.num_query_groups:
            problems.append(
                f"model.num_attention_heads={m.num_attention_heads} is not divisible by "
                f"model.num_query_groups={m.num_query_groups}"
            )
        if m.num_query_groups % tp:
            problems.append(
                f"model.num_query_groups={m.num_query_groups} is not divisible by "
                f"parallelism.tensor_model_parallel_size={tp}"
            )
    if m.ffn_hidden_size % tp:
        problems.append(
            f"model.ffn_hidden_size={m.ffn_hidden_size} is not divisible by parallelism.tensor_model_parallel_size={tp}"
        )
    if not m.hidden_size <= m.ffn_hidden_size <= 8 * m.hidden_size:
        warnings.append(
            f"model.ffn_hidden_size={m.ffn_hidden_size} is outside [hidden_size, 8 × hidden_size] = "
            f"[{m.hidden_size}, {8 * m.hidden_size}] (SwiGLU usually takes about 8/3 × hidden_size)"
        )

    # Layers against pipeline stages.
    per_stage, vpp = 0, None
    if m.num_layers % pp:
        problems.append(
            f"model.num_layers={m.num_layers} is not divisible by parallelism.pipeline_model_parallel_size={pp}"
        )
    else:
        per_stage = m.num_layers // pp
    vl = par.num_layers_per_virtual_pipeline_stage
    if vl is not None:
        if pp < 2:
            problems.append(
                f"parallelism.num_layers_per_virtual_pipeline_stage={vl} needs "
                f"parallelism.pipeline_model_parallel_size > 1 (got {pp})"
            )
        elif per_stage and per_stage % vl:
            problems.append(
                f"layers per pipeline stage (model.num_layers / pipeline_model_parallel_size = {m.num_layers} / {pp} "
                f"= {per_stage}) is not divisible by parallelism.num_layers_per_virtual_pipeline_stage={vl}"
            )
        elif per_stage:
            vpp = per_stage // vl
            if vpp == 1:
                warnings.append(
                    f"parallelism.num_layers_per_virtual_pipeline_stage={vl} equals the layers per stage: "
                    "Megatron turns the interleaved schedule off"
                )
                vpp = None

    # Sequence length.
    if m.seq_length > m.max_position_embeddings:
        problems.append(
            f"model.seq_length={m.seq_length} is larger than model.max_position_embeddings={m.max_position_embeddings}"
        )
    if cp > 1 and m.seq_length % (2 * cp):
        problems.append(
            f"model.seq_length={m.seq_length} is not divisible by 2 × parallelism.context_parallel_size = {2 * cp}"
        )
    sp = par.sequence_parallel and tp > 1
    if par.sequence_parallel and tp == 1:
        warnings.append(
            "parallelism.sequence_parallel is true but parallelism.tensor_model_parallel_size=1: Megatron turns it "
            "off silently; --sequence-parallel is not emitted"
        )
    if sp and m.seq_length % tp:
        problems.append(
            f"model.seq_length={m.seq_length} is not divisible by parallelism.tensor_model_parallel_size={tp} "
            "(sequence parallel splits the sequence across the TP group)"
        )

    # Activation recomputation.
    rc = prec.recompute
    if rc.granularity == "full":
        if rc.method is None:
            problems.append("precision.recompute.granularity=full needs precision.recompute.method (uniform or block)")
        if rc.num_layers is None:
            problems.append("precision.recompute.granularity=full needs precision.recompute.num_layers")
        elif per_stage and rc.num_layers > per_stage:
            problems.append(
                f"precision.recompute.num_layers={rc.num_layers} is more than the layers per pipeline stage "
                f"({m.num_layers} / {pp} = {per_stage})"
            )
    else:
        for key in ("method", "num_layers"):
            if getattr(rc, key) is not None:
                problems.append(
                    f"precision.recompute.{key}={getattr(rc, key)} is only valid with granularity=full "
                    f"(got granularity={rc.granularity})"
                )

    # Precision.
    if prec.fp8 != "none":
        if not prec.bf16:
            problems.append(f"precision.fp8={prec.fp8} requires precision.bf16=true (FP8 GEMMs inside a bf16 model)")
        if c.gpus_per_node == 0:
            problems.append(f"precision.fp8={prec.fp8} needs GPUs (cluster.gpus_per_node=0)")
        if m.transformer_impl != "transformer_engine":
            problems.append(
                f"precision.fp8={prec.fp8} needs model.transformer_impl=transformer_engine (got {m.transformer_impl})"
            )
        capable = _gpu_fp8(c.gpu_type)
        if capable is False:
            problems.append(
                f"precision.fp8={prec.fp8} needs Hopper-class GPUs (compute capability >= 8.9); "
                f"cluster.gpu_type={c.gpu_type} has none"
            )
        elif capable is None and c.gpus_per_node:
            warnings.append(
                f"precision.fp8={prec.fp8} needs Hopper-class GPUs (compute capability >= 8.9); "
                f"cluster.gpu_type={c.gpu_type} is not one we know, so this was not checked"
            )
    if prec.attention_backend == "local":
        problems.append(
            "precision.attention_backend=local: Megatron accepts it only with `--spec local`, which pretrain_gpt.py "
            "cannot load; use model.transformer_impl=local with attention_backend auto or unfused"
        )

    # Optimizer.
    if opt.min_lr > opt.lr:
        problems.append(f"optimizer.min_lr={opt.min_lr} is larger than optimizer.lr={opt.lr}")

    # Schedule.
    schedule = resolve_schedule(cfg, problems, warnings)
    iterations = 0
    if schedule is not None:
        if schedule.unit == "iters":
            iterations = schedule.train
        else:
            iterations = schedule.train // s.global_batch_size
            if schedule.train % s.global_batch_size:
                warnings.append(
                    f"{schedule.train} train samples are not a multiple of schedule.global_batch_size="
                    f"{s.global_batch_size}: Megatron runs {iterations} iterations "
                    f"({iterations * s.global_batch_size} samples)"
                )
            if iterations == 0:
                problems.append(
                    f"{schedule.train} train samples are fewer than one global batch "
                    f"(schedule.global_batch_size={s.global_batch_size})"
                )

    # Cluster and entrypoint.
    if c.entrypoint is None and c.gpus_per_node == 0:
        problems.append(
            "cluster.gpus_per_node=0 (CPU) but cluster.entrypoint is unset: Megatron-LM's pretrain_gpt.py needs CUDA "
            "GPUs; set cluster.entrypoint to the CPU trainer's command"
        )
    if c.entrypoint is None and not c.use_torchrun:
        problems.append("cluster.use_torchrun=false needs cluster.entrypoint: pretrain_gpt.py is started by torchrun")
    if s.exit_duration_in_mins is not None:
        limit = time_limit_minutes(c.time_limit)
        if s.exit_duration_in_mins >= limit:
            problems.append(
                f"schedule.exit_duration_in_mins={s.exit_duration_in_mins} is not below cluster.time_limit="
                f"{c.time_limit} ({limit:g} minutes): the job would be killed before Megatron saves and exits"
            )

    resolved_vocab = _resolve_vocab(cfg, vocab, problems)

    if problems:
        raise LaunchConfigError(problems)
    return LaunchPlan(
        world_size=world,
        data_parallel_size=dp,
        model_parallel_size=mp,
        micro_batches_per_step=micro_batches,
        layers_per_pipeline_stage=per_stage,
        virtual_pipeline_size=vpp,
        sequence_parallel=sp,
        schedule=schedule,
        train_iterations=iterations,
        tokens_per_iteration=s.global_batch_size * m.seq_length,
        train_tokens=iterations * s.global_batch_size * m.seq_length,
        vocab=resolved_vocab,
        warnings=tuple(warnings),
    )
