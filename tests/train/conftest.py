"""Fixtures for the training tests: the golden files and the reference's 10B launch rendered once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mm_assets.shards.vocab import ShardVocab
from mm_assets.train.launch.config import TrainingConfig
from mm_assets.train.launch.experiment import load_experiment
from trainproject import golden_pipeline, render

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
