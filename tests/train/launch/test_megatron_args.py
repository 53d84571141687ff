"""Megatron-LM arguments: the reference's 10B run byte for byte against a golden file, its defects corrected,
only verified flags, iteration and sample settings never mixed, and the blend's `--data-path`.

Regenerate the golden files after an intended change with `MM_UPDATE_GOLDEN=1 pytest tests/train`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mm_assets.shards.vocab import ShardVocab
from mm_assets.train.launch.blend import blend_data_path, missing_shard_files, resolve_blend
from mm_assets.train.launch.config import BlendEntry, LaunchConfigError
from mm_assets.train.launch.experiment import experiment_from_overrides, load_experiment
from mm_assets.train.launch.megatron_args import MEGATRON_FLAGS, REFERENCE_DEFECT_FLAGS, args_text, megatron_arg_groups
from mm_assets.train.launch.run_folders import RunFolders
from trainproject import CLUSTER, golden_pipeline, render

HERE = Path(__file__).parent
GOLDEN = HERE.parent / "golden"
VOCAB = ShardVocab(vocab_size=192611, eod_id=192603, pad_id=192604)






def flag_values(argv: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    flag = None
    for item in argv:
        if item.startswith("--"):
            flag = item
            out[flag] = []
        else:
            out[flag].append(item)
    return out


def test_10b_arguments_match_the_golden_file(launch_10b, check_golden):
    check_golden("exp-10b-lr-1.args.txt", launch_10b.args_text)


def test_10b_arguments_are_the_reference_run_corrected(launch_10b):
    argv = launch_10b.argv
    f = flag_values(argv)
    assert not REFERENCE_DEFECT_FLAGS & set(argv)
    assert {"--train-samples", "--lr-decay-samples", "--lr-warmup-samples"} <= set(f)
    assert f["--train-samples"] == ["1220703125"] and f["--lr-decay-samples"] == ["1220703125"]
    assert f["--lr-warmup-samples"] == ["2048000"]  # 2000 iterations × 1024
    assert f["--clip-grad"] == ["1.0"] and f["--fp8-format"] == ["hybrid"] and f["--attention-backend"] == ["flash"]
    assert f["--tensor-model-parallel-size"] == ["4"] and f["--pipeline-model-parallel-size"] == ["8"]
    assert f["--recompute-granularity"] == ["full"] and f["--recompute-method"] == ["block"]
    assert f["--recompute-num-layers"] == ["1"]
    assert f["--lr"] == ["0.0001"] and f["--min-lr"] == ["1e-05"] and f["--weight-decay"] == ["0.1"]
    assert f["--adam-beta1"] == ["0.9"] and f["--adam-beta2"] == ["0.95"]
    assert (f["--log-interval"], f["--save-interval"], f["--eval-interval"]) == (["10"], ["500"], ["100"])
    assert f["--tokenizer-type"] == ["NullTokenizer"] and f["--vocab-size"] == ["192611"]
    assert f["--null-tokenizer-eod-id"] == ["192603"] and f["--null-tokenizer-pad-id"] == ["192604"]
    assert "--vocab-file" not in f and "--merge-file" not in f and "--exit-on-missing-checkpoint" not in f
    assert f["--save"] == f["--load"] == ["/lustre/mm-pretrain/runs/exp-10b-lr-1/checkpoints"]
    assert f["--split"] == ["990,9,1"] and f["--distributed-backend"] == ["nccl"]
    assert "--sequence-parallel" in f and "--bf16" in f and "--log-throughput" in f


def test_only_verified_flags_and_each_once(base, launch_10b):
    tiny = render(
        load_experiment(golden_pipeline(), "exp-tiny-cpu"),
        vocab=VOCAB,
        shard_prefix=lambda b: f"/shards/{b}/shard",
    )
    for launch in (launch_10b, tiny):
        flags = [a for a in launch.argv if a.startswith("--")]
        assert set(flags) <= MEGATRON_FLAGS
        assert len(flags) == len(set(flags))
    assert flag_values(tiny.argv)["--distributed-backend"] == ["gloo"]
    assert flag_values(tiny.argv)["--train-iters"] == ["100"]


@pytest.mark.parametrize(
    "schedule, unit",
    [
        ({"tokens": None, "iterations": {"train_iters": 5000, "lr_warmup_iters": 100}}, "iters"),
        ({"tokens": None, "samples": {"train_samples": 10240, "lr_decay_samples": 9000}}, "samples"),
        ({}, "samples"),
    ],
)
def test_iteration_and_sample_settings_are_never_mixed(base, schedule, unit):
    exp = experiment_from_overrides("t", base, {"schedule": schedule})
    argv = render(exp, vocab=VOCAB).argv
    other = "samples" if unit == "iters" else "iters"
    assert {f"--train-{unit}", f"--lr-warmup-{unit}", f"--lr-decay-{unit}"} <= set(argv)
    schedule_flags = [a for a in argv if a.startswith(("--train-", "--lr-warmup-", "--lr-decay-")) and a != "--lr-decay-style"]
    assert sorted(schedule_flags) == sorted([f"--train-{unit}", f"--lr-warmup-{unit}", f"--lr-decay-{unit}"])
    assert not [a for a in schedule_flags if a.endswith(f"-{other}")]


def test_sequence_parallel_is_not_emitted_at_tp1(base):
    exp = experiment_from_overrides("t", base, {"parallelism": {"tensor_model_parallel_size": 1}, "cluster": {"nodes": 8}})
    launch = render(exp, vocab=VOCAB)
    assert "--sequence-parallel" not in launch.argv
    assert any("sequence_parallel" in w for w in launch.warnings)


def test_optional_flags(base):
    exp = experiment_from_overrides(
        "t",
        base,
        {
            "model": {"num_query_groups": 8, "position_embedding_type": "learned_absolute", "swiglu": False},
            "parallelism": {"num_layers_per_virtual_pipeline_stage": 1},
            "schedule": {"tensorboard": True},
            "precision": {"recompute": {"granularity": "selective", "method": None, "num_layers": None}},
        },
    )
    f = flag_values(render(exp, vocab=VOCAB).argv)
    assert "--group-query-attention" in f and f["--num-query-groups"] == ["8"]
    assert f["--num-layers-per-virtual-pipeline-stage"] == ["1"]
    assert f["--tensorboard-dir"] == [str(RunFolders.of(exp, CLUSTER).tensorboard)]
    assert f["--recompute-granularity"] == ["selective"] and "--recompute-method" not in f
    assert "--rotary-base" not in f and "--swiglu" not in f


def test_vocabulary_from_shards_is_required(base):
    exp = load_experiment(golden_pipeline(), "exp-10b-lr-1")
    with pytest.raises(LaunchConfigError, match="no shard vocabulary was given"):
        render(exp)


# -- the blend ---------------------------------------------------------------------------------------------


def test_data_path_pairs_weights_and_prefixes_as_separate_items():
    assert blend_data_path([(0.7, "/a/b c"), (0.3, "/d")]) == ["0.7", "/a/b c", "0.3", "/d"]
    assert blend_data_path([(2, "/a"), (1, "/b")]) == ["2.0", "/a", "1.0", "/b"]  # Megatron normalises
    with pytest.raises(LaunchConfigError) as err:
        blend_data_path([(0, "rel/path"), (float("nan"), "/x "), (1, "-x")])
    message = str(err.value)
    assert "weight 0 must be" in message and "'rel/path' must be an absolute path" in message
    assert "weight nan" in message and "surrounding whitespace" in message and "'-x' must be an absolute" in message


def test_resolve_blend_relative_prefixes_shard_batches_and_shares(tmp_path):
    entries = [BlendEntry(prefix="shards/a", weight=3), BlendEntry(shard_batch="youtube-2026-11-29", weight=1)]
    blend = resolve_blend(entries, base_dir=tmp_path, shard_prefix=lambda b: f"/store/{b}/shard")
    assert blend.data_path == ["3.0", str(tmp_path / "shards/a"), "1.0", "/store/youtube-2026-11-29/shard"]
    assert [i.share for i in blend.items] == [0.75, 0.25]
    with pytest.raises(LaunchConfigError, match=r"data.blend.1.shard_batch=youtube-2026-11-29: no shard resolver"):
        resolve_blend(entries, base_dir=tmp_path)

    def unknown(batch):
        raise KeyError(f"batch {batch} has no shards yet")

    with pytest.raises(LaunchConfigError, match="has no shards yet"):
        resolve_blend(entries, base_dir=tmp_path, shard_prefix=unknown)
    with pytest.raises(LaunchConfigError, match="already in the blend"):
        resolve_blend([BlendEntry(prefix="/a", weight=1), BlendEntry(prefix="/a", weight=1)], base_dir=tmp_path)


def test_weights_not_summing_to_one_are_reported(base):
    exp = experiment_from_overrides(
        "t", base, {"data": {"blend": [{"prefix": "/a", "weight": 2}, {"prefix": "/b", "weight": 1}]}}
    )
    launch = render(exp, vocab=VOCAB)
    assert any("weights sum to 3; Megatron normalises them to data.blend.0=0.666667" in w for w in launch.warnings)
    assert launch.blend.metadata() == {"/a": 2 / 3, "/b": 1 / 3}


def test_missing_shard_files_are_named(tmp_path):
    (tmp_path / "ok.bin").write_bytes(b"")
    (tmp_path / "ok.idx").write_bytes(b"")
    (tmp_path / "half.bin").write_bytes(b"")
    prefixes = [tmp_path / "ok", tmp_path / "half", tmp_path / "none"]
    assert missing_shard_files(prefixes) == [tmp_path / "half.idx", tmp_path / "none.bin", tmp_path / "none.idx"]
    assert missing_shard_files(prefixes[:1]) == []


def test_arguments_never_hold_a_newline():
    with pytest.raises(LaunchConfigError, match="newline"):
        args_text(["--data-path", "1.0", "/a\nb"])


def test_groups_start_with_a_flag(launch_10b, base):
    exp = load_experiment(golden_pipeline(), "exp-10b-lr-1")
    groups = megatron_arg_groups(exp, launch_10b.plan, launch_10b.blend, launch_10b.run)
    assert all(g[0].startswith("--") and not any(v.startswith("--") for v in g[1:]) for g in groups)
    assert [w for g in groups for w in g] == launch_10b.argv


def test_s3_shard_prefixes_pass_through_with_megatrons_object_storage_flags(base):
    exp = experiment_from_overrides("exp-s3", base, {"data": {"blend": [{"shard_batch": "web-a", "weight": 1.0}]}})
    files = render(exp, vocab=VOCAB, shard_prefix=lambda batch: f"s3://mm-bucket/root/shards/{batch}/tokens")
    values = flag_values(files.argv)
    assert values["--data-path"] == ["1.0", "s3://mm-bucket/root/shards/web-a/tokens"]
    assert values["--object-storage-cache-path"] == [str(files.run.object_storage_cache)]
    assert values["--no-mmap-bin-files"] == []
    local = flag_values(render(exp, vocab=VOCAB, shard_prefix=lambda batch: f"/data/shards/{batch}/tokens").argv)
    assert "--object-storage-cache-path" not in local and "--no-mmap-bin-files" not in local
