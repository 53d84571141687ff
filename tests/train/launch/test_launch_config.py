"""Training config: typed sections, experiment overrides and their diff, and every pre-launch validation rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import load_config
from mm_assets.shards.vocab import Codebook, ShardVocab, VocabLayout
from mm_assets.train.launch.config import TrainingConfig, time_limit_minutes, tokens_to_samples
from mm_assets.train.launch.experiment import deep_merge, experiment_from_overrides, load_experiment
from mm_assets.train.launch.rules import LaunchConfigError, validate_launch
from mm_assets.train.launch.run_folders import RunFolders
from mm_assets.train.launch.sbatch import program_argv
from resources.storage import StorageResource
from trainproject import golden_pipeline

HERE = Path(__file__).parent
EXPERIMENTS = HERE.parents[2] / "configs" / "experiments"
VOCAB = ShardVocab(vocab_size=192611, eod_id=192603, pad_id=192604)


@pytest.fixture(scope="module")
def base() -> TrainingConfig:
    return golden_pipeline().training


def exp_with(base: TrainingConfig, overrides: dict):
    return experiment_from_overrides("t", base, overrides, source="test.yaml")


# -- loading ----------------------------------------------------------------------------------------------


def test_base_and_shipped_experiments_load_and_validate(base):
    plan = validate_launch(base, vocab=VOCAB)
    assert (plan.world_size, plan.data_parallel_size, plan.micro_batches_per_step) == (256, 8, 128)
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        exp = load_experiment(golden_pipeline(), path.stem)
        validate_launch(exp.training, vocab=VOCAB)
        assert exp.path == path


def test_production_example_is_the_reference_run(base):
    exp = load_experiment(golden_pipeline(), "exp-10b-lr-1")
    t = exp.training
    assert (t.model.num_layers, t.model.hidden_size, t.model.num_attention_heads) == (40, 4096, 32)
    assert (t.model.ffn_hidden_size, t.model.seq_length) == (11008, 8192)
    assert (t.parallelism.tensor_model_parallel_size, t.parallelism.pipeline_model_parallel_size) == (4, 8)
    assert (t.cluster.nodes, t.cluster.gpus_per_node) == (32, 8)
    plan = validate_launch(t, vocab=VOCAB)
    assert plan.data_parallel_size == 8
    # 10T tokens / 8192 = 1,220,703,125 samples exactly; decay in samples too; warmup = 2000 iterations × 1024.
    assert plan.schedule.unit == "samples"
    assert (plan.schedule.train, plan.schedule.lr_decay, plan.schedule.lr_warmup) == (1220703125, 1220703125, 2048000)
    assert plan.schedule.notes == ()
    assert plan.train_iterations == 1220703125 // 1024
    assert any("Megatron runs 1192092 iterations" in w for w in plan.warnings)


def test_key_changes_are_the_effective_diff(base):
    exp = load_experiment(golden_pipeline(), "exp-10b-lr-1")
    changes = exp.key_changes
    assert "optimizer.lr=0.0001" in changes and "optimizer.min_lr=1e-05" in changes
    assert "precision.fp8=hybrid" in changes
    assert "schedule.tokens.train_tokens=10000000000000" in changes
    assert "cluster.env.NCCL_IB_TIMEOUT=22" in changes
    # Restated but equal to the base: no change.
    assert not any(c.startswith("schedule.tokens.lr_warmup_tokens=") for c in changes)
    assert all("=" in c and " " not in c.split("=")[0] for c in changes)


def test_null_override_removes_a_base_key(base):
    tiny = load_experiment(golden_pipeline(), "exp-tiny-cpu")
    assert tiny.training.schedule.tokens is None and tiny.training.schedule.iterations.train_iters == 100
    assert tiny.training.precision.recompute.method is None
    assert "schedule.tokens=null" in tiny.key_changes
    assert "schedule.iterations.train_iters=100" in tiny.key_changes
    assert "cluster.gpus_per_node=0" in tiny.key_changes


def test_deep_merge_merges_mappings_and_replaces_lists():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # the base is not modified


def test_no_overrides_means_no_changes(base):
    assert exp_with(base, {}).key_changes == ()
    assert exp_with(base, {"optimizer": {"lr": 3.0e-4}}).key_changes == ()


@pytest.mark.parametrize(
    "overrides, key_path",
    [
        ({"optimizer": {"lrr": 1.0}}, "training.optimizer.lrr"),
        ({"model": {"num_layers": 0}}, "training.model.num_layers"),
        ({"precision": {"fp8": "hybird"}}, "training.precision.fp8"),
        ({"precision": {"recompute": {"granularity": "most"}}}, "training.precision.recompute.granularity"),
        ({"schedule": {"tokens": {"train_tokens": 10, "lr_decay_iters": 5}}}, "training.schedule.tokens.lr_decay_iters"),
        ({"data": {"blend": [{"prefix": "/a", "shard_batch": "b", "weight": 1}]}}, "training.data.blend.0"),
        ({"data": {"blend": [{"prefix": "/a", "weight": -1}]}}, "training.data.blend.0.weight"),
        ({"data": {"blend": [{"prefix": "/a.bin", "weight": 1}]}}, "training.data.blend.0.prefix"),
        ({"data": {"split": "99,1"}}, "training.data.split"),
        ({"data": {"eod_id": "from_shard"}}, "training.data.eod_id"),
        ({"cluster": {"time_limit": "48h"}}, "training.cluster.time_limit"),
        ({"cluster": {"env": {"BAD-NAME": "1"}}}, "training.cluster.env"),
    ],
)
def test_bad_values_name_the_key_path(base, overrides, key_path):
    with pytest.raises(ConfigError) as err:
        exp_with(base, overrides)
    assert key_path in str(err.value)
    assert "test.yaml" in str(err.value)


@pytest.mark.parametrize(
    "overrides, key_path, hint",
    [
        ({"model": {"num_layers": "2"}}, "training.model.num_layers", "write 2 without quotes"),
        ({"model": {"vocab_size": "50000"}}, "training.model.vocab_size", "write 50000 without quotes"),
        ({"optimizer": {"lr": "1e-3"}}, "training.optimizer.lr", "YAML reads 1e-3 as a string"),
        ({"precision": {"bf16": "true"}}, "training.precision.bf16", "write true or false, without quotes"),
        ({"parallelism": {"tensor_model_parallel_size": 4.0}}, "training.parallelism.tensor_model_parallel_size",
         "write a whole number: 4"),
        ({"schedule": {"iterations": {"train_iters": "100"}}}, "training.schedule.iterations.train_iters",
         "write 100 without quotes"),
        ({"data": {"blend": [{"prefix": "/a", "weight": "1"}]}}, "training.data.blend.0.weight",
         "write 1 without quotes"),
        ({"data": {"eod_id": "3"}}, "training.data.eod_id", "write 3 without quotes"),
        ({"cluster": {"nodes": "4"}}, "training.cluster.nodes", "write 4 without quotes"),
        ({"cluster": {"time_limit": 3600}}, "training.cluster.time_limit", "put it in quotes"),  # YAML: 01:00:00
    ],
)
def test_strings_are_not_numbers_or_bools(base, overrides, key_path, hint):
    with pytest.raises(ConfigError) as err:
        exp_with(base, overrides)
    lines = [line for line in str(err.value).splitlines() if line.strip().startswith(key_path + ":")]
    assert any(hint in line for line in lines), str(err.value)


def test_an_experiment_file_with_1e_minus_3_says_how_to_write_it(base, tmp_path):
    folder = tmp_path / "configs" / "experiments"
    folder.mkdir(parents=True)
    (folder / "exp-a.yaml").write_text("optimizer:\n  lr: 1e-3\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(golden_pipeline(folder), "exp-a")
    assert "training.optimizer.lr: Input should be a valid number (got '1e-3'); YAML reads 1e-3 as a string " \
        "(its floats need a dot and a signed exponent): write 1.0e-3" in str(err.value)
    assert "exp-a.yaml" in str(err.value)


def test_unknown_section_and_bad_ids(base, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trainer'\]"):
        exp_with(base, {"trainer": {}})
    for bad in ["Exp-1", "../etc", "", "-x", "a b", "a;b"]:
        with pytest.raises(ConfigError, match="experiment id"):
            experiment_from_overrides(bad, base, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(golden_pipeline(tmp_path), "exp-missing")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping of training overrides"):
        load_experiment(golden_pipeline(tmp_path), "list")
    (tmp_path / "pipeline.yaml").write_text("schema_version: 2\n")
    with pytest.raises(ConfigError, match="no `training:` section"):
        load_experiment(load_config(tmp_path / "pipeline.yaml"), "exp-a")


def test_relative_paths_resolve_against_the_project_of_the_pipeline_config(base, tmp_path):
    folder = tmp_path / "proj" / "configs" / "experiments"
    folder.mkdir(parents=True)
    (folder / "e1.yaml").write_text("cluster: {megatron_path: src/Megatron-LM}\ndata: {data_cache_path: cache}\n")
    exp = load_experiment(golden_pipeline(folder, base_dir=tmp_path / "proj"), "e1")
    assert program_argv(exp) == [str(tmp_path / "proj" / "src" / "Megatron-LM" / "pretrain_gpt.py")]
    run = RunFolders.of(exp, StorageResource(root=str(tmp_path / "proj" / "data")))
    assert run.data_cache == tmp_path / "proj" / "cache"
    assert run.checkpoints == tmp_path / "proj" / "data" / "runs" / "e1" / "checkpoints"


def test_time_limits_and_token_rounding():
    assert time_limit_minutes("01:30:00") == 90
    assert time_limit_minutes("2-00:00:00") == 2880
    assert time_limit_minutes("48:00:00") == 2880
    for bad in ["1:00", "1-25:00:00", "00:60:00", "00:00:00", "1d", "01:00:00 "]:
        with pytest.raises(ValueError):
            time_limit_minutes(bad)
    assert tokens_to_samples(10**13, 8192) == 1220703125
    assert tokens_to_samples(3 * 8192 + 4096, 8192) == 4  # halves round up
    assert tokens_to_samples(3 * 8192 + 4095, 8192) == 3


def test_token_budget_rounding_is_reported(base):
    plan = validate_launch(base, vocab=VOCAB)  # 1T tokens / 8192 = 122070312.5
    assert plan.schedule.train == 122070313
    assert any("train_tokens=1000000000000 is not a multiple of model.seq_length=8192" in n for n in plan.schedule.notes)
    assert any("122070313 samples" in w for w in plan.warnings)


def test_shard_vocab_from_the_real_layout():
    layout = VocabLayout.build(1000, [Codebook("audio", 1024, 8)])
    vocab = ShardVocab.from_layout(layout)
    assert (vocab.vocab_size, vocab.eod_id, vocab.pad_id) == (layout.vocab_size, layout.eod_id, layout.pad_id)


# -- validation rules: each bad config is rejected with the keys and numbers involved ------------------------

RULES = [
    (
        "world size",
        {"cluster": {"nodes": 3}},
        ["world size = cluster.nodes=3 × cluster.gpus_per_node=8 = 24", "4 × 8 × 1 = 32"],
    ),
    (
        "global batch",
        {"schedule": {"global_batch_size": 1004}},
        ["schedule.global_batch_size=1004", "schedule.micro_batch_size × data-parallel size = 1 × 8 = 8"],
    ),
    (
        "heads / TP",
        {"model": {"num_attention_heads": 30, "hidden_size": 3840}},
        ["model.num_attention_heads=30", "parallelism.tensor_model_parallel_size=4"],
    ),
    ("hidden / heads", {"model": {"hidden_size": 4100}}, ["model.hidden_size=4100", "model.num_attention_heads=32"]),
    ("query groups", {"model": {"num_query_groups": 6}}, ["model.num_attention_heads=32", "model.num_query_groups=6"]),
    ("layers / PP", {"model": {"num_layers": 42}}, ["model.num_layers=42", "parallelism.pipeline_model_parallel_size=8"]),
    (
        "virtual pipeline",
        {"parallelism": {"num_layers_per_virtual_pipeline_stage": 2}},
        ["= 5)", "parallelism.num_layers_per_virtual_pipeline_stage=2"],
    ),
    (
        "virtual pipeline needs PP",
        {
            "parallelism": {"num_layers_per_virtual_pipeline_stage": 2, "pipeline_model_parallel_size": 1},
            "cluster": {"nodes": 4},
        },
        ["parallelism.num_layers_per_virtual_pipeline_stage=2", "pipeline_model_parallel_size > 1 (got 1)"],
    ),
    ("ffn / TP", {"model": {"ffn_hidden_size": 11010}}, ["model.ffn_hidden_size=11010", "tensor_model_parallel_size=4"]),
    (
        "seq vs positions",
        {"model": {"max_position_embeddings": 4096}},
        ["model.seq_length=8192", "model.max_position_embeddings=4096"],
    ),
    (
        "context parallel",
        {"model": {"seq_length": 8190, "max_position_embeddings": 8190}, "parallelism": {"context_parallel_size": 2}},
        ["model.seq_length=8190", "2 × parallelism.context_parallel_size = 4"],
    ),
    (
        "recompute full incomplete",
        {"precision": {"recompute": {"method": None, "num_layers": None}}},
        ["granularity=full needs precision.recompute.method", "granularity=full needs precision.recompute.num_layers"],
    ),
    (
        "recompute selective with method",
        {"precision": {"recompute": {"granularity": "selective", "num_layers": None}}},
        ["precision.recompute.method=block is only valid with granularity=full (got granularity=selective)"],
    ),
    (
        "recompute too many layers",
        {"precision": {"recompute": {"num_layers": 6}}},
        ["precision.recompute.num_layers=6", "(40 / 8 = 5)"],
    ),
    (
        "mixed schedules",
        {"schedule": {"iterations": {"train_iters": 1000}}},
        ["exactly one of schedule.iterations, schedule.samples, schedule.tokens (got iterations, tokens)"],
    ),
    ("no schedule", {"schedule": {"tokens": None}}, ["(got none)"]),
    (
        "warmup after decay",
        {"schedule": {"tokens": None, "samples": {"train_samples": 1000, "lr_warmup_samples": 1000}}},
        ["schedule.samples.lr_warmup_samples (1000 samples)", "schedule.samples.lr_decay_samples (1000 samples"],
    ),
    ("fp8 without bf16", {"precision": {"fp8": "hybrid", "bf16": False}}, ["precision.fp8=hybrid requires precision.bf16=true"]),
    ("fp8 on A100", {"precision": {"fp8": "e4m3"}, "cluster": {"gpu_type": "a100-80gb"}}, ["cluster.gpu_type=a100-80gb"]),
    (
        "fp8 on the local implementation",
        {"precision": {"fp8": "hybrid"}, "model": {"transformer_impl": "local"}},
        ["model.transformer_impl=transformer_engine (got local)"],
    ),
    ("local attention", {"precision": {"attention_backend": "local"}}, ["precision.attention_backend=local"]),
    ("min lr", {"optimizer": {"min_lr": 1.0}}, ["optimizer.min_lr=1.0", "optimizer.lr=0.0003"]),
    (
        "CPU needs an entrypoint",
        {"cluster": {"gpus_per_node": 0, "nodes": 32}},
        ["cluster.gpus_per_node=0 (CPU) but cluster.entrypoint is unset"],
    ),
    (
        "exit before the time limit",
        {"schedule": {"exit_duration_in_mins": 2880}},
        ["schedule.exit_duration_in_mins=2880", "cluster.time_limit=2-00:00:00 (2880 minutes)"],
    ),
    ("eod is pad", {"data": {"eod_id": 7, "pad_id": 7}}, ["data.eod_id and data.pad_id are both 7"]),
]


@pytest.mark.parametrize("overrides, fragments", [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_rejects_with_keys_and_numbers(base, overrides, fragments):
    exp = exp_with(base, overrides)
    with pytest.raises(LaunchConfigError) as err:
        validate_launch(exp.training, vocab=None if "eod" in str(overrides) else VOCAB)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_all_problems_are_reported_together(base):
    exp = exp_with(base, {"cluster": {"nodes": 3}, "model": {"num_layers": 42, "max_position_embeddings": 4096}})
    with pytest.raises(LaunchConfigError) as err:
        validate_launch(exp.training, vocab=VOCAB)
    problems = err.value.problems
    assert len(problems) == 3, problems
    assert f"{len(problems)} problem(s)" in str(err.value)
    for key in ("cluster.nodes=3", "model.num_layers=42", "model.max_position_embeddings=4096"):
        assert sum(key in p for p in problems) == 1, key


def test_shard_vocabulary_is_cross_checked(base):
    small = exp_with(base, {"model": {"vocab_size": 1000}, "data": {"eod_id": 5}})
    with pytest.raises(LaunchConfigError) as err:
        validate_launch(small.training, vocab=VOCAB)
    assert "model.vocab_size=1000 is smaller than the shards' vocabulary (192611)" in str(err.value)
    assert "data.eod_id=5 differs from the shards' eod_id (192603)" in str(err.value)
    # Without shards, from_shards stays unresolved (rendering asks for it), stated values resolve.
    assert validate_launch(base).vocab is None
    stated = exp_with(base, {"model": {"vocab_size": 300}, "data": {"eod_id": 298, "pad_id": 299}})
    assert validate_launch(stated.training).vocab == ShardVocab(300, 298, 299)


def test_warnings_for_what_megatron_changes_silently(base):
    sp = exp_with(base, {"parallelism": {"tensor_model_parallel_size": 1}, "cluster": {"nodes": 8}})
    plan = validate_launch(sp.training, vocab=VOCAB)
    assert not plan.sequence_parallel
    assert any("sequence_parallel is true but parallelism.tensor_model_parallel_size=1" in w for w in plan.warnings)
    unknown_gpu = exp_with(base, {"precision": {"fp8": "hybrid"}, "cluster": {"gpu_type": "mystery-9000"}})
    plan = validate_launch(unknown_gpu.training, vocab=VOCAB)
    assert any("cluster.gpu_type=mystery-9000 is not one we know" in w for w in plan.warnings)
    assert validate_launch(exp_with(base, {"precision": {"fp8": "hybrid"}}).training, vocab=VOCAB)  # h100: fine
