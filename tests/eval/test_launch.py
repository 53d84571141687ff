"""The evaluator's Slurm script: one task, one GPU when the experiment trains on GPUs, values checked or quoted."""

import pytest

from mm_assets.eval.launch import render_eval_sbatch
from mm_assets.project import PROJECT_ROOT
from mm_assets.train.config import LaunchConfigError, load_experiment, read_training_base

BASE = read_training_base(PROJECT_ROOT / "tests" / "train" / "golden" / "base_training.yaml")
EXPERIMENTS = PROJECT_ROOT / "configs" / "experiments"
COMMAND = ["python", "-m", "mm_assets.eval.evaluate", "--plan", "/runs/a b/plan.json"]


def test_gpu_experiment_gets_one_gpu_and_its_allocation():
    exp = load_experiment("exp-10b-lr-1", BASE, experiments_dir=EXPERIMENTS)
    script = render_eval_sbatch(exp, COMMAND)
    assert "#SBATCH --job-name=exp-10b-lr-1-eval" in script and "#SBATCH --gres=gpu:1" in script
    assert "#SBATCH --nodes=1" in script and "#SBATCH --ntasks=1" in script
    assert f"#SBATCH --time={exp.training.cluster.time_limit}" in script
    assert "    '/runs/a b/plan.json'" in script and script.rstrip().endswith('exec "${PROGRAM[@]}"')


def test_cpu_experiment_has_no_gres_and_keeps_its_env():
    exp = load_experiment("exp-tiny-cpu", BASE, experiments_dir=EXPERIMENTS)
    script = render_eval_sbatch(exp, COMMAND)
    assert "--gres" not in script and "#SBATCH --cpus-per-task=2" in script
    assert "export OMP_NUM_THREADS=1" in script


def test_values_that_cannot_go_on_an_sbatch_line_are_refused():
    exp = load_experiment("exp-tiny-cpu", BASE, experiments_dir=EXPERIMENTS)
    bad = exp.training.model_copy(update={"cluster": exp.training.cluster.model_copy(update={"job_name": "a b"})})
    with pytest.raises(LaunchConfigError, match="cluster.job_name='a b-eval' cannot go on an #SBATCH line"):
        render_eval_sbatch(type(exp)(exp.id, bad, exp.overrides, exp.key_changes, exp.path, exp.base_dir), COMMAND)
