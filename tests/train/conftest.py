"""The local Slurm cluster for the training tests (scripts/slurm/start.sh, DESIGN.md §9).

`slurm_cluster` (session) runs start.sh, which reuses whatever already runs and installs the Debian packages on
a fresh machine (root needed), and at the end stops only the daemons this session's start.sh started. The
cluster's folder is $MM_SLURM_DIR (default /tmp/mm-slurm).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mm_assets.train.launch.config import ShardVocab, TrainingConfig
from mm_assets.train.launch.experiment import load_experiment
from trainproject import golden_pipeline, render

REPO = Path(__file__).resolve().parents[2]
START = REPO / "scripts" / "slurm" / "start.sh"
STOP = REPO / "scripts" / "slurm" / "stop.sh"


@dataclass(frozen=True)
class SlurmCluster:
    dir: Path

    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster (argv, no shell)."""
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=60, check=False)


def _recorded(path: Path) -> set[str]:
    return set(path.read_text().split("\n")) - {""} if path.exists() else set()


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    cluster = SlurmCluster(Path(os.environ.get("MM_SLURM_DIR", "/tmp/mm-slurm")))
    record = cluster.dir / "run" / "started"
    before = _recorded(record)
    proc = subprocess.run([str(START)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{START} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    ours = [line.split()[1] for line in _recorded(record) - before]
    yield cluster
    if ours:
        subprocess.run([str(STOP), *ours], capture_output=True, text=True, timeout=120, check=False)


# -- launch rendering: the golden files and the 10B example, shared by test_megatron_args and test_sbatch ----
GOLDEN = Path(__file__).resolve().parent / "golden"
VOCAB = ShardVocab(vocab_size=192611, eod_id=192603, pad_id=192604)


@pytest.fixture
def check_golden():
    """Compare rendered text with tests/train/golden/<name>; MM_UPDATE_GOLDEN=1 rewrites the file."""
    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if os.environ.get("MM_UPDATE_GOLDEN") == "1":
            path.write_text(text, encoding="utf-8")
        assert path.is_file(), f"{path} is missing: run with MM_UPDATE_GOLDEN=1 to create it"
        assert text == path.read_text(encoding="utf-8"), f"{name} differs from the golden file (MM_UPDATE_GOLDEN=1 to accept)"
    return check


@pytest.fixture(scope="module")
def base() -> TrainingConfig:
    """The golden base training config (the reference's 10B run)."""
    return golden_pipeline().training


@pytest.fixture(scope="module")
def launch_10b():
    return render(load_experiment(golden_pipeline(), "exp-10b-lr-1"), vocab=VOCAB)
