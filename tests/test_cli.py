"""The `mm` command line: registering batches, refusing bad input with exit code 2 and a clear message."""

import os
import subprocess
import sys

import pytest


@pytest.fixture
def mm(tmp_path):
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text("sources: {manifest_dir: sources, names: [youtube]}\nstorage: {root: data}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(cfg), *args],
                              env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    return run


def test_add_batch_registers_once_and_refuses_changes(mm, tmp_path):
    manifest = tmp_path / "sources" / "youtube" / "2026-11-29.txt"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("https://www.youtube.com/watch?v=dQw4w9WgXcQ\n")
    first = mm("crawl", "add-batch", str(manifest))
    assert first.returncode == 0 and "youtube-2026-11-29: registered, 1 URLs" in first.stdout
    again = mm("crawl", "add-batch", str(manifest))
    assert again.returncode == 0 and "already registered" in again.stdout
    manifest.write_text("https://www.youtube.com/watch?v=other\n")
    changed = mm("crawl", "add-batch", str(manifest))
    assert changed.returncode == 2 and "already registered with different content" in changed.stderr


def test_bad_input_exits_2_with_the_reason(mm, tmp_path):
    missing = mm("ingest", "youtube-nope")
    assert missing.returncode == 2 and "mm crawl add-batch" in missing.stderr
    no_catalog = mm("query", "SELECT 1")
    assert no_catalog.returncode == 2 and "materialize metadata_catalog first" in no_catalog.stderr
    bad_cfg = subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(tmp_path / "nope.yaml"),
                              "query", "SELECT 1"], capture_output=True, text=True, timeout=60)
    assert bad_cfg.returncode == 2 and "does not exist" in bad_cfg.stderr
