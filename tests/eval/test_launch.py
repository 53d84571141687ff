"""The evaluator's Slurm script: one task, one GPU when the experiment trains on GPUs, values checked or quoted."""

from pathlib import Path

import pytest

from mm_assets.config.base import PROJECT_ROOT, read_yaml
from mm_assets.config.pipeline import parse_config
from mm_assets.eval.launch import eval_job, render_eval_sbatch
from mm_assets.train.launch.config import LaunchConfigError
from mm_assets.train.launch.experiment import load_experiment
from resources.storage import StorageResource

GOLDEN = PROJECT_ROOT / "tests" / "train" / "golden" / "base_training.yaml"
CFG = parse_config({**read_yaml(GOLDEN), "experiments_dir": str(PROJECT_ROOT / "configs" / "experiments")},
                   source=str(GOLDEN))
COMMAND = ["python", "-m", "mm_assets.eval.evaluate", "--plan", "/runs/a b/plan.json"]
LOG = Path("/lustre/eval/x/logs/slurm-%j.out")


def test_gpu_experiment_gets_one_gpu_and_its_allocation():
    exp = load_experiment(CFG, "exp-10b-lr-1")
    script = render_eval_sbatch(exp, COMMAND, LOG)
    assert "#SBATCH --job-name=exp-10b-lr-1-eval" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks=1" in script
    assert f"#SBATCH --time={exp.training.cluster.time_limit}" in script
    assert "    '/runs/a b/plan.json'" in script and script.rstrip().endswith('exec "${PROGRAM[@]}"')
    assert "#SBATCH --output=/lustre/eval/x/logs/slurm-%j.out" in script


def test_cpu_experiment_has_no_gres_and_keeps_its_env():
    exp = load_experiment(CFG, "exp-tiny-cpu")
    script = render_eval_sbatch(exp, COMMAND, LOG)
    assert "--gres" not in script and "#SBATCH --cpus-per-task=2" in script
    assert "export OMP_NUM_THREADS=1" in script


def test_values_that_cannot_go_on_an_sbatch_line_are_refused():
    exp = load_experiment(CFG, "exp-tiny-cpu")
    bad = exp.training.model_copy(update={"cluster": exp.training.cluster.model_copy(update={"job_name": "a b"})})
    with pytest.raises(LaunchConfigError, match="cluster.job_name='a b-eval' cannot go on an #SBATCH line"):
        render_eval_sbatch(type(exp)(exp.id, bad, exp.overrides, exp.key_changes, exp.path, exp.base_dir), COMMAND,
                           LOG)
    with pytest.raises(LaunchConfigError, match="eval log folder .under storage.root.='/a b' cannot go on an #SBATCH line"):
        render_eval_sbatch(exp, COMMAND, Path("/a b/slurm-%j.out"))


def test_the_job_names_its_files_by_the_layout(tmp_path):
    storage = StorageResource(root=str(tmp_path))
    exp = load_experiment(CFG, "exp-tiny-cpu")
    job = eval_job(exp, storage, COMMAND, {"OMP_NUM_THREADS": "1"}, "2026-12-01T10:00:00+00:00")
    assert job.name == "exp-tiny-cpu-eval" and job.command == COMMAND
    assert job.log == tmp_path / "runs" / "exp-tiny-cpu" / "eval" / "logs" / "exp-tiny-cpu-eval-local-2026-12-01T100000+0000.log"
    assert job.pipes_dir == tmp_path / "runs" / "exp-tiny-cpu" / "eval" / "pipes"
    assert f"#SBATCH --output={tmp_path}/runs/exp-tiny-cpu/eval/logs/slurm-%j.out" in job.sbatch
    assert (tmp_path / "runs" / "exp-tiny-cpu" / "eval" / "logs").is_dir()  # Slurm opens --output before the script runs
