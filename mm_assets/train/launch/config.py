"""The `training:` part of configs/pipeline.yaml: one typed config per run, from which the launch is rendered.

Sections model, parallelism, optimizer, schedule, precision, data and cluster (the Slurm allocation, with
values safe on `#SBATCH` lines) hold everything the Megatron launch needs; `resume` says what a launch does
when its checkpoint no longer matches its recorded sha256 (verified_checkpoints.py). Each model forbids unknown
keys and checks single values; rules that tie several values together are rules.py, which reports all
problems at once. Experiments override these sections (experiment.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from mm_assets.config.base import ENV_NAME, ConfigError, Section, format_errors, no_control
from mm_assets.eval.config import TASK_NAME

SHARD_BATCH = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")  # crawl batch keys (mm_assets.crawl.batch)
FROM_SHARDS = "from_shards"


# -- model ------------------------------------------------------------------------------------------------


class ModelConfig(Section):
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


class ParallelismConfig(Section):
    """Model parallel sizes; the data-parallel size is derived (world size / (TP × PP × CP))."""

    tensor_model_parallel_size: Annotated[int, Field(ge=1)] = 1
    pipeline_model_parallel_size: Annotated[int, Field(ge=1)] = 1
    context_parallel_size: Annotated[int, Field(ge=1)] = 1
    sequence_parallel: bool = False
    # Interleaved pipeline schedule: layers per virtual stage (None = not interleaved).
    num_layers_per_virtual_pipeline_stage: Annotated[int | None, Field(ge=1)] = None
    use_distributed_optimizer: bool = True


# -- optimizer --------------------------------------------------------------------------------------------


class OptimizerConfig(Section):
    type: Literal["adam"] = "adam"
    lr: Annotated[float, Field(gt=0)]
    min_lr: Annotated[float, Field(ge=0)] = 0.0
    adam_beta1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    adam_beta2: Annotated[float, Field(ge=0, lt=1)] = 0.95
    adam_eps: Annotated[float, Field(gt=0)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 0.1
    clip_grad: Annotated[float, Field(gt=0)] = 1.0  # Megatron's --clip-grad (the reference's --grad-clip-norm)


# -- schedule ---------------------------------------------------------------------------------------------


class IterationSchedule(Section):
    train_iters: Annotated[int, Field(gt=0)]
    lr_warmup_iters: Annotated[int, Field(ge=0)] = 0
    lr_decay_iters: Annotated[int | None, Field(gt=0)] = None  # None: decay over the whole run


class SampleSchedule(Section):
    train_samples: Annotated[int, Field(gt=0)]
    lr_warmup_samples: Annotated[int, Field(ge=0)] = 0
    lr_decay_samples: Annotated[int | None, Field(gt=0)] = None


class TokenSchedule(Section):
    """A token budget. Megatron has no token flags: it is converted to samples (tokens / seq_length)."""

    train_tokens: Annotated[int, Field(gt=0)]
    lr_warmup_tokens: Annotated[int, Field(ge=0)] = 0
    lr_decay_tokens: Annotated[int | None, Field(gt=0)] = None


class ScheduleConfig(Section):
    """Batch sizes and the run's length. Exactly one of iterations / samples / tokens (rules.py checks)."""

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


class RecomputeConfig(Section):
    """Activation recomputation. `full` needs a method and a layer count; `selective` takes neither."""

    granularity: Literal["none", "selective", "full"] = "none"
    method: Literal["uniform", "block"] | None = None
    num_layers: Annotated[int | None, Field(ge=1)] = None


class PrecisionConfig(Section):
    bf16: bool = True
    fp8: Literal["none", "hybrid", "e4m3"] = "none"  # → --fp8-format (the reference's --fp8-hybrid)
    # → --attention-backend (the reference's --use-flash-attn does nothing in current Megatron-LM).
    attention_backend: Literal["flash", "fused", "unfused", "local", "auto"] = "auto"
    recompute: RecomputeConfig = RecomputeConfig()


# -- data -------------------------------------------------------------------------------------------------


class BlendEntry(Section):
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
        no_control(prefix, "prefix")
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
        if task is not None and not TASK_NAME.match(task):
            raise ValueError(f"canary_set {task!r} must be an eval task_name matching {TASK_NAME.pattern}")
        return task

    @model_validator(mode="after")
    def _one_source(self) -> BlendEntry:
        if sum(v is not None for v in (self.prefix, self.shard_batch, self.canary_set)) != 1:
            raise ValueError("give exactly one of prefix, shard_batch or canary_set")
        return self


class DataConfig(Section):
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
        return None if path is None else no_control(path, "data_cache_path")


# -- resume -----------------------------------------------------------------------------------------------


class ResumeConfig(Section):
    """What a launch does when the checkpoint it would resume from no longer matches its recorded sha256."""

    # refuse: fail before submitting, naming each file. previous_verified: resume from the newest earlier
    # checkpoint that still matches (the newer folders are moved to <checkpoints>/rejected/).
    on_mismatch: Literal["refuse", "previous_verified"] = "refuse"


# -- cluster ----------------------------------------------------------------------------------------------

# Values that end up on `#SBATCH` lines. sbatch parses those lines itself (no shell), so they cannot be quoted:
# they are restricted to characters that mean nothing to sbatch's own tokenizer or to its filename patterns.
SBATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SBATCH_PARTITION = re.compile(r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$")
SBATCH_PATH = re.compile(r"^[A-Za-z0-9._/+:@,=-]+$")
# Slurm accepts more forms; we take the two that cannot be misread: HH:MM:SS and D-HH:MM:SS.
TIME_LIMIT = re.compile(r"^(?:(?P<days>\d{1,3})-(?P<dh>\d{1,2})|(?P<hours>\d{1,4})):(?P<m>\d{2}):(?P<s>\d{2})$")


class ClusterConfig(Section):
    """Slurm allocation and how each node starts its processes."""

    nodes: Annotated[int, Field(ge=1)] = 1
    gpus_per_node: Annotated[int, Field(ge=0, le=16)] = 8  # 0: CPU only (CI), one process per node
    gpu_type: str | None = None  # e.g. h100; only used to check that fp8 can run
    cpus_per_task: Annotated[int | None, Field(ge=1)] = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str = "01:00:00"  # HH:MM:SS or D-HH:MM:SS
    job_name: str | None = None  # None: the experiment id
    exclusive: bool = True
    megatron_path: str = "/opt/Megatron-LM"  # the user's Megatron-LM checkout (holds pretrain_gpt.py)
    torchrun: list[str] = Field(default_factory=lambda: ["torchrun"], min_length=1)
    # None: <megatron_path>/pretrain_gpt.py through torchrun. Otherwise the program and its fixed arguments
    # (after torchrun's options when use_torchrun, e.g. ['-m', 'pkg.mod']; a whole command line when not).
    entrypoint: list[str] | None = Field(default=None, min_length=1)
    use_torchrun: bool = True
    rdzv_port: Annotated[int, Field(ge=1024, le=65535)] = 29500
    container_image: str | None = None  # pyxis/enroot: srun --container-image
    container_mounts: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # exported before srun

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, name: str | None) -> str | None:
        if name is not None and not SBATCH_NAME.match(name):
            raise ValueError(f"job_name {name!r} must match {SBATCH_NAME.pattern} (it is an #SBATCH value)")
        return name

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None and not SBATCH_PARTITION.match(value):
            raise ValueError(f"partition {value!r} must be names of [A-Za-z0-9._-], comma-separated")
        return value

    @field_validator("account", "qos")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and not SBATCH_NAME.match(value):
            raise ValueError(f"{value!r} must match {SBATCH_NAME.pattern} (it is an #SBATCH value)")
        return value

    @field_validator("time_limit")
    @classmethod
    def _time(cls, value: str) -> str:
        time_limit_minutes(value)
        return value

    @field_validator("megatron_path", "container_image")
    @classmethod
    def _body_text(cls, value: str | None) -> str | None:
        return None if value is None else no_control(value, "value")

    @field_validator("torchrun", "entrypoint", "container_mounts")
    @classmethod
    def _argv(cls, argv: list[str] | None) -> list[str] | None:
        for item in argv or []:
            if "\0" in item:
                raise ValueError(f"argument {item!r} contains a NUL byte")
        return argv

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key, value in env.items():
            if not ENV_NAME.match(key):
                raise ValueError(f"environment variable name {key!r} must match {ENV_NAME.pattern}")
            if "\0" in value:
                raise ValueError(f"environment variable {key}: value contains a NUL byte")
        return env

    @property
    def procs_per_node(self) -> int:
        """torchrun processes per node: one per GPU, or one on a CPU node."""
        return self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node


def time_limit_minutes(value: str) -> float:
    """Minutes in a Slurm time limit `HH:MM:SS` or `D-HH:MM:SS`; ValueError naming the accepted forms."""
    m = TIME_LIMIT.match(value)
    if not m or int(m["m"]) > 59 or int(m["s"]) > 59 or (m["dh"] is not None and int(m["dh"]) > 23):
        raise ValueError(
            f"time_limit {value!r}: use HH:MM:SS or D-HH:MM:SS (minutes and seconds < 60, hours < 24 after D-)"
        )
    hours = int(m["days"]) * 24 + int(m["dh"]) if m["days"] is not None else int(m["hours"])
    minutes = hours * 60 + int(m["m"]) + int(m["s"]) / 60
    if minutes <= 0:
        raise ValueError(f"time_limit {value!r} is zero")
    return minutes


# -- the whole config -------------------------------------------------------------------------------------


class LaunchConfigError(ConfigError):
    """A training config that cannot be launched; the message lists every problem with its key path."""

    def __init__(self, problems: list[str] | str, *, source: str = "training config"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) before launch\n{lines}")


class TrainingConfig(Section):
    """The `training:` section of configs/pipeline.yaml: one run, one object (the launch derives from it)."""

    model: ModelConfig
    parallelism: ParallelismConfig = ParallelismConfig()
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    precision: PrecisionConfig = PrecisionConfig()
    data: DataConfig
    cluster: ClusterConfig = ClusterConfig()
    resume: ResumeConfig = ResumeConfig()


def parse_training(data: Any, *, source: str = "<training>") -> TrainingConfig:
    """Validate a `training:` mapping; the error lists every bad key path."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: training: must be a mapping, got {type(data).__name__}")
    try:
        return TrainingConfig(**data)
    except ValidationError as err:
        lines = "\n".join(f"  {line}" for line in format_errors(err, prefix="training."))
        raise ConfigError(f"{source}: invalid training configuration\n{lines}") from None


def tokens_to_samples(tokens: int, seq_length: int) -> int:
    """Nearest whole number of sequences (samples) for a token count, in integers (halves round up)."""
    return (2 * tokens + seq_length) // (2 * seq_length)
