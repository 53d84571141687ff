"""What is particular to S3Store, on a real S3 server (SeaweedFS): a refused key or an unreachable endpoint
fails with one clear message, local copies are checked before use, the marker is uploaded last, working
folders sync both ways, and the DuckDB catalog reads s3:// read-only."""

import io
import pickle
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mm_assets.etl.catalog import CatalogError, build_catalog, query_catalog
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3 import S3Store
from mm_assets.storage.s3_access import S3Access, StorageAccessError
from resources.storage import StorageResource

LAYOUT = ArtifactLayout()


@pytest.fixture
def s3(s3_server, s3_root, tmp_path) -> S3Store:
    return S3Store(s3_root, tmp_path / "scratch", S3Access(s3_server.endpoint, str(s3_server.credentials_file)))


def test_a_wrong_secret_fails_at_first_use_with_one_clear_message(s3_server, s3_root, tmp_path):
    key, secret = s3_server.keys
    store = S3Store(s3_root, tmp_path, S3Access(s3_server.endpoint, key=key, secret="not-" + secret))
    with pytest.raises(StorageAccessError) as err:
        store.exists("catalog/metadata.duckdb")
    message = str(err.value)
    assert message == (f"object storage at {s3_server.endpoint}, bucket {s3_server.bucket}: the credentials were "
                       f"refused (SignatureDoesNotMatch) reading {s3_root}: check AWS_ACCESS_KEY_ID / "
                       "AWS_SECRET_ACCESS_KEY in the environment (the access key and its secret) and that this key "
                       f"may read and write bucket {s3_server.bucket}")
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no botocore chain
    assert secret not in message and secret not in repr(store) and secret not in repr(store.access)


def test_an_unreachable_endpoint_a_missing_bucket_and_no_keys_say_what_to_check(s3_server, tmp_path):
    creds = str(s3_server.credentials_file)
    down = S3Store("s3://mm-test/x", tmp_path, S3Access("http://127.0.0.1:9", creds))
    with pytest.raises(StorageAccessError, match=r"object storage at http://127.0.0.1:9, bucket mm-test: cannot "
                       r"connect \(EndpointConnectionError\) reading s3://mm-test/x: check storage.endpoint_url"):
        down.read_bytes("a")
    nobucket = S3Store("s3://no-such-bucket/x", tmp_path, S3Access(s3_server.endpoint, creds))
    with pytest.raises(StorageAccessError, match="bucket no-such-bucket: the bucket does not exist: create it"):
        nobucket.list("*")
    nokeys = S3Store("s3://mm-test/x", tmp_path, S3Access(s3_server.endpoint))
    with pytest.raises(StorageAccessError, match="no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        nokeys.exists("a")


def test_a_stale_or_corrupt_local_copy_is_fetched_again(s3):
    s3.write_bytes("tokens/b1/audio.parquet", b"first")
    copy = s3.local_path("tokens/b1/audio.parquet")
    s3.write_bytes("tokens/b1/audio.parquet", b"second")  # another writer replaced it: the copy is stale
    assert s3.local_path("tokens/b1/audio.parquet").read_bytes() == b"second"
    copy.write_bytes(b"secXnd")  # the local copy was damaged
    assert s3.local_path("tokens/b1/audio.parquet").read_bytes() == b"second"
    s3._delete(["tokens/b1/audio.parquet"])
    assert not s3.local_path("tokens/b1/audio.parquet").exists()  # gone from the store: no copy is used


def test_the_marker_is_uploaded_last_and_an_interrupted_upload_leaves_none(s3, monkeypatch):
    with s3.publish("shards/b1", last="manifest.json") as staged:
        staged.mkdir()
        (staged / "tokens.bin").write_bytes(b"v1")
        (staged / "manifest.json").write_text("v1")
    uploads = []
    real_put = S3Store._put

    def put_then_fail_on_the_marker(self, pairs):
        uploads.append([key for _, key in pairs])
        if any(key.endswith("manifest.json") for _, key in pairs):
            raise ConnectionError("the upload was cut off")
        real_put(self, pairs)

    monkeypatch.setattr(S3Store, "_put", put_then_fail_on_the_marker)
    with pytest.raises(ConnectionError):
        with s3.publish("shards/b1", last="manifest.json") as staged:
            staged.mkdir()
            (staged / "tokens.bin").write_bytes(b"v2")
            (staged / "manifest.json").write_text("v2")
    assert uploads == [["shards/b1/tokens.bin"], ["shards/b1/manifest.json"]]
    # A reader that checks the marker sees an incomplete shard, never v1's manifest vouching for v2's data.
    assert not s3.exists("shards/b1/manifest.json") and s3.read_bytes("shards/b1/tokens.bin") == b"v2"


def test_a_working_folder_takes_the_stores_copy_over_a_damaged_local_one(s3):
    with s3.working_dir("runs/e1") as folder:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / LAYOUT.CHECKPOINT_TRACKER).write_text("20")
        (folder / "logs").mkdir()
        (folder / "logs" / "job.log").write_text("line")
    (folder / "checkpoints" / LAYOUT.CHECKPOINT_TRACKER).write_text("30")  # changed outside a sync: not trusted
    s3._delete(["runs/e1/logs/job.log"])  # removed from the store elsewhere
    with s3.working_dir("runs/e1") as folder:
        assert (folder / "checkpoints" / LAYOUT.CHECKPOINT_TRACKER).read_text() == "20"
        assert not (folder / "logs" / "job.log").exists()
    restored = pickle.loads(pickle.dumps(s3))  # the crawl's workers get a pickled store
    assert restored.read_text("runs/e1/checkpoints/" + LAYOUT.CHECKPOINT_TRACKER) == "20"


def _parquet(rows: list[dict]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


@pytest.fixture
def s3_catalog(s3_server, s3_root, tmp_path, monkeypatch):
    """A catalog built on S3 (one batch), the storage resource, and a Parquet file outside the root."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage = StorageResource(root=s3_root, scratch=str(tmp_path / "scratch"), endpoint_url=s3_server.endpoint,
                              credentials_file=str(s3_server.credentials_file))
    store = storage.store
    store.write_bytes(LAYOUT.metadata_file("demo-a"), _parquet([{"unique_id": "demo_1", "source": "demo"}]))
    outside = f"s3://{s3_server.bucket}/elsewhere-{s3_root.rsplit('-', 1)[1]}/x.parquet"
    store.fs.pipe_file(outside[len("s3://"):], _parquet([{"secret": 1}]))
    assert build_catalog(storage).views == {"media_metadata": 1}
    return store, outside


@pytest.mark.parametrize("sql, refused", [
    ("SELECT * FROM read_parquet('{outside}')", "Permission Error: Cannot access file"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Permission Error: Cannot access file"),
    ("COPY (SELECT 1 AS x) TO '{root}/copied.parquet'", "COPY writes files"),
    ("ATTACH '{root}/other.duckdb' AS other", "ATTACH opens another database"),
    ("INSTALL httpfs", "INSTALL/LOAD fetch or run extensions"),
    ("SET s3_secret_access_key = 'x'", "SET, RESET, USE"),
])
def test_the_catalog_reads_s3_and_stays_read_only(s3_catalog, sql, refused):
    store, outside = s3_catalog
    assert query_catalog(store, "SELECT batch, unique_id FROM media_metadata")[1] == [("demo-a", "demo_1")]
    with pytest.raises(CatalogError, match="refused: ") as err:
        query_catalog(store, sql.format(root=store.url_root, outside=outside))
    assert refused in str(err.value)
    assert not store.exists("copied.parquet") and not store.exists("other.duckdb")


def test_mm_query_reads_the_catalog_on_s3_and_a_wrong_secret_is_one_line(s3_catalog, s3_server, tmp_path):
    store, _ = s3_catalog
    config = tmp_path / "configs" / "pipeline.yaml"
    config.parent.mkdir()
    config.write_text(f"storage: {{root: '{store.url_root}', scratch: {tmp_path / 'cli-scratch'}}}\n")
    env = s3_server.env()

    def run(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(config), "query",
                               "SELECT count(*) AS n FROM media_metadata", "--format", "csv"],
                              env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=120)
    ok = run(env)
    assert (ok.returncode, ok.stdout) == (0, "n\n1\n"), ok.stderr
    bad = run({**env, "AWS_SECRET_ACCESS_KEY": "wrong-" + env["AWS_SECRET_ACCESS_KEY"]})
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == (f"mm: object storage at {s3_server.endpoint}, bucket {s3_server.bucket}: the credentials "
                          f"were refused (SignatureDoesNotMatch) reading {store.url_root}: check AWS_ACCESS_KEY_ID / "
                          "AWS_SECRET_ACCESS_KEY in the environment (the access key and its secret) and that this "
                          f"key may read and write bucket {s3_server.bucket}\n")
