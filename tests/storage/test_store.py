"""The artifact layout and what is particular to the local store (its URLs are paths, staging on another
filesystem); the contract every store keeps is test_store_contract.py."""

import os
import tempfile
from pathlib import Path

import pytest

from mm_assets.storage.layout import EVERY, ArtifactLayout
from mm_assets.storage.paths import UnsafePathError
from mm_assets.storage.store import LocalStore

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
    assert LAYOUT.eval_metrics(EVERY) == "eval/*/metrics.parquet"
    assert LAYOUT.decontamination_report(EVERY) == "decontamination/*.parquet"
    assert LAYOUT.canary_prefix("../qa") == "canary/qa/tokens" and LAYOUT.eval_set("qa") == "eval_sets/qa"
    assert LAYOUT.eval_job_log("exp-1", "2026-11-29T04:00:00+00:00") == \
        "runs/exp-1/eval/logs/exp-1-eval-local-2026-11-29T040000+0000.log"
    assert LAYOUT.release_manifest("v1") == "releases/v1/manifest.json"
    for name in ("../x", "a/b", "", ".", ".."):
        with pytest.raises(UnsafePathError):
            LAYOUT.inside("raw/demo/x", name)


def test_the_local_stores_urls_are_paths_under_its_root(tmp_path):
    store = LocalStore(tmp_path / "root")
    assert not (tmp_path / "root").exists()  # nothing happens until something is written
    store.write_text("metadata/b1/hashes.parquet", "one")
    url = store.url("metadata/b1/hashes.parquet")
    assert url == str(tmp_path / "root" / "metadata" / "b1" / "hashes.parquet")
    assert store.local_path(store.key_of(url)) == Path(url)
    with pytest.raises(UnsafePathError):
        store.key_of(str(tmp_path / "elsewhere"))
    assert store.scratch == tmp_path / "root" / ".staging"


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
