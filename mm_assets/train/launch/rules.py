"""Every check Megatron-LM would make at start-up (and a few it skips), made before anything is submitted.

A 256-GPU job that dies on an assertion after queueing for a day is the failure this module prevents. Each
rule is a small function of the training config returning what it found: problems (plain strings, each naming
the keys and numbers involved) and warnings (`Warn`: what Megatron silently changes, such as sequence parallel
at TP=1 or a rounded token budget). `validate_launch` runs every rule and raises all problems together as one
LaunchConfigError, or returns the LaunchPlan with the warnings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mm_assets.shards.vocab import ShardVocab
from mm_assets.train.launch.config import (
    FROM_SHARDS,
    LaunchConfigError,
    TrainingConfig,
    time_limit_minutes,
    tokens_to_samples,
)

# Transformer Engine's FP8 needs compute capability >= 8.9 (Ada, Hopper, Blackwell).
FP8_GPUS = ("h100", "h200", "h800", "h20", "gh200", "b100", "b200", "b300", "gb200", "gb300", "l40s", "l4")
NO_FP8_GPUS = ("a100", "a800", "a40", "a30", "a10", "v100", "t4", "p100", "rtx3090")


class Warn(str):
    """A finding that does not block the launch (every other finding is a problem)."""


Rule = Callable[[TrainingConfig], list[str]]


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


# -- what the config implies ---------------------------------------------------------------------------------


def model_parallel_size(cfg: TrainingConfig) -> int:
    par = cfg.parallelism
    return par.tensor_model_parallel_size * par.pipeline_model_parallel_size * par.context_parallel_size


def data_parallel_size(cfg: TrainingConfig) -> int:
    """World size / (TP × PP × CP); 0 when it does not divide."""
    world, mp = cfg.cluster.world_size, model_parallel_size(cfg)
    return world // mp if world % mp == 0 else 0


def micro_batches_per_step(cfg: TrainingConfig) -> int:
    """Gradient accumulation steps; 0 when the global batch does not divide."""
    dp, s = data_parallel_size(cfg), cfg.schedule
    return s.global_batch_size // (s.micro_batch_size * dp) if dp and not s.global_batch_size % (s.micro_batch_size * dp) else 0


def layers_per_stage(cfg: TrainingConfig) -> int:
    """Layers per pipeline stage; 0 when PP does not divide the layers."""
    layers, pp = cfg.model.num_layers, cfg.parallelism.pipeline_model_parallel_size
    return 0 if layers % pp else layers // pp


def virtual_pipeline_size(cfg: TrainingConfig) -> int | None:
    """Interleaved schedule's virtual stages; None when it is off (or cannot be on)."""
    vl, pp, per_stage = cfg.parallelism.num_layers_per_virtual_pipeline_stage, \
        cfg.parallelism.pipeline_model_parallel_size, layers_per_stage(cfg)
    if vl is None or pp < 2 or not per_stage or per_stage % vl or per_stage // vl == 1:
        return None
    return per_stage // vl


def sequence_parallel(cfg: TrainingConfig) -> bool:
    """Effective sequence parallelism: Megatron turns it off at TP=1."""
    return cfg.parallelism.sequence_parallel and cfg.parallelism.tensor_model_parallel_size > 1


def _gpu_fp8(gpu_type: str | None) -> bool | None:
    if not gpu_type:
        return None
    name = gpu_type.lower().removeprefix("nvidia-").removeprefix("nvidia ")
    if name.startswith(NO_FP8_GPUS):
        return False
    if name.startswith(FP8_GPUS):
        return True
    return None


def resolve_schedule(cfg: TrainingConfig) -> tuple[ResolvedSchedule | None, list[str]]:
    """The run's length in Megatron's unit, and what resolving it found (a token budget becomes samples)."""
    s, seq, found = cfg.schedule, cfg.model.seq_length, []
    given = [name for name in ("iterations", "samples", "tokens") if getattr(s, name) is not None]
    if len(given) != 1:
        return None, [
            f"schedule: give exactly one of schedule.iterations, schedule.samples, schedule.tokens (got "
            f"{', '.join(given) or 'none'}): Megatron never mixes iteration- and sample-based settings"
        ]
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
        found += [Warn(note) for note in notes]
        if train == 0:
            found.append(f"schedule.tokens.train_tokens={tk.train_tokens} is under half a sequence ({seq} tokens)")
        if tk.lr_decay_tokens is not None and decay == 0:
            found.append(f"schedule.tokens.lr_decay_tokens={tk.lr_decay_tokens} is under half a sequence ({seq} tokens)")
    suffix = {"iterations": "iters", "samples": "samples", "tokens": "tokens"}[kind]
    warmup_key, decay_key, train_key = (f"schedule.{kind}.{n}_{suffix}" for n in ("lr_warmup", "lr_decay", "train"))
    if resolved.lr_decay > 0 and resolved.lr_warmup >= resolved.lr_decay:
        found.append(
            f"{warmup_key} ({resolved.lr_warmup} {resolved.unit}) must be smaller than {decay_key} "
            f"({resolved.lr_decay} {resolved.unit}; the whole run when unset): Megatron asserts warmup < decay"
        )
    if resolved.lr_decay > resolved.train:
        found.append(Warn(
            f"{decay_key} ({resolved.lr_decay}) is longer than {train_key} ({resolved.train}): "
            f"the learning rate will not reach optimizer.min_lr={cfg.optimizer.min_lr}"
        ))
    return resolved, found


def train_iterations(cfg: TrainingConfig, schedule: ResolvedSchedule | None) -> int:
    if schedule is None:
        return 0
    return schedule.train if schedule.unit == "iters" else schedule.train // cfg.schedule.global_batch_size


# -- the rules -----------------------------------------------------------------------------------------------


def world_size_divides(cfg: TrainingConfig) -> list[str]:
    c, par = cfg.cluster, cfg.parallelism
    if data_parallel_size(cfg):
        return []
    procs = f"cluster.gpus_per_node={c.gpus_per_node}" if c.gpus_per_node else \
        "1 process per CPU node (cluster.gpus_per_node=0)"
    return [
        f"world size = cluster.nodes={c.nodes} × {procs} = {c.world_size} is not divisible by "
        f"parallelism.tensor_model_parallel_size × pipeline_model_parallel_size × context_parallel_size = "
        f"{par.tensor_model_parallel_size} × {par.pipeline_model_parallel_size} × {par.context_parallel_size} = "
        f"{model_parallel_size(cfg)}"
    ]


def global_batch_divides(cfg: TrainingConfig) -> list[str]:
    dp, s = data_parallel_size(cfg), cfg.schedule
    if not dp or micro_batches_per_step(cfg):
        return []
    return [
        f"schedule.global_batch_size={s.global_batch_size} is not divisible by schedule.micro_batch_size × "
        f"data-parallel size = {s.micro_batch_size} × {dp} = {s.micro_batch_size * dp} "
        f"(data-parallel size = world size {cfg.cluster.world_size} / (TP × PP × CP) {model_parallel_size(cfg)})"
    ]


def attention_divides(cfg: TrainingConfig) -> list[str]:
    """Heads, query groups and the MLP against tensor parallelism."""
    m, tp, found = cfg.model, cfg.parallelism.tensor_model_parallel_size, []
    if m.num_attention_heads % tp:
        found.append(f"model.num_attention_heads={m.num_attention_heads} is not divisible by "
                     f"parallelism.tensor_model_parallel_size={tp}")
    if m.hidden_size % m.num_attention_heads:
        found.append(f"model.hidden_size={m.hidden_size} is not divisible by model.num_attention_heads="
                     f"{m.num_attention_heads}")
    if m.num_query_groups is not None:
        if m.num_attention_heads % m.num_query_groups:
            found.append(f"model.num_attention_heads={m.num_attention_heads} is not divisible by "
                         f"model.num_query_groups={m.num_query_groups}")
        if m.num_query_groups % tp:
            found.append(f"model.num_query_groups={m.num_query_groups} is not divisible by "
                         f"parallelism.tensor_model_parallel_size={tp}")
    if m.ffn_hidden_size % tp:
        found.append(f"model.ffn_hidden_size={m.ffn_hidden_size} is not divisible by "
                     f"parallelism.tensor_model_parallel_size={tp}")
    if not m.hidden_size <= m.ffn_hidden_size <= 8 * m.hidden_size:
        found.append(Warn(
            f"model.ffn_hidden_size={m.ffn_hidden_size} is outside [hidden_size, 8 × hidden_size] = "
            f"[{m.hidden_size}, {8 * m.hidden_size}] (SwiGLU usually takes about 8/3 × hidden_size)"
        ))
    return found


def layers_divide(cfg: TrainingConfig) -> list[str]:
    """Layers against pipeline stages, and the interleaved schedule's virtual stages."""
    m, par, found = cfg.model, cfg.parallelism, []
    pp, vl, per_stage = par.pipeline_model_parallel_size, par.num_layers_per_virtual_pipeline_stage, layers_per_stage(cfg)
    if not per_stage:
        found.append(f"model.num_layers={m.num_layers} is not divisible by parallelism.pipeline_model_parallel_size={pp}")
    if vl is None:
        return found
    if pp < 2:
        found.append(f"parallelism.num_layers_per_virtual_pipeline_stage={vl} needs "
                     f"parallelism.pipeline_model_parallel_size > 1 (got {pp})")
    elif per_stage and per_stage % vl:
        found.append(f"layers per pipeline stage (model.num_layers / pipeline_model_parallel_size = {m.num_layers} / "
                     f"{pp} = {per_stage}) is not divisible by parallelism.num_layers_per_virtual_pipeline_stage={vl}")
    elif per_stage and per_stage // vl == 1:
        found.append(Warn(f"parallelism.num_layers_per_virtual_pipeline_stage={vl} equals the layers per stage: "
                          "Megatron turns the interleaved schedule off"))
    return found


def sequence_fits(cfg: TrainingConfig) -> list[str]:
    """Sequence length against positions, context parallelism and sequence parallelism."""
    m, par, found = cfg.model, cfg.parallelism, []
    tp, cp = par.tensor_model_parallel_size, par.context_parallel_size
    if m.seq_length > m.max_position_embeddings:
        found.append(f"model.seq_length={m.seq_length} is larger than model.max_position_embeddings="
                     f"{m.max_position_embeddings}")
    if cp > 1 and m.seq_length % (2 * cp):
        found.append(f"model.seq_length={m.seq_length} is not divisible by 2 × parallelism.context_parallel_size = "
                     f"{2 * cp}")
    if par.sequence_parallel and tp == 1:
        found.append(Warn("parallelism.sequence_parallel is true but parallelism.tensor_model_parallel_size=1: "
                          "Megatron turns it off silently; --sequence-parallel is not emitted"))
    if sequence_parallel(cfg) and m.seq_length % tp:
        found.append(f"model.seq_length={m.seq_length} is not divisible by parallelism.tensor_model_parallel_size={tp} "
                     "(sequence parallel splits the sequence across the TP group)")
    return found


def recompute_complete(cfg: TrainingConfig) -> list[str]:
    """`full` needs a method and a layer count (at most the layers per stage); the others take neither."""
    rc, per_stage, found = cfg.precision.recompute, layers_per_stage(cfg), []
    if rc.granularity != "full":
        return [f"precision.recompute.{key}={getattr(rc, key)} is only valid with granularity=full "
                f"(got granularity={rc.granularity})" for key in ("method", "num_layers") if getattr(rc, key) is not None]
    if rc.method is None:
        found.append("precision.recompute.granularity=full needs precision.recompute.method (uniform or block)")
    if rc.num_layers is None:
        found.append("precision.recompute.granularity=full needs precision.recompute.num_layers")
    elif per_stage and rc.num_layers > per_stage:
        found.append(f"precision.recompute.num_layers={rc.num_layers} is more than the layers per pipeline stage "
                     f"({cfg.model.num_layers} / {cfg.parallelism.pipeline_model_parallel_size} = {per_stage})")
    return found


def fp8_runs(cfg: TrainingConfig) -> list[str]:
    prec, c, found = cfg.precision, cfg.cluster, []
    if prec.fp8 == "none":
        return found
    if not prec.bf16:
        found.append(f"precision.fp8={prec.fp8} requires precision.bf16=true (FP8 GEMMs inside a bf16 model)")
    if c.gpus_per_node == 0:
        found.append(f"precision.fp8={prec.fp8} needs GPUs (cluster.gpus_per_node=0)")
    if cfg.model.transformer_impl != "transformer_engine":
        found.append(f"precision.fp8={prec.fp8} needs model.transformer_impl=transformer_engine "
                     f"(got {cfg.model.transformer_impl})")
    capable = _gpu_fp8(c.gpu_type)
    needs = f"precision.fp8={prec.fp8} needs Hopper-class GPUs (compute capability >= 8.9); cluster.gpu_type={c.gpu_type}"
    if capable is False:
        found.append(f"{needs} has none")
    elif capable is None and c.gpus_per_node:
        found.append(Warn(f"{needs} is not one we know, so this was not checked"))
    return found


def attention_backend_loads(cfg: TrainingConfig) -> list[str]:
    if cfg.precision.attention_backend != "local":
        return []
    return ["precision.attention_backend=local: Megatron accepts it only with `--spec local`, which pretrain_gpt.py "
            "cannot load; use model.transformer_impl=local with attention_backend auto or unfused"]


def learning_rates_order(cfg: TrainingConfig) -> list[str]:
    opt = cfg.optimizer
    return [f"optimizer.min_lr={opt.min_lr} is larger than optimizer.lr={opt.lr}"] if opt.min_lr > opt.lr else []


def schedule_resolves(cfg: TrainingConfig) -> list[str]:
    return resolve_schedule(cfg)[1]


def iterations_run(cfg: TrainingConfig) -> list[str]:
    """A sample budget becomes whole global batches: at least one, with the remainder reported."""
    schedule, s = resolve_schedule(cfg)[0], cfg.schedule
    if schedule is None or schedule.unit == "iters":
        return []
    iterations, found = train_iterations(cfg, schedule), []
    if schedule.train % s.global_batch_size:
        found.append(Warn(f"{schedule.train} train samples are not a multiple of schedule.global_batch_size="
                          f"{s.global_batch_size}: Megatron runs {iterations} iterations "
                          f"({iterations * s.global_batch_size} samples)"))
    if iterations == 0:
        found.append(f"{schedule.train} train samples are fewer than one global batch "
                     f"(schedule.global_batch_size={s.global_batch_size})")
    return found


def entrypoint_starts(cfg: TrainingConfig) -> list[str]:
    c, found = cfg.cluster, []
    if c.entrypoint is None and c.gpus_per_node == 0:
        found.append("cluster.gpus_per_node=0 (CPU) but cluster.entrypoint is unset: Megatron-LM's pretrain_gpt.py "
                     "needs CUDA GPUs; set cluster.entrypoint to the CPU trainer's command")
    if c.entrypoint is None and not c.use_torchrun:
        found.append("cluster.use_torchrun=false needs cluster.entrypoint: pretrain_gpt.py is started by torchrun")
    return found


def exit_before_time_limit(cfg: TrainingConfig) -> list[str]:
    minutes, limit = cfg.schedule.exit_duration_in_mins, cfg.cluster.time_limit
    if minutes is None or minutes < time_limit_minutes(limit):
        return []
    return [f"schedule.exit_duration_in_mins={minutes} is not below cluster.time_limit={limit} "
            f"({time_limit_minutes(limit):g} minutes): the job would be killed before Megatron saves and exits"]


RULES: list[Rule] = [
    world_size_divides, global_batch_divides, attention_divides, layers_divide, sequence_fits, recompute_complete,
    fp8_runs, attention_backend_loads, learning_rates_order, schedule_resolves, iterations_run, entrypoint_starts,
    exit_before_time_limit,
]


# -- the vocabulary ------------------------------------------------------------------------------------------


def vocabulary_agrees(cfg: TrainingConfig, vocab: ShardVocab | None) -> list[str]:
    """Stated sizes and ids against the shards' vocabulary, and the ids against the size."""
    m, d, found = cfg.model, cfg.data, []
    if vocab is not None:
        if m.vocab_size != FROM_SHARDS and m.vocab_size < vocab.vocab_size:
            found.append(f"model.vocab_size={m.vocab_size} is smaller than the shards' vocabulary "
                         f"({vocab.vocab_size}): token ids would index past the embedding")
        for key, value, shard_value in (("eod_id", d.eod_id, vocab.eod_id), ("pad_id", d.pad_id, vocab.pad_id)):
            if value != FROM_SHARDS and value != shard_value:
                found.append(f"data.{key}={value} differs from the shards' {key} ({shard_value}); use from_shards")
    size, eod, pad = _stated_or_shards(cfg, vocab)
    if size is not None:
        found += [f"{key}={value} is outside the vocabulary (model.vocab_size={size})"
                  for key, value in (("data.eod_id", eod), ("data.pad_id", pad)) if value is not None and value >= size]
    if eod is not None and eod == pad:
        found.append(f"data.eod_id and data.pad_id are both {eod}: GPTDataset needs a pad id distinct from <eod>")
    return found


def _stated_or_shards(cfg: TrainingConfig, vocab: ShardVocab | None) -> tuple[int | None, int | None, int | None]:
    def pick(value: int | str, attr: str) -> int | None:
        return value if value != FROM_SHARDS else (getattr(vocab, attr) if vocab else None)

    return pick(cfg.model.vocab_size, "vocab_size"), pick(cfg.data.eod_id, "eod_id"), pick(cfg.data.pad_id, "pad_id")


def validate_launch(cfg: TrainingConfig, *, vocab: ShardVocab | None = None) -> LaunchPlan:
    """The LaunchPlan of a launchable config, or one LaunchConfigError listing every problem.

    `vocab` (the shards' layout) resolves `from_shards` values and is cross-checked against stated ones;
    without it the plan's vocab is None and rendering the arguments will ask for it.
    """
    found = [finding for rule in RULES for finding in rule(cfg)] + vocabulary_agrees(cfg, vocab)
    problems = [f for f in found if not isinstance(f, Warn)]
    if problems:
        raise LaunchConfigError(problems)
    size, eod, pad = _stated_or_shards(cfg, vocab)
    schedule, s = resolve_schedule(cfg)[0], cfg.schedule
    iterations = train_iterations(cfg, schedule)
    return LaunchPlan(
        world_size=cfg.cluster.world_size,
        data_parallel_size=data_parallel_size(cfg),
        model_parallel_size=model_parallel_size(cfg),
        micro_batches_per_step=micro_batches_per_step(cfg),
        layers_per_pipeline_stage=layers_per_stage(cfg),
        virtual_pipeline_size=virtual_pipeline_size(cfg),
        sequence_parallel=sequence_parallel(cfg),
        schedule=schedule,
        train_iterations=iterations,
        tokens_per_iteration=s.global_batch_size * cfg.model.seq_length,
        train_tokens=iterations * s.global_batch_size * cfg.model.seq_length,
        vocab=None if None in (size, eod, pad) else ShardVocab(size, eod, pad),
        warnings=tuple(str(f) for f in found if isinstance(f, Warn)),
    )
