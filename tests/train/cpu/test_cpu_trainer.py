"""The CPU trainer end to end: the launch renderer's own argv for exp-tiny-cpu, our shards through Megatron's
GPTDataset, a falling loss in Megatron's log format, Megatron's checkpoint layout, an exact replay after a
resume, and a longer run on a new blend that resumes under Dagster Pipes.

Three trainer processes in all (~25 s on two cores): the first run, then the replay and the extension side by
side. Arguments and data errors are checked in-process (they fail before torch is imported).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dagster_pipes import encode_param

from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import ShardVocab, VocabLayout
from mm_assets.storage.paths import exclusive, sha256_file
from mm_assets.train.cpu import TrainerError
from mm_assets.train.cpu.args import build_parser, check_args
from mm_assets.train.cpu.data import parse_data_path
from mm_assets.train.cpu.run import main
from mm_assets.train.launch.experiment import load_experiment
from mm_assets.train.launch.megatron_args import MEGATRON_FLAGS
from mm_assets.train.megatron_log.stream import parse_log
from resources.storage import StorageResource
from trainproject import golden_pipeline, render

HERE = Path(__file__).parent
REPO = HERE.parents[2]
PERIOD = 16  # the pattern the model has to learn: 0, 1, ..., 15, 0, 1, ...
# A save killed while staging (this version's stable name, an earlier version's random one) or mid-publish.
KILLED_SAVE_LEFTOVERS = (".iter_0000100.staging", ".iter_0000100.k3x9q1", ".iter_0000050.old-4242")


def pattern_shard(folder: Path, layout: VocabLayout, phase: int) -> Path:
    """200 documents of the repeating pattern (150 tokens from a rotating start) + EOD, and the vocab layout."""
    ramp = np.tile(np.arange(PERIOD), 12)
    docs = [np.concatenate([ramp[(i + phase) % PERIOD :][:150], [layout.eod_id]]) for i in range(200)]
    write_shard(folder / "tokens", docs, eod_id=layout.eod_id)
    layout.write(folder / "vocab.json")
    return folder / "tokens"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cpu-pretrain")


@pytest.fixture(scope="module")
def layout() -> VocabLayout:
    return VocabLayout.build(40, [])  # 40 text ids + 8 specials: vocab 48, EOD 40, pad 41


@pytest.fixture(scope="module")
def shards(work, layout) -> tuple[Path, Path]:
    return pattern_shard(work / "shards" / "a", layout, 0), pattern_shard(work / "shards" / "b", layout, 5)


@pytest.fixture(scope="module")
def launch(work, layout, shards):
    """exp-tiny-cpu rendered exactly as the Slurm launch renders it, with its run folder under `work`."""
    exp = load_experiment(golden_pipeline(base_dir=work), "exp-tiny-cpu")
    return render(exp, StorageResource(root=str(work)), vocab=ShardVocab.from_layout(layout),
                  shard_prefix=lambda batch: str(shards[0]))


def value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def with_values(argv: list[str], **flags: str) -> list[str]:
    """`argv` with each `--flag-name` (given as flag_name=...) set to a new value (one word)."""
    out = list(argv)
    for name, new in flags.items():
        flag = "--" + name.replace("_", "-")
        i = out.index(flag)
        j = i + 1
        while j < len(out) and not out[j].startswith("--"):
            j += 1
        out[i + 1 : j] = [new]
    return out


def trainer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PIPES")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def start(launch, argv: list[str], **env: str) -> subprocess.Popen:
    program = [sys.executable, *launch.program[1:]]  # `python -m mm_assets.train.cpu`
    assert launch.program[1:] == ["-m", "mm_assets.train.cpu"]
    return subprocess.Popen([*program, *argv], cwd=REPO, env=trainer_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err[-3000:]}\n{out[-3000:]}"
    return out


@pytest.fixture(scope="module")
def first_run(launch):
    """The rendered launch as is: 100 iterations, checkpoints every 50, validation every 50."""
    out = finish(start(launch, launch.argv))
    return out, parse_log(out, seq_length=int(value(launch.argv, "--seq-length")))


@pytest.fixture(scope="module")
def second_stage(work, launch, first_run, shards):
    """Side by side: (1) the first run replayed from its middle checkpoint, as after a crash there; (2) the
    finished run extended by 20 iterations on a two-shard blend, under Dagster Pipes."""
    ckpt = Path(value(launch.argv, "--save"))
    iters, save_every = int(value(launch.argv, "--train-iters")), int(value(launch.argv, "--save-interval"))

    replay_dir = work / "replay"
    shutil.copytree(ckpt, replay_dir, ignore=shutil.ignore_patterns("data-cache"))
    shutil.rmtree(replay_dir / f"iter_{iters:07d}")
    (replay_dir / "latest_checkpointed_iteration.txt").write_text(str(save_every))
    for leftover in KILLED_SAVE_LEFTOVERS:  # what saves killed mid-way leave behind
        (replay_dir / leftover / "mp_rank_00").mkdir(parents=True)
    replay = start(launch, with_values(launch.argv, save=str(replay_dir), load=str(replay_dir)))

    extend_dir = work / "extend"
    shutil.copytree(ckpt, extend_dir, ignore=shutil.ignore_patterns("data-cache"))
    context, messages = work / "pipes-context.json", work / "pipes-messages.jsonl"
    context.write_text(json.dumps({
        "asset_keys": ["checkpoint"], "code_version_by_asset_key": None, "provenance_by_asset_key": None,
        "partition_key": "exp-tiny-cpu", "partition_key_range": None, "partition_time_window": None,
        "run_id": "test-run", "job_name": "train", "retry_number": 0, "extras": {},
    }))
    blend = f"0.5 {shards[0]} 0.5 {shards[1]}"  # Megatron's one-string form of --data-path
    extend_argv = with_values(launch.argv, save=str(extend_dir), load=str(extend_dir), data_path=blend,
                              train_iters=str(iters + 20))
    extend = start(launch, extend_argv, DAGSTER_PIPES_CONTEXT=encode_param({"path": str(context)}),
                   DAGSTER_PIPES_MESSAGES=encode_param({"path": str(messages)}))
    seq = int(value(launch.argv, "--seq-length"))
    replay_out, extend_out = finish(replay), finish(extend)
    pipes = [json.loads(line) for line in messages.read_text().splitlines()]
    return {
        "replay": parse_log(replay_out, seq_length=seq),
        "replay_out": replay_out,
        "replay_dir": replay_dir,
        "extend": parse_log(extend_out, seq_length=seq),
        "extend_dir": extend_dir,
        "pipes": pipes,
    }


# -- the launch's arguments ---------------------------------------------------------------------------------


def test_every_flag_the_launch_renders_is_accepted():
    known = build_parser()._option_string_actions
    assert sorted(MEGATRON_FLAGS - set(known)) == []


def test_the_rendered_tiny_launch_parses_cleanly(launch):
    args = build_parser().parse_args(launch.argv)
    problems, notices = check_args(args)
    assert problems == [] and notices == []
    assert (args.transformer_impl, args.distributed_backend, args.data_path[0]) == ("local", "gloo", "1.0")


# -- the first run ------------------------------------------------------------------------------------------


def logged_iterations(first: int, last: int, every: int) -> list[int]:
    """Megatron logs a run's first iteration and every multiple of --log-interval."""
    return sorted({first} | set(range(every * -(-first // every), last + 1, every)))


def test_loss_falls_in_megatron_log_lines(launch, first_run):
    out, log = first_run
    a = launch.argv
    iters, gbs, every = (int(value(a, f)) for f in ("--train-iters", "--global-batch-size", "--log-interval"))
    assert log.counts.malformed == 0
    assert [r.iteration for r in log.training] == logged_iterations(1, iters, every)
    assert [r.consumed_samples for r in log.training] == [gbs * r.iteration for r in log.training]
    losses = [r.loss for r in log.training]
    print("loss curve:", [(r.iteration, round(r.loss, 3)) for r in log.training[:: max(1, len(losses) // 10)]],
          "last", round(losses[-1], 3))
    assert losses[0] > 3.5  # ≈ ln(128): the untrained model spreads its guesses over the padded vocabulary
    assert losses[-1] < 0.25 * losses[0] and losses[-1] < 1.0
    # Warmup to --lr, then decay; at the end of --lr-decay-iters the rate is --min-lr.
    lrs = {r.iteration: r.lr for r in log.training}
    peak, warmup = float(value(a, "--lr")), int(value(a, "--lr-warmup-iters"))
    assert max(lrs.values()) == pytest.approx(peak) and (warmup not in lrs or lrs[warmup] == pytest.approx(peak))
    if int(value(a, "--lr-decay-iters")) == iters:
        assert lrs[iters] == pytest.approx(float(value(a, "--min-lr")))
    assert all(r.loss_scale == 1.0 and r.skipped_iterations == 0 and r.grad_norm > 0 for r in log.training)
    # Validation every --eval-interval, and once more at the end, kept apart from the training records.
    period = int(value(a, "--eval-interval"))
    assert [(v.iteration, v.final) for v in log.validation] == [
        *[(i, False) for i in range(period, iters + 1, period)], (iters, True)]
    assert log.validation[-1].loss < 1.0
    if value(a, "--split") == "990,9,1":
        assert "no test documents" in out  # 200 documents: 990,9,1 leaves the test split empty


def test_checkpoints_use_megatrons_layout(launch, first_run):
    import torch

    _, log = first_run
    ckpt = Path(value(launch.argv, "--save"))
    iters, save_every = int(value(launch.argv, "--train-iters")), int(value(launch.argv, "--save-interval"))
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text() == str(iters)
    saved = sorted(p.name for p in ckpt.iterdir() if p.name.startswith("iter_"))
    assert saved == [f"iter_{i:07d}" for i in range(save_every, iters + 1, save_every)]
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")]  # no staging folders left
    assert [c.iteration for c in log.checkpoints] == list(range(save_every, iters + 1, save_every))
    state = torch.load(ckpt / saved[-1] / "mp_rank_00" / "model_optim_rng.pt", weights_only=True)
    assert state["iteration"] == iters and state["checkpoint_version"] == 3.0
    assert state["args"]["consumed_train_samples"] == iters * int(value(launch.argv, "--global-batch-size"))
    assert {"model", "optimizer", "opt_param_scheduler", "rng_state"} <= set(state)


# -- resuming -----------------------------------------------------------------------------------------------


def test_resume_replays_the_run_exactly(launch, first_run, second_stage):
    """From the middle checkpoint, the same arguments give the same iterations, bit for bit."""
    _, first = first_run
    replay = second_stage["replay"]
    iters, save_every, every = (int(value(launch.argv, f))
                                for f in ("--train-iters", "--save-interval", "--log-interval"))
    assert "successfully loaded checkpoint" in second_stage["replay_out"]
    assert [r.iteration for r in replay.training] == logged_iterations(save_every + 1, iters, every)
    before = {r.iteration: r for r in first.training}
    for n, r in enumerate(replay.training):
        if r.iteration not in before:  # the resumed run's first line, between two of the first run's
            continue
        b = before[r.iteration]
        assert (r.consumed_samples, r.lr, r.grad_norm) == (b.consumed_samples, b.lr, b.grad_norm)
        # Megatron does not reset its loss average after a run's first log line: at --log-interval 1 the
        # resumed run's second line averages two iterations.
        expected = (b.loss + before[r.iteration - 1].loss) / 2 if every == 1 and n == 1 else b.loss
        assert r.loss == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert [v.loss for v in replay.validation] == [v.loss for v in first.validation if v.iteration > save_every]
    assert not [p.name for p in second_stage["replay_dir"].iterdir() if p.name.startswith(".")]
    for leftover in KILLED_SAVE_LEFTOVERS:
        assert f"NOTICE: removed {second_stage['replay_dir'] / leftover}, left by a save" in second_stage["replay_out"]


def test_a_second_trainer_on_the_same_checkpoint_folder_is_refused(launch, tmp_path):
    save = tmp_path / "ckpt"
    with exclusive(save / ".trainer.lock", what="held by the test"):
        proc = start(launch, with_values(launch.argv, save=str(save), load=str(save)))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-2000:]
    assert f"checkpoint folder {save} is being written by another process" in err


def test_a_longer_run_resumes_on_a_new_blend_under_pipes(launch, first_run, second_stage):
    _, first = first_run
    ext = second_stage["extend"]
    iters, gbs = int(value(launch.argv, "--train-iters")), int(value(launch.argv, "--global-batch-size"))
    every = int(value(launch.argv, "--log-interval"))
    assert [r.iteration for r in ext.training] == logged_iterations(iters + 1, iters + 20, every)
    assert [r.consumed_samples for r in ext.training] == [gbs * r.iteration for r in ext.training]
    assert all(r.train_iters == iters + 20 for r in ext.training)
    assert max(r.loss for r in ext.training) < first.training[0].loss / 3  # it kept what it learnt
    assert (second_stage["extend_dir"] / "latest_checkpointed_iteration.txt").read_text() == str(iters + 20)

    methods = [m["method"] for m in second_stage["pipes"]]
    # Megatron's lines go to the log only (the compute resource streams it to Dagster), never through Pipes too.
    assert methods[0] == "opened" and methods[-1] == "closed" and "log" not in methods
    assert second_stage["pipes"][-1]["params"].get("exception") is None
    assert len(ext.validation) == 1 and [c.iteration for c in ext.checkpoints] == [iters + 20]
    (mat,) = [m["params"] for m in second_stage["pipes"] if m["method"] == "report_asset_materialization"]
    meta = {k: v["raw_value"] for k, v in mat["metadata"].items()}
    assert mat["asset_key"] == "checkpoint"
    assert (meta["iterations"], meta["resumed_from_iteration"]) == (iters + 20, iters)
    assert meta["consumed_samples"] == gbs * (iters + 20)
    assert meta["final_loss"] == pytest.approx(ext.training[-1].loss, rel=1e-5)
    final = second_stage["extend_dir"] / f"iter_{iters + 20:07d}"
    assert meta["checkpoint_dir"] == str(final)
    weights = "mp_rank_00/model_optim_rng.pt"
    assert meta["checkpoint_sha256"] == {weights: sha256_file(final / weights)}
    assert meta["wall_time_s"] > 0 and meta["parameters"] > 100_000


# -- refusals -----------------------------------------------------------------------------------------------


def test_missing_shards_and_unsupported_values_exit_2_with_a_reason(launch, tmp_path, capsys):
    argv = with_values(launch.argv, data_path=str(tmp_path / "nowhere" / "tokens"))
    assert main(argv) == 2
    assert f"no shard at {tmp_path / 'nowhere' / 'tokens'} (.bin/.idx)" in capsys.readouterr().err
    assert main(with_values(launch.argv, tensor_model_parallel_size="2")) == 2
    assert "--tensor-model-parallel-size 2: the CPU trainer runs one process" in capsys.readouterr().err
    assert main([*launch.argv, "--bf16"]) == 2
    assert "computes in fp32" in capsys.readouterr().err
    assert main(with_values(launch.argv, vocab_size="50")) == 2
    assert "--vocab-size 50 but vocab.json says 48" in capsys.readouterr().err
    assert main([*launch.argv, "--no-such-flag"]) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    assert main(with_values(launch.argv, seq_length="many")) == 2
    assert "--seq-length: invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "words, expected",
    [
        (["/d/a"], (["/d/a"], None)),
        (["/d/a", "/d/b"], (["/d/a", "/d/b"], None)),
        (["0.7", "/d/a", "0.3", "/d/b"], (["/d/a", "/d/b"], [0.7, 0.3])),
        (["0.7 /d/a 0.3 /d/b"], (["/d/a", "/d/b"], [0.7, 0.3])),
        (["2", "/d/a"], (["/d/a"], [2.0])),
    ],
)
def test_data_path_forms(words, expected):
    assert parse_data_path(words) == expected


@pytest.mark.parametrize("words", [["0.7", "/d/a", "/d/b"], ["-1", "/d/a"], ["nan", "/d/a"], []])
def test_bad_data_paths_are_refused(words):
    with pytest.raises(TrainerError):
        parse_data_path(words)


def test_a_refused_launch_is_reported_to_dagster_under_pipes(launch, tmp_path, monkeypatch, capsys):
    context, messages = tmp_path / "context.json", tmp_path / "messages.jsonl"
    context.write_text(json.dumps({
        "asset_keys": ["checkpoint"], "code_version_by_asset_key": None, "provenance_by_asset_key": None,
        "partition_key": None, "partition_key_range": None, "partition_time_window": None, "run_id": "r",
        "job_name": None, "retry_number": 0, "extras": {},
    }))
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", encode_param({"path": str(context)}))
    monkeypatch.setenv("DAGSTER_PIPES_MESSAGES", encode_param({"path": str(messages)}))
    assert main(with_values(launch.argv, data_path=str(tmp_path / "gone"))) == 2
    assert "no shard at" in capsys.readouterr().err
    sent = [json.loads(line) for line in messages.read_text().splitlines()]
    assert [m["method"] for m in sent] == ["opened", "closed"]
    assert "no shard at" in sent[-1]["params"]["exception"]["message"]
