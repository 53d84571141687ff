"""Shards on object storage, read the way Megatron-LM reads them, and checked first as a local shard is.

For an `s3://` prefix Megatron-LM (with `--object-storage-cache-path DIR --no-mmap-bin-files`) downloads the
`.idx` into DIR (megatron-core's `cache_index_file` at `get_index_cache_path`, on rank 0) and reads the `.bin`
by ranged GETs. The CPU trainer hands the same prefixes to GPTDataset and does the caching step itself, with
megatron-core's functions and boto3 client (keys from AWS_SHARED_CREDENTIALS_FILE, the endpoint from
AWS_ENDPOINT_URL: what a job's environment holds). Before training it fetches manifest.json and vocab.json
beside the cached `.idx` and compares the `.idx`, the vocabulary and a streamed sha256 of the `.bin` with the
manifest, as it does for a local shard. A shard on object storage must have its manifest.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

from mm_assets.digests import FileDigest, digest_mismatch
from mm_assets.shards.manifest import RECORDED_BY, ShardManifest
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3_access import CREDENTIALS_FILE_VAR, ENDPOINT_VAR, REFUSED_KEYS, is_s3_url
from mm_assets.train.cpu import TrainerError


def _megatron():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets import object_storage_utils
    return object_storage_utils


def _unreadable(url: str, err: Exception) -> TrainerError:
    """A boto3 failure as one line: the URL, the endpoint and what to check (never a key)."""
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code", "")) or type(err).__name__
    if code in ("404", "NoSuchKey"):
        return TrainerError(f"--data-path: no object {url} (materialize token_shards for that batch)")
    endpoint = os.environ.get(ENDPOINT_VAR, "AWS S3")
    keys = os.environ.get(CREDENTIALS_FILE_VAR, "the environment")
    why = f"the credentials were refused ({code})" if code in REFUSED_KEYS else code
    return TrainerError(f"--data-path: cannot read {url} from object storage at {endpoint}: {why}: check the "
                        f"keys in {keys} (compute.credentials_file) and {ENDPOINT_VAR}")


def _digest_of_object(client, bucket: str, key: str) -> FileDigest:
    """sha256 and size of an object, streamed (the .bin is read by ranged GETs later, never stored here)."""
    sha, size = hashlib.sha256(), 0
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in iter(lambda: body.read(1 << 20), b""):
        sha.update(chunk)
        size += len(chunk)
    return FileDigest(sha.hexdigest(), size)


def fetch_shard(prefix: str, cache_dir: Path) -> tuple[Path, list[str]]:
    """(the local prefix in `cache_dir` whose .idx, manifest.json and vocab.json are cached, the shard's
    problems against its manifest); TrainerError when it cannot be read at all."""
    import boto3
    import botocore.exceptions

    osu = _megatron()
    cfg = osu.ObjectStorageConfig(path_to_idx_cache=str(cache_dir))
    idx_url = f"{prefix}.idx"
    local_idx = Path(osu.get_index_cache_path(idx_url, cfg))
    local = local_idx.with_name(local_idx.name[:-len(".idx")])
    bucket, key = osu.parse_s3_path(prefix)
    folder = key.rsplit("/", 1)[0]
    client = boto3.client("s3")
    local_idx.parent.mkdir(parents=True, exist_ok=True)
    url = f"s3://{bucket}/{folder}/{ArtifactLayout.SHARD_MANIFEST}"
    try:
        for name in (ArtifactLayout.SHARD_MANIFEST, ArtifactLayout.SHARD_VOCAB):
            url = f"s3://{bucket}/{folder}/{name}"
            client.download_file(bucket, f"{folder}/{name}", str(local_idx.parent / name))
        url = idx_url
        osu.cache_index_file(idx_url, str(local_idx))  # megatron-core's rank-0 step
        url = f"{prefix}.bin"
        bin_digest = _digest_of_object(client, bucket, f"{key}.bin")
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
        raise _unreadable(url, err) from None
    try:
        manifest = ShardManifest.read(local.parent)
        bin_name, idx_name = f"{local.name}.bin", local_idx.name
        expected_bin = manifest.files[bin_name]
        expected_idx = manifest.files[idx_name]
    except (ValueError, KeyError) as err:
        return local, [f"{prefix}: {err}"]
    problems = [m for name, d in ((idx_name, expected_idx), (ArtifactLayout.SHARD_VOCAB, manifest.files.get(ArtifactLayout.SHARD_VOCAB)))
                if d is not None and (m := digest_mismatch(local.parent / name, d, recorded_by=RECORDED_BY))]
    if bin_digest != expected_bin:
        problems.append(f"{prefix}.bin: sha256 {bin_digest.sha256}, {bin_digest.bytes} bytes; the manifest "
                        f"(recorded by {RECORDED_BY}) says {expected_bin.sha256}, {expected_bin.bytes} bytes")
    return local, problems


def local_prefixes(args, prefixes: list[str]) -> tuple[dict[str, str], list[str]]:
    """(prefix -> where its .idx, manifest and vocab are read here: the prefix itself, or for an s3:// prefix
    its copy in --object-storage-cache-path, fetched and checked; the problems of the s3:// shards)."""
    remote = [p for p in prefixes if is_s3_url(p)]
    if remote and not args.object_storage_cache_path:
        raise TrainerError(f"--data-path {remote[0]}: s3:// prefixes need --object-storage-cache-path DIR (and "
                           "--no-mmap-bin-files), as in Megatron-LM")
    if remote and args.mmap_bin_files:
        raise TrainerError(f"--data-path {remote[0]}: s3:// prefixes are read without mmap: pass --no-mmap-bin-files")
    local, problems = {p: p for p in prefixes}, []
    for prefix in remote:
        path, found = fetch_shard(prefix, Path(args.object_storage_cache_path))
        local[prefix] = str(path)
        problems += found
    return local, problems
