"""The training config's sections: model, parallelism, optimizer, schedule, precision and data.

Each model forbids unknown keys and checks single values; rules that tie several values together live in
`validate.py`. The cluster section is in `config_cluster.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SHARD_BATCH = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")  # crawl batch keys (mm_assets.crawl.batch)
CANARY_SET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # eval task names (mm_assets.eval.config)
FROM_SHARDS = "from_shards"


class _Section(BaseModel):
    # strict: no coercion, a quoted "2" or YAML's string "1e-3" is an error (ints still pass as floats)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _no_control(value: str, what: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"{what} {value!r} contains a newline or control character")
    return value


# -- model ------------------------------------------------------------------------------------------------


class ModelConfig(_Section):
    """GPT architecture (Megatron `pretrain_gpt.py` network-size arguments)."""

    num_layers: Annotated[int, Field(gt=0)]
    hidden_size: Annotated[int, Field(gt=0)]
    num_attention_heads: Annotated[int, Field(gt=0)]
    # Grouped-query attention: None = plain multi-head attention.
    num_query_groups: Annotated[int | None, Field(gt=0)] = None
    ffn_hidden_size: Annotated[int, Field(gt=0)]
    seq_length: Annotated[int, Field(gt=0)]
    max_position_embeddings: Annotated[int, Field(gt=0)]
    # Our shards are pre-tokenised: the vocabulary size comes from their vocab layout manifest by default.
    vocab_size: Annotated[int, Field(gt=0)] | Literal["from_shards"] = FROM_SHARDS
    normalization: Literal["RMSNorm", "LayerNorm"] = "RMSNorm"
    swiglu: bool = True
    position_embedding_type: Literal["rope", "learned_absolute"] = "rope"
    rotary_base: Annotated[int, Field(gt=0)] = 10000
    untie_embeddings_and_output_weights: bool = True
    disable_bias_linear: bool = True
    attention_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    hidden_dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    init_method_std: Annotated[float, Field(gt=0)] = 0.02
    transformer_impl: Literal["transformer_engine", "local"] = "transformer_engine"


# -- parallelism ------------------------------------------------------------------------------------------


class ParallelismConfig(_Section):
    """Model parallel sizes; the data-parallel size is derived (world size / (TP × PP × CP))."""

    tensor_model_parallel_size: Annotated[int, Field(ge=1)] = 1
    pipeline_model_parallel_size: Annotated[int, Field(ge=1)] = 1
    context_parallel_size: Annotated[int, Field(ge=1)] = 1
    sequence_parallel: bool = False
    # Interleaved pipeline schedule: layers per virtual stage (None = not interleaved).
    num_layers_per_virtual_pipeline_stage: Annotated[int | None, Field(ge=1)] = None
    use_distributed_optimizer: bool = True


# -- optimizer --------------------------------------------------------------------------------------------


class OptimizerConfig(_Section):
    type: Literal["adam"] = "adam"
    lr: Annotated[float, Field(gt=0)]
    min_lr: Annotated[float, Field(ge=0)] = 0.0
    adam_beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    adam_beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    adam_eps: Annotated[float, Field(gt=0)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    clip_grad: Annotated[float, Field(gt=0)] = 1.0  # Megatron's --clip-grad (the reference's --grad-clip-norm)


# -- schedule ---------------------------------------------------------------------------------------------


class IterationSchedule(_Section):
    train_iters: Annotated[int, Field(gt=0)]
    lr_warmup_iters: Annotated[int, Field(ge=0)] = 0
    lr_decay_iters: Annotated[int | None, Field(gt=0)] = None  # None: decay over the whole run


class SampleSchedule(_Section):
    train_samples: Annotated[int, Field(gt=0)]
    lr_warmup_samples: Annotated[int, Field(ge=0)] = 0
    lr_decay_samples: Annotated[int | None, Field(gt=0)] = None


class TokenSchedule(_Section):
    """A token budget. Megatron has no token flags: it is converted to samples (tokens / seq_length)."""

    train_tokens: Annotated[int, Field(gt=0)]
    lr_warmup_tokens: Annotated[int, Field(ge=0)] = 0
    lr_decay_tokens: Annotated[int | None, Field(gt=0)] = None


class ScheduleConfig(_Section):
    """Batch sizes and the run's length. Exactly one of iterations / samples / tokens (validate.py checks)."""

    micro_batch_size: Annotated[int, Field(ge=1)] = 1
    global_batch_size: Annotated[int, Field(ge=1)]
    iterations: IterationSchedule | None = None
    samples: SampleSchedule | None = None
    tokens: TokenSchedule | None = None
    lr_decay_style: Literal["cosine", "linear", "constant", "inverse-square-root"] = "cosine"
    seed: Annotated[int, Field(ge=0)] = 1234
    log_interval: Annotated[int, Field(ge=1)] = 10
    save_interval: Annotated[int, Field(ge=1)] = 500
    eval_interval: Annotated[int, Field(ge=1)] = 100
    # Megatron's default is 100 eval iterations per evaluation; at 1024 sequences a step that doubles compute
    # when evaluating every 100 steps. Ten is enough for a validation loss.
    eval_iters: Annotated[int, Field(ge=0)] = 10
    tensorboard: bool = False  # --tensorboard-dir <run dir>/tensorboard
    # Megatron saves and exits cleanly after this many minutes: set it below cluster.time_limit so a job ends
    # with a checkpoint instead of being killed; the resubmission resumes from it (--load = --save).
    exit_duration_in_mins: Annotated[int | None, Field(ge=1)] = None


# -- precision --------------------------------------------------------------------------------------------


class RecomputeConfig(_Section):
    """Activation recomputation. `full` needs a method and a layer count; `selective` takes neither."""

    granularity: Literal["none", "selective", "full"] = "none"
    method: Literal["uniform", "block"] | None = None
    num_layers: Annotated[int | None, Field(ge=1)] = None


class PrecisionConfig(_Section):
    bf16: bool = True
    fp8: Literal["none", "hybrid", "e4m3"] = "none"  # → --fp8-format (the reference's --fp8-hybrid)
    # → --attention-backend (the reference's --use-flash-attn does nothing in current Megatron-LM).
    attention_backend: Literal["flash", "fused", "unfused", "local", "auto"] = "auto"
    recompute: RecomputeConfig = RecomputeConfig()


# -- data -------------------------------------------------------------------------------------------------


class BlendEntry(_Section):
    """One dataset of the blend: a Megatron prefix (`<prefix>.bin/.idx`), a shard batch, or an eval set's
    canary shard (`canary_set: <task_name>`, the leakage canary injected on purpose), and its weight."""

    prefix: str | None = None
    shard_batch: str | None = None
    canary_set: str | None = None
    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)]

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str | None) -> str | None:
        if prefix is None:
            return None
        _no_control(prefix, "prefix")
        if not prefix or prefix != prefix.strip():
            # Megatron strips each prefix: surrounding spaces would silently point somewhere else.
            raise ValueError(f"prefix {prefix!r} is empty or has surrounding whitespace")
        if prefix.endswith((".bin", ".idx")):
            raise ValueError(f"prefix {prefix!r}: give the prefix without .bin/.idx")
        return prefix

    @field_validator("shard_batch")
    @classmethod
    def _batch(cls, batch: str | None) -> str | None:
        if batch is not None and not SHARD_BATCH.match(batch):
            raise ValueError(f"shard_batch {batch!r} must match {SHARD_BATCH.pattern} (a crawl batch key)")
        return batch

    @field_validator("canary_set")
    @classmethod
    def _canary(cls, task: str | None) -> str | None:
        if task is not None and not CANARY_SET.match(task):
            raise ValueError(f"canary_set {task!r} must be an eval task_name matching {CANARY_SET.pattern}")
        return task

    @model_validator(mode="after")
    def _one_source(self) -> BlendEntry:
        if sum(v is not None for v in (self.prefix, self.shard_batch, self.canary_set)) != 1:
            raise ValueError("give exactly one of prefix, shard_batch or canary_set")
        return self


class DataConfig(_Section):
    blend: list[BlendEntry] = Field(min_length=1)
    split: str = "990,9,1"  # train,valid,test weights
    # Our shards are token ids already: NullTokenizer (no vocabulary file) with the layout's size and ids.
    tokenizer_type: Literal["NullTokenizer"] = "NullTokenizer"
    eod_id: Annotated[int, Field(ge=0)] | Literal["from_shards"] = FROM_SHARDS
    pad_id: Annotated[int, Field(ge=0)] | Literal["from_shards"] = FROM_SHARDS
    data_cache_path: str | None = None  # None: <run dir>/data-cache

    @field_validator("split")
    @classmethod
    def _split(cls, split: str) -> str:
        parts = split.split(",")
        if len(parts) != 3 or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
            raise ValueError(f"split {split!r}: give three non-negative numbers 'train,valid,test', e.g. '990,9,1'")
        if float(parts[0]) <= 0:
            raise ValueError(f"split {split!r}: the training share must be positive")
        return split

    @field_validator("data_cache_path")
    @classmethod
    def _cache(cls, path: str | None) -> str | None:
        return None if path is None else _no_control(path, "data_cache_path")
