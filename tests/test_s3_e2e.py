"""The demo's whole graph with `storage.root: s3://…` on a real S3 server (SeaweedFS): crawl on the loopback
site, metadata, tokens, shards, the catalog, training exp-tiny-cpu (the CPU trainer reading the shard from S3
as megatron-core does), records, then `mm query` against it; a wrong secret stops the next ingest with one
clear line; no credential anywhere it could leak to."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3 import S3Store
from mm_assets.storage.s3_access import S3Access

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
LAYOUT = ArtifactLayout()


def _every_byte_under(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_demo_graph_runs_on_s3_and_mm_query_reads_it(tmp_path, s3_server, s3_root):
    # Storage keys and endpoint from the environment (the storage resource's dg.EnvVar); jobs get only the
    # path of compute.credentials_file and the endpoint, through the job environment's allow-list.
    cfg = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    cfg["crawl"].update(item_timeout_s=60, retries=0)
    cfg["experiments_dir"] = str(REPO / "configs" / "experiments")
    cfg["eval"]["tasks_dir"] = str(REPO / "configs" / "eval")
    cfg["release"]["releases_dir"] = str(REPO / "configs" / "releases")
    cfg["storage"] = {"root": s3_root, "scratch": "scratch"}
    cfg["compute"]["credentials_file"] = str(s3_server.credentials_file)
    (tmp_path / "configs").mkdir()
    project = tmp_path / "configs" / "pipeline.yaml"
    project.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3_server.env(),
           "DAGSTER_HOME": str(home)}
    mm = [sys.executable, "-m", "mm_assets.cli", "--config", str(project)]

    started = time.monotonic()
    demo = subprocess.run(mm + ["demo", "--port", "0"], env=env, capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    count = subprocess.run(mm + ["query", "SELECT count(*) AS n FROM media_metadata", "--format", "json"],
                           env=env, capture_output=True, text=True, timeout=120)
    records = subprocess.run(mm + ["query", "SELECT experiment_id, iterations, status FROM experiment_records",
                                   "--format", "json"], env=env, capture_output=True, text=True, timeout=120)
    print(f"\nthe demo graph on S3 + two mm query: {time.monotonic() - started:.1f} s")
    assert "items per source" in demo.stdout and "demo   | 4" in demo.stdout
    assert "megatron-core IndexedDataset reads 4 documents" in demo.stdout
    assert json.loads(count.stdout) == [{"n": 4}], count.stderr
    assert json.loads(records.stdout) == [{"experiment_id": "exp-tiny-cpu", "iterations": 100, "status": "ok"}]
    # The demo's internal release is written to S3 (manifest last), verified there, its upload box ticked.
    bundle = f"{s3_root}/{LAYOUT.release_dir('tiny-cpu-0.1')}"
    assert f"{bundle}: OK, 20 files" in demo.stdout, demo.stdout[-4000:]
    assert f"- [x] 2. Upload to model hub / object storage.\n  - why: written to {bundle}, manifest last" in demo.stdout
    verify = subprocess.run(mm + ["release", "verify", bundle], env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Every artifact is in the bucket; the job read the shard as s3:// (megatron-core's object storage path).
    store = S3Store(s3_root, tmp_path / "check", S3Access(s3_server.endpoint, str(s3_server.credentials_file)))
    batch, exp = "demo-site", "exp-tiny-cpu"
    for key in (LAYOUT.crawl_ledger(batch), LAYOUT.metadata_file(batch), LAYOUT.token_file(batch, "audio"),
                LAYOUT.shard_manifest(batch), LAYOUT.catalog(), LAYOUT.run_blend(exp), LAYOUT.run_record(exp),
                LAYOUT.training_log(exp), LAYOUT.checkpoint_hashes(exp), LAYOUT.records_table(),
                LAYOUT.launch_file(exp, "sbatch"), LAYOUT.launch_file(exp, "args"),
                f"{LAYOUT.checkpoint_dir(exp, 100)}/{LAYOUT.CHECKPOINT_MODEL}"):
        assert store.exists(key), key
    assert not (tmp_path / "data").exists()
    run = json.loads(store.read_text(LAYOUT.run_record(exp)))
    assert run["checkpoint"] == store.url(LAYOUT.checkpoint_dir(exp, 100)) and run["log"].startswith(s3_root)
    args = store.read_text(LAYOUT.launch_file(exp, "args")).splitlines()
    assert store.url(LAYOUT.shard_prefix(batch)) in args and "--no-mmap-bin-files" in args
    assert args[args.index("--object-storage-cache-path") + 1].startswith(str(tmp_path / "scratch"))
    cached_idx = tmp_path / "scratch" / "work" / LAYOUT.run_object_storage_cache(exp) / s3_root[len("s3://"):] / \
        LAYOUT.shard_idx(batch)
    assert cached_idx.is_file()  # megatron-core's cache_index_file put it there

    # A wrong secret: the ingest's Dagster run fails at its first read, and the user gets one line that names the
    # endpoint and the bucket and says what to check (never the secret).
    wrong = subprocess.run(mm + ["ingest", batch], env={**env, "AWS_SECRET_ACCESS_KEY": "wrong-" + env["AWS_SECRET_ACCESS_KEY"]},
                           capture_output=True, text=True, timeout=300)
    refused = (f"object storage at {s3_server.endpoint}, bucket {s3_server.bucket}: the credentials were refused "
               f"(SignatureDoesNotMatch) reading {s3_root}")
    assert wrong.returncode == 2 and wrong.stderr.splitlines()[-1] == (
        f"mm: {refused}: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment (the access key and its "
        f"secret) and that this key may read and write bucket {s3_server.bucket}"), wrong.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    assert run.job_name == "ingest_batch" and failures
    error, chain = failures[0].dagster_event.step_failure_data.error, []
    while error is not None:  # Dagster's step error, caused by ours
        chain.append((error.cls_name, error.message))
        error = error.cause or error.context
    assert any(cls == "StorageAccessError" and refused in message for cls, message in chain), chain

    # No credential in what was printed, logged, rendered or stored: local files (scratch with the job logs
    # and launch files, the Dagster instance's event log and metadata) and every object in the bucket.
    key, secret = s3_server.keys
    printed = "".join(p.stdout + p.stderr for p in (demo, count, records, wrong))
    stored = b"\n".join(store.fs.cat_file(path) for path in store.fs.find(store.url_root))  # every object
    for where, blob in (("output", printed.encode()), ("local files", _every_byte_under(tmp_path)), ("bucket", stored)):
        assert secret.encode() not in blob and key.encode() not in blob, where
