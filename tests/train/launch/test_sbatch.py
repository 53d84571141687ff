"""The sbatch script: golden file, `bash -n`, no backslash continuations, and no config value can change it.

`#SBATCH` values cannot be quoted (sbatch reads them without a shell), so hostile ones must be refused with
their key; body values are quoted, so hostile ones must arrive intact as single argv items. The second is
checked by running the script with stand-ins for `srun` and `scontrol` that record what they were given.
Regenerate golden files with `MM_UPDATE_GOLDEN=1 pytest tests/train`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from mm_assets.config.base import ConfigError
from mm_assets.shards.vocab import ShardVocab
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.experiment import experiment_from_overrides, load_experiment
from mm_assets.train.launch.sbatch import check_sbatch_value
from resources.storage import StorageResource
from trainproject import golden_pipeline, render

HERE = Path(__file__).parent
GOLDEN = HERE.parent / "golden"
VOCAB = ShardVocab(vocab_size=192611, eod_id=192603, pad_id=192604)
SLURM_ENV = {"SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2", "SLURM_JOB_ID": "77"}






@pytest.fixture(scope="module")
def launch_tiny(base):
    exp = load_experiment(golden_pipeline(), "exp-tiny-cpu")
    return render(exp, vocab=VOCAB, shard_prefix=lambda b: f"/shards/{b}/shard")


def bash_n(script: str, tmp_path: Path) -> None:
    path = tmp_path / "check.sbatch"
    path.write_text(script, encoding="utf-8")
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def run_script(script: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """Run the script as Slurm would on the first node; return srun's argv and environment."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    argv_file, env_file = tmp_path / "srun.argv", tmp_path / "srun.env"
    (bindir / "srun").write_text(
        f"#!/bin/bash\nprintf '%s\\0' \"$@\" > {shlex.quote(str(argv_file))}\nenv -0 > {shlex.quote(str(env_file))}\n"
    )
    (bindir / "scontrol").write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] || exit 3\nprintf "node-a\\nnode-b\\n"\n')
    for tool in ("srun", "scontrol"):
        (bindir / tool).chmod(0o755)
    script_path = tmp_path / "job.sbatch"
    script_path.write_text(script, encoding="utf-8")
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), **SLURM_ENV}
    result = subprocess.run(["bash", str(script_path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv = argv_file.read_bytes().split(b"\0")[:-1]
    pairs = (e.split(b"=", 1) for e in env_file.read_bytes().split(b"\0") if b"=" in e)
    return [a.decode() for a in argv], {k.decode(): v.decode() for k, v in pairs}


def array_words(script: str, name: str) -> list[str]:
    """The words of `NAME=( ... )` as bash would split them (shlex, POSIX rules, comments dropped)."""
    m = re.search(rf"^{name}=\(\n(.*?)^\)$", script, re.S | re.M)
    assert m, f"no {name} array"
    return shlex.split(m.group(1), comments=True)


# -- the rendered script ----------------------------------------------------------------------------------


def test_10b_script_matches_the_golden_file(launch_10b, check_golden):
    check_golden("exp-10b-lr-1.sbatch", launch_10b.sbatch)


def test_script_structure(launch_10b, launch_tiny, tmp_path):
    for launch in (launch_10b, launch_tiny):
        script = launch.sbatch
        bash_n(script, tmp_path)
        lines = script.splitlines()
        assert lines[0] == "#!/bin/bash"
        # No line continuations at all, so no `# comment` can ever follow a backslash.
        assert not [line for line in lines if line.rstrip().endswith("\\")]
        # sbatch stops reading #SBATCH at the first command: every directive comes before it.
        first_command = next(i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#"))
        assert lines[first_command] == "set -euo pipefail"
        assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
        assert "export CUDA_DEVICE_MAX_CONNECTIONS=1" in lines
        assert array_words(script, "MEGATRON_ARGS") == launch.argv
        assert "#SBATCH --ntasks-per-node=1" in lines
    assert "#SBATCH --gres=gpu:8" in launch_10b.sbatch.splitlines()
    assert "#SBATCH --exclusive" in launch_10b.sbatch.splitlines()
    assert "--gres" not in launch_tiny.sbatch and "#SBATCH --exclusive" not in launch_tiny.sbatch
    assert "GAS" not in launch_10b.sbatch


def test_10b_script_runs_torchrun_on_every_node(launch_10b, tmp_path):
    argv, env = run_script(launch_10b.sbatch, tmp_path)
    assert argv == [
        "--nodes=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--export=ALL",
        "--cpus-per-task=96",
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "--rdzv-id=77",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node-a:29500",
        "/lustre/mm-pretrain/src/Megatron-LM/pretrain_gpt.py",
        *launch_10b.argv,
    ]
    assert env["CUDA_DEVICE_MAX_CONNECTIONS"] == "1"
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("node-a", "29500")
    assert env["NCCL_IB_TIMEOUT"] == "22"


def test_cpu_script_runs_the_configured_entrypoint(launch_tiny, tmp_path):
    argv, env = run_script(launch_tiny.sbatch, tmp_path)
    expected_head = ["--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1", "--export=ALL", "--cpus-per-task=2"]
    assert argv == [*expected_head, "python", "-m", "mm_assets.train.cpu", *launch_tiny.argv]
    assert env["OMP_NUM_THREADS"] == "1"
    assert launch_tiny.program == ["python", "-m", "mm_assets.train.cpu"]


def test_launch_files_are_written(launch_10b, tmp_path):
    paths = launch_10b.write(tmp_path / "out")
    assert paths["args"].read_text() == launch_10b.args_text
    assert paths["sbatch"].read_text() == launch_10b.sbatch
    assert os.access(paths["sbatch"], os.X_OK)
    assert launch_10b.run.logs in launch_10b.run.to_create


# -- hostile values -----------------------------------------------------------------------------------------


def evil(marker: Path) -> str:
    m = shlex.quote(str(marker))
    return f"$(touch {m}); `touch {m}` ' \" \\ ; & | > < * ? ~ {{a,b}} !x #c $HOME ${{IFS}} %s"


def test_body_values_are_quoted_and_cannot_change_the_script(base, tmp_path):
    marker = tmp_path / "pwned"
    bad = evil(marker)
    exp = experiment_from_overrides(
        "t",
        base,
        {
            "cluster": {
                "megatron_path": f"/opt/Mega tron/{bad}",
                "torchrun": ["/usr/bin/env", f"TAG={bad}", "torchrun"],
                "container_image": f"img;{bad}",
                "container_mounts": ["/a:/b", bad],
                "env": {"HOSTILE": f"{bad}\nsecond line"},
                "cpus_per_task": None,
            },
            "data": {
                "blend": [{"prefix": f"/data/{bad}", "weight": 1}],
                "data_cache_path": f"/cache/{bad}",
            },
        },
    )
    launch = render(exp, vocab=VOCAB)
    bash_n(launch.sbatch, tmp_path)
    assert array_words(launch.sbatch, "MEGATRON_ARGS") == launch.argv
    argv, env = run_script(launch.sbatch, tmp_path)
    assert not marker.exists()
    assert argv == [
        "--nodes=2",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=1",
        "--export=ALL",
        f"--container-image=img;{bad}",
        f"--container-mounts=/a:/b,{bad}",
        "/usr/bin/env",
        f"TAG={bad}",
        "torchrun",
        "--nnodes=2",
        "--nproc-per-node=8",
        "--rdzv-id=77",
        "--rdzv-backend=c10d",
        "--rdzv-endpoint=node-a:29500",
        f"/opt/Mega tron/{bad}/pretrain_gpt.py",
        *launch.argv,
    ]
    assert f"/data/{bad}" in launch.argv and f"/cache/{bad}" in launch.argv
    assert env["HOSTILE"] == f"{bad}\nsecond line"


def test_entrypoint_arguments_with_newlines_stay_one_word(base, tmp_path):
    marker = tmp_path / "pwned"
    # A newline then a command: if quoting ever broke, the payload only creates the marker.
    program = ["python3", "-c", f"import sys\n# {evil(marker)}", f"{evil(marker)}\ntouch {marker}"]
    exp = experiment_from_overrides(
        "t",
        base,
        {
            "cluster": {"entrypoint": program, "use_torchrun": False, "gpus_per_node": 0, "nodes": 1, "gpu_type": None},
            "parallelism": {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1},
            "model": {"num_layers": 2},
            "schedule": {"global_batch_size": 8},
            "precision": {"recompute": {"granularity": "none", "method": None, "num_layers": None}},
        },
    )
    launch = render(exp, vocab=VOCAB)
    bash_n(launch.sbatch, tmp_path)
    argv, _ = run_script(launch.sbatch, tmp_path)
    assert not marker.exists()
    assert argv[4:] == [*program, *launch.argv]
    assert "LAUNCHER" not in launch.sbatch


@pytest.mark.parametrize(
    "key, value",
    [
        ("job_name", "x;touch y"),
        ("job_name", "a b"),
        ("job_name", "run\n#SBATCH --uid=0"),
        ("job_name", "$(id)"),
        ("account", "acct`id`"),
        ("account", "a b"),
        ("partition", "gpu\n#SBATCH --uid=0"),
        ("partition", "gpu;h100"),
        ("qos", "q'x"),
        ("time_limit", "01:00:00\n#SBATCH --uid=0"),
        ("time_limit", "01:00:00 --uid=0"),
    ],
)
def test_hostile_sbatch_values_are_rejected_with_their_key(base, key, value):
    with pytest.raises(ConfigError) as err:
        experiment_from_overrides("t", base, {"cluster": {key: value}}, source="exp.yaml")
    assert f"training.cluster.{key}" in str(err.value)


@pytest.mark.parametrize("root", ["/tmp/a b", "/tmp/$(id)", "/tmp/%x", "/tmp/a\nb", "/tmp/'q'", "my project $(id)"])
def test_a_run_folder_that_cannot_go_on_an_sbatch_line_is_rejected(base, tmp_path, root):
    exp = experiment_from_overrides("t", base, {})
    with pytest.raises(LaunchConfigError) as err:
        render(exp, StorageResource(root=str(tmp_path / root)), vocab=VOCAB)
    assert "cannot go on an #SBATCH line" in str(err.value) and "storage.root" in str(err.value)


def test_check_sbatch_value():
    assert check_sbatch_value("cluster.account", "mm-pretrain") == "mm-pretrain"
    for bad in ["", "a b", "a\nb", "a;b", "$(x)", "`x`", "'x'", '"x"', "a#b", "a%j"]:
        with pytest.raises(LaunchConfigError, match=r"cluster.account=.*cannot go on an #SBATCH line"):
            check_sbatch_value("cluster.account", bad)


def test_launch_errors_are_collected_across_modules(base):
    exp = experiment_from_overrides(
        "t",
        base,
        {"cluster": {"nodes": 3}, "data": {"blend": [{"shard_batch": "web-1", "weight": 1}]}},
    )
    with pytest.raises(LaunchConfigError) as err:
        render(exp, vocab=VOCAB)
    problems = err.value.problems
    assert any(p.startswith("world size") for p in problems)
    assert any("data.blend.0.shard_batch=web-1: no shard resolver" in p for p in problems)
    assert "experiment t" in str(err.value)
