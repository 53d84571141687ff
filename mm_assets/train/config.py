"""Typed models of the `training:` part of configs/pipeline.yaml, and experiment files that override it.

Seven sections (model, parallelism, optimizer, schedule, precision, data, cluster) hold everything the Megatron
launch is rendered from; `resume` says what a launch does when its checkpoint no longer matches its recorded
sha256 (verified_checkpoints.py). Each model forbids unknown keys and checks single values; rules that tie several
values together (world size, batch divisibility, recompute, schedules) live in `validate.py`, which reports
all problems at once. An experiment file (`configs/experiments/<id>.yaml`) holds only overrides of these
sections; they are deep-merged onto the base and the effective diff becomes the experiment record's
"key changes".

The models live in config_sections.py and config_cluster.py, the whole config and its parsing in
config_training.py, experiments in config_experiment.py; this module re-exports them.
"""

from __future__ import annotations

from mm_assets.train.config_cluster import (  # noqa: F401
    ENV_NAME,
    SBATCH_NAME,
    SBATCH_PARTITION,
    SBATCH_PATH,
    TIME_LIMIT,
    ClusterConfig,
    time_limit_minutes,
)
from mm_assets.train.config_experiment import (  # noqa: F401
    DEFAULT_EXPERIMENTS_DIR,
    EXPERIMENT_ID,
    ExperimentConfig,
    check_experiment_id,
    deep_merge,
    experiment_from_overrides,
    key_changes,
    load_experiment,
)
from mm_assets.train.config_sections import (  # noqa: F401
    FROM_SHARDS,
    SHARD_BATCH,
    BlendEntry,
    DataConfig,
    IterationSchedule,
    ModelConfig,
    OptimizerConfig,
    ParallelismConfig,
    PrecisionConfig,
    RecomputeConfig,
    SampleSchedule,
    ScheduleConfig,
    TokenSchedule,
)
from mm_assets.train.config_training import (  # noqa: F401
    LaunchConfigError,
    ShardVocab,
    TrainingConfig,
    parse_training,
    read_training_base,
    tokens_to_samples,
)
