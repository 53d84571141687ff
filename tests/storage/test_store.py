"""The artifact layout and the local store: keys confined to the root, files and folders that appear whole or
not at all, one writer per key, and what a killed writer left removed by the next."""

import os
import tempfile
from pathlib import Path

import pytest

from mm_assets.config.base import ConfigError
from mm_assets.storage.layout import EVERY, ArtifactLayout
from mm_assets.storage.paths import LockBusyError, UnsafePathError
from mm_assets.storage.store import LocalStore, open_store

LAYOUT = ArtifactLayout()


def test_keys_are_relative_sanitised_and_name_every_artifact():
    assert LAYOUT.shard_bin("demo-site") == "shards/demo-site/tokens.bin"
    assert LAYOUT.shard_prefix("demo-site") == "shards/demo-site/tokens"
    assert LAYOUT.item_dir("demo", "../../etc/passwd") == "raw/demo/etc_passwd"
    assert LAYOUT.item_record("raw/demo/x") == "raw/demo/x/item.json"
    assert LAYOUT.metadata_file("web-a") == "metadata/web-a/media_metadata.parquet"
    assert LAYOUT.hashes_file(EVERY) == "metadata/*/hashes.parquet"
    assert LAYOUT.batch_of(LAYOUT.hashes_file("web-a")) == "web-a"
    assert LAYOUT.launch_file("exp-1", "sbatch") == "runs/exp-1/launch/exp-1.sbatch"
    assert LAYOUT.run_checkpoints("exp-1") == "runs/exp-1/checkpoints"
    assert LAYOUT.local_job_log("exp-1", "2026-11-29T04:00:00+00:00") == \
        "runs/exp-1/logs/exp-1-local-2026-11-29T040000+0000.log"
    assert LAYOUT.token_cache_entry("audio", "ab" + "0" * 62) == f"cache/tokens/audio/ab/ab{'0' * 62}.codes"
    assert LAYOUT.eval_report("exp-1") == "eval/exp-1/report.json"
    assert LAYOUT.release_manifest("v1") == "releases/v1/manifest.json"
    for name in ("../x", "a/b", "", ".", ".."):
        with pytest.raises(UnsafePathError):
            LAYOUT.inside("raw/demo/x", name)


def test_the_local_store_reads_writes_lists_and_maps_urls(tmp_path):
    store = LocalStore(tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing happens until something is written
    store.write_text("metadata/b1/hashes.parquet", "one")
    store.write_bytes("metadata/b2/hashes.parquet", b"two")
    assert store.list(LAYOUT.hashes_file(EVERY)) == ["metadata/b1/hashes.parquet", "metadata/b2/hashes.parquet"]
    assert store.read_text("metadata/b1/hashes.parquet") == "one" and store.exists("metadata/b2")
    url = store.url("metadata/b1/hashes.parquet")
    assert url == str(tmp_path / "root" / "metadata" / "b1" / "hashes.parquet")
    assert store.key_of(url) == "metadata/b1/hashes.parquet" and store.local_path(store.key_of(url)) == Path(url)
    with pytest.raises(FileNotFoundError, match="no artifact metadata/b3/hashes.parquet"):
        store.read_bytes("metadata/b3/hashes.parquet")
    for bad in ("../outside", "/etc/passwd", "a/../../b"):
        with pytest.raises(UnsafePathError):
            store.local_path(bad)
    with pytest.raises(UnsafePathError):
        store.key_of(str(tmp_path / "elsewhere"))
    assert store.scratch == tmp_path / "root" / ".staging"


def test_a_published_file_or_folder_appears_whole_and_an_error_leaves_the_old_one(tmp_path):
    store = LocalStore(tmp_path / "root")
    with store.publish("shards/b1") as staged:
        staged.mkdir()
        (staged / "tokens.bin").write_bytes(b"v1")
        assert not store.exists("shards/b1")  # nothing visible while it is built
    with pytest.raises(RuntimeError):
        with store.publish("shards/b1") as staged:
            staged.mkdir()
            (staged / "tokens.bin").write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert store.read_bytes("shards/b1/tokens.bin") == b"v1" and not staged.exists()
    with store.publish("shards/b1") as staged:
        staged.mkdir()
        (staged / "other.bin").write_bytes(b"v2")
    assert sorted(p.name for p in store.local_dir("shards/b1").iterdir()) == ["other.bin"]  # replaced whole
    with store.publish("catalog/metadata.duckdb") as staged:
        staged.write_bytes(b"db")
    assert store.read_bytes("catalog/metadata.duckdb") == b"db"
    assert [p for p in store.scratch.rglob("*") if p.is_file()] == []  # no staging or lock file left
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with store.publish("records/experiment_records.parquet"):
            pass


def test_one_writer_per_key(tmp_path):
    store = LocalStore(tmp_path / "root")
    with store.publish("shards/b1", what="shard b1") as staged:
        with pytest.raises(LockBusyError, match="shard b1 is being written by another process"):
            with store.publish("shards/b1", what="shard b1"):
                pass
        with store.publish("shards/b2") as other:  # another key is free
            other.mkdir()
        staged.mkdir()
    assert store.exists("shards/b1") and store.exists("shards/b2")


def test_staging_on_another_filesystem_is_copied_into_place(tmp_path):
    if not Path("/dev/shm").is_dir() or os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a scratch folder on another filesystem (/dev/shm)")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as scratch:
        store = LocalStore(tmp_path / "root", scratch)
        with store.publish("shards/b1") as staged:
            staged.mkdir()
            (staged / "tokens.bin").write_bytes(b"v1")
        with store.publish("crawl/b1/items.parquet") as staged:
            staged.write_bytes(b"ledger")
        assert store.read_bytes("shards/b1/tokens.bin") == b"v1" and store.read_text("crawl/b1/items.parquet") == "ledger"
        assert sorted(p.name for p in (tmp_path / "root" / "shards").iterdir()) == ["b1"]


def test_object_storage_is_refused_until_it_is_wired_in():
    with pytest.raises(ConfigError, match="storage.root 's3://bucket/prefix'"):
        open_store("s3://bucket/prefix")
