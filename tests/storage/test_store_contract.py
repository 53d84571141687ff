"""The store's contract, run against LocalStore and against S3Store on a real S3 server (SeaweedFS): keys
confined to the root, files and folders that appear whole or not at all, one writer per key, local copies
that are the stored bytes, and working folders a job updates in place."""

from pathlib import Path

import pytest

from mm_assets.storage.layout import EVERY, ArtifactLayout
from mm_assets.storage.paths import LockBusyError, UnsafePathError
from mm_assets.storage.s3 import S3Store
from mm_assets.storage.s3_access import S3Access
from mm_assets.storage.store import LocalStore

LAYOUT = ArtifactLayout()


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "root")
    server = request.getfixturevalue("s3_server")
    root = request.getfixturevalue("s3_root")
    return S3Store(root, tmp_path / "scratch", S3Access(server.endpoint, str(server.credentials_file)))


def _folder(staged: Path, files: dict[str, bytes]) -> None:
    staged.mkdir()
    for name, data in files.items():
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        (staged / name).write_bytes(data)


def test_read_write_list_exists_and_urls(store):
    store.write_text("metadata/b1/hashes.parquet", "one")
    store.write_bytes("metadata/b2/hashes.parquet", b"two")
    store.write_bytes("metadata/b2/other.parquet", b"x")
    assert store.list(LAYOUT.hashes_file(EVERY)) == ["metadata/b1/hashes.parquet", "metadata/b2/hashes.parquet"]
    assert store.read_text("metadata/b1/hashes.parquet") == "one"
    assert store.exists("metadata/b2") and store.exists("metadata/b2/other.parquet")
    assert not store.exists("metadata/b3") and not store.exists("metadata/b2/none.parquet")
    url = store.url("metadata/b1/hashes.parquet")
    assert url.startswith(store.url_root + "/") and store.key_of(url) == "metadata/b1/hashes.parquet"
    with pytest.raises(FileNotFoundError, match="no artifact metadata/b3/hashes.parquet"):
        store.read_bytes("metadata/b3/hashes.parquet")
    for bad in ("../outside", "/etc/passwd", "a/../../b"):
        with pytest.raises(UnsafePathError):
            store.local_path(bad)
        with pytest.raises(UnsafePathError):
            store.write_bytes(bad, b"x")


def test_local_copies_hold_the_stored_bytes(store):
    with store.publish("shards/b1", last="manifest.json") as staged:
        _folder(staged, {"tokens.bin": b"bin", "tokens.idx": b"idx", "manifest.json": b"{}"})
    folder = store.local_dir("shards/b1")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "tokens.bin", "tokens.idx"]
    assert store.local_prefix("shards/b1/tokens") == folder / "tokens"
    assert store.local_path("shards/b1/tokens.bin").read_bytes() == b"bin"
    assert not store.local_path("shards/b1/none.bin").exists() and not store.local_dir("shards/b9").exists()


def test_a_published_file_or_folder_appears_whole_and_an_error_leaves_the_old_one(store):
    with store.publish("shards/b1", last="manifest.json") as staged:
        _folder(staged, {"tokens.bin": b"v1", "manifest.json": b"m1"})
        assert not store.exists("shards/b1")  # nothing visible while it is built
    with pytest.raises(RuntimeError):
        with store.publish("shards/b1", last="manifest.json") as staged:
            _folder(staged, {"tokens.bin": b"half"})
            raise RuntimeError("the writer failed")
    assert store.read_bytes("shards/b1/tokens.bin") == b"v1" and not staged.exists()
    with store.publish("shards/b1", last="manifest.json") as staged:
        _folder(staged, {"other.bin": b"v2", "manifest.json": b"m2"})
    assert sorted(p.name for p in store.local_dir("shards/b1").iterdir()) == ["manifest.json", "other.bin"]  # whole
    assert store.read_bytes("shards/b1/manifest.json") == b"m2"
    with store.publish("catalog/metadata.duckdb") as staged:
        staged.write_bytes(b"db")
    assert store.read_bytes("catalog/metadata.duckdb") == b"db"
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with store.publish("records/experiment_records.parquet"):
            pass
    assert not store.exists("records/experiment_records.parquet")


def test_one_writer_per_key(store):
    with store.publish("shards/b1", what="shard b1") as staged:
        with pytest.raises(LockBusyError, match="shard b1 is being written by another process"):
            with store.publish("shards/b1", what="shard b1"):
                pass
        with store.publish("shards/b2") as other:  # another key is free
            _folder(other, {"a": b"a"})
        _folder(staged, {"a": b"a"})
    assert store.exists("shards/b1") and store.exists("shards/b2")


def test_a_working_folder_is_updated_in_place_and_kept(store):
    run = LAYOUT.run_dir("exp-1")
    with store.working_dir(run) as folder:
        assert folder == store.working_path(run)
        (folder / "checkpoints" / "iter_0000001").mkdir(parents=True)
        (folder / "checkpoints" / "iter_0000001" / "model.pt").write_bytes(b"w1")
        (folder / "checkpoints" / LAYOUT.CHECKPOINT_TRACKER).write_text("1")
        (folder / "pipes").mkdir()
        (folder / "pipes" / "messages.jsonl").write_text("{}")  # local only: never stored
    assert store.read_text(LAYOUT.run_checkpoints("exp-1") + "/" + LAYOUT.CHECKPOINT_TRACKER) == "1"
    assert store.list("runs/exp-1/checkpoints/*/model.pt") == ["runs/exp-1/checkpoints/iter_0000001/model.pt"]
    assert store.exists("runs/exp-1/pipes/messages.jsonl") == isinstance(store, LocalStore)
    with store.working_dir(run) as folder:  # the next job: the checkpoint moved aside, a new one saved
        (folder / "checkpoints" / "iter_0000001").rename(folder / "checkpoints" / "old")
        (folder / "checkpoints" / LAYOUT.CHECKPOINT_TRACKER).write_text("2")
    assert store.list("runs/exp-1/checkpoints/*/model.pt") == ["runs/exp-1/checkpoints/old/model.pt"]
    assert store.read_text(LAYOUT.run_checkpoints("exp-1") + "/" + LAYOUT.CHECKPOINT_TRACKER) == "2"
