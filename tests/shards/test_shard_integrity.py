"""Shard integrity: the index against itself and its .bin, the manifest token_shards publishes last, the
blocking `shard_files_consistent` check on real files, and staging that killed writes cannot leave behind."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checks.shards import shard_files_consistent
from mm_assets.partitions import crawl_batches
from mm_assets.shards.assets import shard_manifest, token_shards
from mm_assets.shards.indexed import bin_path, idx_path, index_problems, write_shard
from mm_assets.shards.manifest import ShardManifest, shard_problems
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import LockBusyError, sha256_file
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

REPO = Path(__file__).resolve().parents[2]
LAYOUT = VocabLayout.build(40, [])
HEADER = 34  # bytes before the lengths (indexed.py)


def publish(folder: Path, documents) -> Path:
    """A shard as token_shards leaves it: data, vocab.json, then manifest.json."""
    files = write_shard(folder / ArtifactLayout.SHARD_PREFIX, documents, eod_id=LAYOUT.eod_id)
    LAYOUT.write(folder / ArtifactLayout.SHARD_VOCAB)
    shard_manifest(folder, files, names=(ArtifactLayout.SHARD_VOCAB,)).write(folder)
    return folder / ArtifactLayout.SHARD_PREFIX


def write_metadata_rows(root: Path, batch: str, rows: int) -> None:
    """The batch's media_metadata.parquet with `rows` rows (only unique_id: the check counts rows)."""
    storage = StorageResource(root=str(root))
    path = storage.store.local_path(storage.layout.metadata_file(batch))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"unique_id": [f"demo_{i}" for i in range(rows)]}, schema=pa.schema([("unique_id", pa.string())])), path)


def docs(n: int = 5):
    return [np.array([*range(1, 4 + i), LAYOUT.eod_id]) for i in range(n)]


def flip_pointer(prefix: Path, sequence: int = 2) -> None:
    """Move one sequence's byte pointer by one token (the index keeps its size: only the values lie)."""
    data = bytearray(idx_path(prefix).read_bytes())
    n = int.from_bytes(data[18:26], "little")
    at = HEADER + 4 * n + 8 * sequence
    data[at:at + 8] = (int.from_bytes(data[at:at + 8], "little") + 4).to_bytes(8, "little")
    idx_path(prefix).write_bytes(bytes(data))


def test_a_published_shard_is_consistent_and_matches_its_manifest(tmp_path):
    prefix = publish(tmp_path / "s", docs())
    assert index_problems(prefix) == [] and shard_problems(prefix) == []
    manifest = ShardManifest.read(prefix.parent)
    assert (manifest.documents, set(manifest.files)) == (5, {"tokens.bin", "tokens.idx", ArtifactLayout.SHARD_VOCAB})
    assert manifest.files["tokens.bin"].sha256 == sha256_file(bin_path(prefix))
    assert manifest.files["tokens.idx"].bytes == idx_path(prefix).stat().st_size


def test_a_changed_pointer_is_found_and_named_with_both_hashes(tmp_path):
    prefix = publish(tmp_path / "s", docs())
    recorded = sha256_file(idx_path(prefix))
    flip_pointer(prefix)
    problems = shard_problems(prefix)
    assert any("sequence pointers differ" in p and "sequence 2 points at byte" in p for p in problems), problems
    (mismatch,) = [p for p in problems if "sha256 mismatch" in p]
    assert str(idx_path(prefix)) in mismatch and recorded in mismatch and sha256_file(idx_path(prefix)) in mismatch


def test_a_truncated_bin_says_truncated(tmp_path):
    prefix = publish(tmp_path / "s", docs())
    size = bin_path(prefix).stat().st_size
    os.truncate(bin_path(prefix), size - 8)
    (consistency,) = index_problems(prefix)
    assert consistency.startswith(f"{bin_path(prefix)}: truncated: {size - 8} bytes, the index needs {size}")
    assert any(f"truncated: {size - 8} bytes, expected {size}" in p for p in shard_problems(prefix))


def test_an_empty_shard_and_a_bad_document_index_are_refused(tmp_path):
    empty = publish(tmp_path / "empty", [])
    assert any("0 documents" in p for p in index_problems(empty))
    prefix = publish(tmp_path / "s", docs())
    data = bytearray(idx_path(prefix).read_bytes())
    data[-8:] = (2).to_bytes(8, "little")  # the last document boundary goes back
    idx_path(prefix).write_bytes(bytes(data))
    assert any("document index" in p and "must rise from 0 to the sequence count 5" in p for p in index_problems(prefix))


def test_a_shard_without_its_manifest_is_incomplete(tmp_path):
    prefix = publish(tmp_path / "s", docs())
    (prefix.parent / ArtifactLayout.SHARD_MANIFEST).unlink()
    assert any("manifest.json is missing" in p for p in shard_problems(prefix))
    assert shard_problems(prefix, manifest_required=False) == []


def _check(tmp_path: Path, batch: str) -> dg.AssetCheckEvaluation:
    """Run the blocking check alone on one partition, as the UI's "execute check" does."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    config = tmp_path / "configs" / "pipeline.yaml"
    config.write_text("storage: {root: data}\n")
    defs = dg.Definitions(assets=[token_shards], asset_checks=[shard_files_consistent], resources={
        "pipeline": PipelineConfigResource(path=str(config)), "storage": StorageResource(root=str(tmp_path / "data"))})
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={shard_files_consistent.check_key})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_batches.name, [batch])
        result = job.execute_in_process(instance=instance, tags={"dagster/partition": batch}, raise_on_error=False)
        (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


@pytest.mark.parametrize("damage", ["none", "no documents", "pointer", "truncated"])
def test_the_blocking_check_fails_on_each_kind_of_damage(tmp_path, damage):
    folder = tmp_path / "data" / "shards" / "b1"
    prefix = publish(folder, [] if damage == "no documents" else docs())
    write_metadata_rows(tmp_path / "data", "b1", 0 if damage == "none" else 5)
    if damage == "pointer":
        flip_pointer(prefix)
    elif damage == "truncated":
        os.truncate(bin_path(prefix), bin_path(prefix).stat().st_size - 4)
    evaluation = _check(tmp_path, "b1")
    problems = evaluation.metadata["problems"].value
    assert evaluation.passed == (damage == "none"), problems
    expected = {"none": "none", "no documents": "0 documents", "pointer": "pointers differ", "truncated": "truncated"}
    assert expected[damage] in problems


def test_an_empty_batch_may_have_an_empty_shard_that_no_consumer_accepts(tmp_path):
    """Every item a duplicate or failed: no metadata row, an empty shard, the check passes; the blend and the
    trainer still refuse the shard (shard_problems without allow_empty)."""
    prefix = publish(tmp_path / "data" / "shards" / "b1", [])
    write_metadata_rows(tmp_path / "data", "b1", 0)
    evaluation = _check(tmp_path, "b1")
    assert evaluation.passed and evaluation.metadata["metadata_rows"].value == 0
    assert any("0 documents" in p for p in shard_problems(prefix))


_KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from resources.storage import StorageResource

    storage = StorageResource(root=sys.argv[1])
    with storage.store.publish(storage.layout.shard_dir("b1"), what="shard b1") as staging:
        staging.mkdir()
        (staging / "tokens.bin").write_bytes(b"half a shard")
        print("writing", flush=True)
        if sys.argv[2] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        sys.stdin.read()  # hold the lock until the test closes stdin
""")


def _writer(root: Path, mode: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(root), mode], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == "writing\n"
    return proc


def test_a_killed_write_leaves_one_stable_folder_that_the_next_run_removes(tmp_path):
    storage = StorageResource(root=str(tmp_path / "data"))
    shards = storage.store.local_dir("shards")
    staging_root = storage.store.scratch / "shards"
    shards.mkdir(parents=True)
    legacy = [shards / ".staging-b1-4242", shards / ".b1.old-4242"]  # what the PID-named layout left
    others = [shards / ".staging-b1-4242-7", staging_root / "b1-4242"]  # batch b1-4242's, not b1's
    for folder in legacy + others:
        folder.mkdir(parents=True)
    proc = _writer(tmp_path / "data", "kill")
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert (staging_root / "b1" / "tokens.bin").read_bytes() == b"half a shard"
    with storage.store.publish(storage.layout.shard_dir("b1"), what="shard b1") as staging:  # the lock is free
        assert not staging.exists() and not any(p.exists() for p in legacy)
        staging.mkdir()
    assert all(p.is_dir() for p in others)
    assert storage.store.exists(storage.layout.shard_dir("b1")) and not (staging_root / "b1").exists()


def test_a_second_writer_of_the_same_shard_is_refused_while_the_first_lives(tmp_path):
    proc = _writer(tmp_path / "data", "hold")
    try:
        storage = StorageResource(root=str(tmp_path / "data"))
        with pytest.raises(LockBusyError, match="shard b1 is being written by another process"):
            with storage.store.publish(storage.layout.shard_dir("b1"), what="shard b1"):
                pass
    finally:
        proc.communicate("", timeout=30)
