"""The CPU trainer's shards on object storage (SeaweedFS), read as Megatron-LM reads them: the `.idx` cached by
megatron-core's cache_index_file under --object-storage-cache-path, the `.bin` by ranged GETs, with the keys
and endpoint a job's environment holds; checked against the shard's manifest first, and a refused key is one
line that names the endpoint and never a key."""

from __future__ import annotations

import argparse
import warnings

import boto3
import numpy as np
import pytest

from mm_assets.shards.assets import write_shard_folder
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3 import S3Store
from mm_assets.storage.s3_access import S3Access
from mm_assets.train.cpu import TrainerError
from mm_assets.train.cpu.object_storage import local_prefixes

LAYOUT = ArtifactLayout()


@pytest.fixture
def s3_shard(s3_server, s3_root, tmp_path, monkeypatch):
    """A shard of 5 documents published on S3, and a job's environment (credentials file path + endpoint)."""
    store = S3Store(s3_root, tmp_path / "scratch", S3Access(s3_server.endpoint, str(s3_server.credentials_file)))
    layout = VocabLayout.build(40, [])
    docs = [np.array([*range(i, i + 7), layout.eod_id], dtype=np.int32) for i in range(5)]
    with store.publish(LAYOUT.shard_dir("b1"), last=LAYOUT.SHARD_MANIFEST) as staged:
        write_shard_folder(staged, layout, [f"demo_{i}" for i in range(5)], docs)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(s3_server.credentials_file))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # boto3 keeps the keys it first read
    args = argparse.Namespace(object_storage_cache_path=str(tmp_path / "object-storage-cache"), mmap_bin_files=False)
    return store, store.url(LAYOUT.shard_prefix("b1")), docs, args


def test_an_s3_shard_is_checked_then_read_by_megatron_core(s3_shard):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets.indexed_dataset import IndexedDataset
        from megatron.core.datasets.object_storage_utils import ObjectStorageConfig
    store, prefix, docs, args = s3_shard
    local, problems = local_prefixes(args, [prefix])
    assert problems == []
    assert local[prefix] == f"{args.object_storage_cache_path}/{prefix.removeprefix('s3://')}"  # megatron's path
    dataset = IndexedDataset(prefix, mmap=False,
                             object_storage_config=ObjectStorageConfig(path_to_idx_cache=args.object_storage_cache_path))
    assert [list(dataset[i]) for i in range(len(dataset))] == [list(d) for d in docs]


def test_a_changed_bin_an_mmap_launch_and_a_refused_key_are_each_one_reason(s3_shard, s3_server, tmp_path, monkeypatch):
    store, prefix, _, args = s3_shard
    with pytest.raises(TrainerError, match="s3:// prefixes are read without mmap: pass --no-mmap-bin-files"):
        local_prefixes(argparse.Namespace(**{**vars(args), "mmap_bin_files": True}), [prefix])
    store.write_bytes(LAYOUT.shard_bin("b1"), store.read_bytes(LAYOUT.shard_bin("b1"))[:-4] + b"\0\0\0\0")
    _, problems = local_prefixes(args, [prefix])
    assert len(problems) == 1 and problems[0].startswith(f"{prefix}.bin: sha256 ") and "the manifest" in problems[0]

    key, secret = s3_server.keys
    wrong = tmp_path / "wrong-credentials"
    wrong.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = not-{secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(wrong))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with pytest.raises(TrainerError) as err:
        local_prefixes(args, [prefix])
    assert str(err.value).startswith(f"--data-path: cannot read {prefix.rsplit('/', 1)[0]}/")
    assert f"from object storage at {s3_server.endpoint}: the credentials were refused (403): check the keys in " \
        f"{wrong} (compute.credentials_file)" in str(err.value)
    assert secret not in str(err.value) and key not in str(err.value)
