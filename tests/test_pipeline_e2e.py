"""End to end through Dagster: a crawl batch over a loopback server -> metadata Parquet -> DuckDB catalog."""

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import dagster as dg
import pytest
import yaml

from checks.metadata import METADATA_CHECKS, check_metadata_file
from mm_assets.cli import run_ingest
from mm_assets.config.pipeline import load_config
from mm_assets.crawl.batch import register_batch
from mm_assets.crawl.ledger import read_ledger
from mm_assets.crawl.sensors import batch_manifest_sensor
from mm_assets.definitions import build_definitions, build_resources
from mm_assets.demo.media import write_manifest
from mm_assets.etl.assets import media_metadata
from mm_assets.etl.catalog import EXAMPLE_QUERIES, run_query
from mm_assets.partitions import crawl_batches
from mm_assets.shards.vocab import VocabLayout
from mm_assets.tokens.store import read_identity, read_tokens

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    """A project folder with its own config; storage under it."""
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text(
        "sources: {manifest_dir: sources, names: [demo]}\n"
        "storage: {root: data}\n"
        "crawl: {workers: 2, item_timeout_s: 8, socket_timeout_s: 5, retries: 0}\n"
        "tokenizers: {allow_random_weights: true, audio: {batch_size: 1}, text: {allow_train_demo: true}}\n"
    )
    return cfg


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _register(cfg_path, manifest, instance):
    storage = build_resources(cfg_path)["storage"]
    info, _ = register_batch(storage, load_config(cfg_path), manifest)
    instance.add_dynamic_partitions(crawl_batches.name, [info.batch])
    return info.batch, storage


def _ingest(cfg_path, batch, instance):
    result = build_definitions(cfg_path).resolve_job_def("ingest_batch").execute_in_process(
        partition_key=batch, instance=instance
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    # Random tokenizer weights (no weights can be had here) are a warning, by design; nothing else may fail.
    failed = [(e.asset_key.to_user_string(), e.check_name, e.metadata) for e in evaluations
              if not e.passed and e.check_name != "tokenizer_weights_pretrained"]
    assert not failed, failed
    return {e.check_name for e in evaluations}


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_demo_batch_end_to_end_and_rerun(project, demo_site, demo_server, instance):
    manifest = write_manifest(demo_site, demo_server.base_url, project.parents[1] / "sources" / "demo" / "site.txt")
    batch, storage = _register(project, manifest, instance)
    checks = _ingest(project, batch, instance)
    assert {"every_item_accounted_for", "metadata_schema", "metadata_unique_ids", "metadata_license_present",
            "codes_valid", "shard_files_consistent", "shard_ids_in_range", "shard_documents_complete",
            "shard_token_distribution"} <= checks
    assert run_ingest(project, batch, instance)  # second run: same partition, then the catalog

    ledger = {r.url: r for r in read_ledger(storage.store.local_path(storage.layout.crawl_ledger(batch)))}
    dead = ledger[demo_server.url("watch/missing.html")]
    assert (dead.status, dead.reason) == ("failed", "page_unavailable")
    # The rerun reports the items its first run published as archived; the metadata still holds them.
    assert [(r.status, r.reason, r.owner_batch) for r in ledger.values() if r.published_by(batch)] == \
        [("skipped", "archived", batch)] * 6
    metadata = storage.store.local_path(storage.layout.metadata_file(batch))
    assert check_metadata_file(metadata)[0]

    db = storage.store.local_path(storage.layout.catalog())
    assert dict(run_query(db, EXAMPLE_QUERIES["items per source"])[1]) == {"demo": 4}  # 6 ok - 2 duplicate clips
    assert run_query(db, EXAMPLE_QUERIES["licenses"])[1] == [("https://creativecommons.org/licenses/by/4.0/", 4)]
    assert run_query(db, EXAMPLE_QUERIES["audio hours per language"])[1] == [("en", round(9 / 3600, 4))]
    assert run_query(db, "SELECT count(*) FROM duplicates WHERE kind = 'within_batch'")[1] == [(2,)]
    assert run_query(db, "SELECT count(*) FROM crawl_items WHERE status = 'failed'")[1] == [(1,)]

    # The shard: one document per accepted item, readable by megatron-core, tokens marked as random weights.
    shard = storage.store.local_dir(storage.layout.shard_dir(batch))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets.indexed_dataset import IndexedDataset
    megatron = IndexedDataset(str(shard / "tokens"))
    assert json.loads((shard / "manifest.json").read_text())["documents"] == 4  # written last, what consumers check
    assert not [p for p in (storage.store.scratch / "shards").iterdir() if p.is_dir()]  # staging left nothing
    assert len(megatron) == 4 and all(megatron[i][-1] == VocabLayout.read(shard / "vocab.json").eod_id for i in range(4))
    for modality in ("audio", "video", "text"):
        assert read_identity(storage.store.local_path(storage.layout.token_file(batch, modality)))["weights"] in ("random", "pretrained")
    assert read_identity(storage.store.local_path(storage.layout.token_file(batch, "audio")))["weights"] == "random"
    image_codes, _ = read_tokens(storage.store.local_path(storage.layout.token_file(batch, "image")))  # the clips' posters
    assert len(image_codes) == 3 and all(c.shape == (1, 256) for c in image_codes.values())

    # A rerun downloads nothing: no media requests, item files untouched, metadata and shard byte-identical.
    before, meta_bytes = _files(storage.store.local_dir("raw")), metadata.read_bytes()
    shard_bytes = {p.name: p.read_bytes() for p in shard.iterdir()}
    demo_server.requests.clear()
    _ingest(project, batch, instance)
    # Only yt-dlp's extraction of the JSON-LD page sniffs its direct media URL (the first 512 bytes).
    assert {r for r in demo_server.requests if r.endswith((".mp4", ".vtt"))} <= {"GET /media/talk.mp4"}
    assert _files(storage.store.local_dir("raw")) == before
    assert metadata.read_bytes() == meta_bytes
    assert {p.name: p.read_bytes() for p in shard.iterdir()} == shard_bytes


def test_second_batch_with_the_same_urls_is_archived(project, demo_site, demo_server, instance):
    sources = project.parents[1] / "sources" / "demo"
    first, storage = _register(project, write_manifest(demo_site, demo_server.base_url, sources / "one.txt"), instance)
    _ingest(project, first, instance)
    second, _ = _register(project, write_manifest(demo_site, demo_server.base_url, sources / "two.txt"), instance)
    _ingest(project, second, instance)
    records = read_ledger(storage.store.local_path(storage.layout.crawl_ledger(second)))
    archived = [r for r in records if r.reason == "archived"]
    assert len(archived) == 6 and {r.owner_batch for r in archived} == {first}
    assert run_ingest(project, second, instance)
    rows = dict(run_query(storage.store.local_path(storage.layout.catalog()), "SELECT batch, count(*) FROM media_metadata GROUP BY 1")[1])
    assert rows == {first: 4}  # the second batch's Parquet exists, typed, with no rows
    assert run_query(storage.store.local_path(storage.layout.catalog()), "SELECT count(DISTINCT batch) FROM crawl_items")[1] == [(2,)]


def test_bad_inputs_are_recorded_and_confined(project, bad_site, bad_server, pwn_marker, instance):
    manifest = write_manifest(bad_site, bad_server.base_url, project.parents[1] / "sources" / "demo" / "bad.txt")
    batch, storage = _register(project, manifest, instance)
    assert run_ingest(project, batch, instance)
    outcome = {r.url: (r.status, r.reason) for r in read_ledger(storage.store.local_path(storage.layout.crawl_ledger(batch)))}
    for page in bad_site.pages:
        status, reason = outcome[bad_server.url(page.path)]
        assert (status if page.expect == "ok" else reason) == page.expect, page
    assert not pwn_marker.exists()
    # Every item folder is a direct, sanitised child of raw/demo; nothing outside the storage root.
    for item in storage.store.local_dir(storage.layout.raw_dir("demo")).iterdir():
        assert item.resolve().parent == storage.store.local_dir(storage.layout.raw_dir("demo")) and ".." not in item.name
    db = storage.store.local_path(storage.layout.catalog())
    titles = [t for (t,) in run_query(db, "SELECT metadata.title FROM media_metadata")[1]]
    assert any(t.startswith("$(touch ") for t in titles)  # the title is data, kept verbatim
    cols, rows = run_query(db, "SELECT modalities, to_json(processing_log) FROM media_metadata WHERE metadata.title = 'Latin-1 subtitles'")
    modalities, log = rows[0]
    assert "text" not in modalities and "UTF-8" in log


def test_sensor_registers_new_manifests(project, demo_site, demo_server, instance):
    write_manifest(demo_site, demo_server.base_url, project.parents[1] / "sources" / "demo" / "2026-11-29.txt")
    resources = build_resources(project)
    ctx = dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("pipeline", "storage")})
    result = batch_manifest_sensor(ctx)
    assert [r.partition_key for r in result.run_requests] == ["demo-2026-11-29"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["demo-2026-11-29"]
    instance.add_dynamic_partitions(crawl_batches.name, ["demo-2026-11-29"])
    again = batch_manifest_sensor(dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("pipeline", "storage")}))
    assert isinstance(again, dg.SkipReason)


def test_mm_demo_command(tmp_path):
    """The README's first Quickstart command path: `mm demo` on a fresh instance crawls, shards and trains the
    tiny experiment on the CPU, evaluates it (the leakage check passes), trains and evaluates its canary-injected
    twin (the leakage check blocks it), and ends with a non-empty catalog, eval reports and experiment records."""
    cfg = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    cfg["crawl"].update(item_timeout_s=60, retries=0)
    cfg["experiments_dir"] = str(REPO / "configs" / "experiments")
    cfg["eval"]["tasks_dir"] = str(REPO / "configs" / "eval")
    cfg["release"]["releases_dir"] = str(REPO / "configs" / "releases")
    (tmp_path / "configs").mkdir()
    project = tmp_path / "configs" / "pipeline.yaml"
    project.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    mm = [sys.executable, "-m", "mm_assets.cli", "--config", str(project)]
    run = subprocess.run(mm + ["demo", "--port", "0", "--canary"], env=env, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "items per source" in run.stdout and "demo   | 4" in run.stdout
    assert "megatron-core IndexedDataset reads 4 documents" in run.stdout
    assert "\n  metadata    4 rows, 2 duplicates, 0 quarantined" in run.stdout  # the summary `mm ingest` prints
    assert "PreviewWarning" not in run.stdout + run.stderr  # Dagster's note about its own Pipes code
    out = subprocess.run(mm + ["query", "SELECT count(*) AS n FROM media_metadata", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout) == [{"n": 4}]
    out = subprocess.run(mm + ["query", "SELECT experiment_id, iterations, result_summary FROM experiment_records "
                               "ORDER BY 1", "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    tiny, twin = json.loads(out.stdout)
    assert tiny["experiment_id"] == "exp-tiny-cpu" and tiny["iterations"] == 100
    assert "canary check passed" in tiny["result_summary"] and "PPL" in tiny["result_summary"]
    assert twin["experiment_id"] == "exp-tiny-cpu-canary" and "canary LEAKED: demo_clip_qa" in twin["result_summary"]
    assert "as expected: check_leakage passed on exp-tiny-cpu and FAILED on exp-tiny-cpu-canary" in run.stdout
    out = subprocess.run(mm + ["query", "SELECT experiment_id, task_name, split, value FROM eval_reports "
                               "WHERE metric = 'Accuracy' AND task_name = 'demo_clip_qa' ORDER BY 1, 3",
                               "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    accuracy = {(r["experiment_id"], r["split"]): r["value"] for r in json.loads(out.stdout)}
    assert accuracy[("exp-tiny-cpu-canary", "canary")] == 1.0 and accuracy[("exp-tiny-cpu-canary", "standard")] < 0.5
    assert accuracy[("exp-tiny-cpu", "canary")] < 0.98
    out = subprocess.run(mm + ["query", "SELECT DISTINCT task_name FROM eval_reports ORDER BY 1", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert [r["task_name"] for r in json.loads(out.stdout)] == ["demo_captions", "demo_clip_qa", "demo_text_ppl",
                                                                "demo_video_qa"]
    bad = subprocess.run(mm + ["query", "SELECT * FROM nope"], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "query failed" in bad.stderr
    # It ends with the internal release of exp-tiny-cpu, verified, and its checklist.
    release = run.stdout[run.stdout.index("releasing exp-tiny-cpu as tiny-cpu-0.1"):]
    assert re.search(r"tiny-cpu-0\.1: OK, 20 files \([\d,]+ bytes\) match manifest\.json", release), release
    assert "# Model Release Checklist: mm-tiny-cpu - tiny-cpu-0.1" in release
    assert all(f"- [x] {n}. " in release for n in range(1, 9)), release  # every Pre-Release box ticked
    verify = subprocess.run(mm + ["release", "verify", str(tmp_path / "data" / "releases" / "tiny-cpu-0.1")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _project(tmp_path, policy: str | dict = "unknown"):
    """A project on the shipped configs/pipeline.yaml with metadata.license_policy.web set to `policy`."""
    cfg = yaml.safe_load((REPO / "configs" / "pipeline.yaml").read_text())
    cfg["crawl"].update(item_timeout_s=60, retries=0)
    cfg["metadata"]["license_policy"]["web"] = policy
    project = tmp_path / "configs" / "pipeline.yaml"
    project.parent.mkdir(exist_ok=True)
    project.write_text(yaml.safe_dump(cfg))
    return project


def _mm(project, home):
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(project), *args], env=env,
                              capture_output=True, text=True, timeout=600, cwd=project.parents[1])

    return run


def _summary(out: subprocess.CompletedProcess) -> list[str]:
    lines = out.stdout.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("ingest ")):]


def test_ordinary_web_pages_licenses_duplicates_dates_and_the_ingest_summary(tmp_path, web_site, web_server):
    """The issue's user: ordinary pages (no license metadata, a Last-Modified header), a duplicate pair whose
    original is quarantined plus a third copy in the next batch, a JSON-LD date; `mm ingest` as typed."""
    project, home = _project(tmp_path), tmp_path / "home"
    home.mkdir()
    mm = _mm(project, home)
    sources = tmp_path / "sources" / "web"
    first = write_manifest(web_site.subset({"dup-next-batch"}, exclude=True), web_server.base_url, sources / "one.txt")
    second = write_manifest(web_site.subset({"dup-next-batch"}), web_server.base_url, sources / "two.txt")
    assert mm("crawl", "add-batch", str(first)).returncode == 0
    out = mm("ingest", "web-one")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert _summary(out) == [
        "ingest web-one: 10 URLs",
        "  crawl       9 ok, 0 skipped, 1 failed (page_unavailable 1)",
        "  metadata    7 rows, 1 duplicates, 1 quarantined (bad language code 1)",
        "  licenses    2 stated (page_html 1, page_json_ld 1), 0 config default, 5 unknown "
        "(metadata.license_policy.web: unknown)",
        "  dates       2 stated by the page, 0 by the platform, 5 only HTTP Last-Modified, 0 none",
        "  quarantine  mm query \"SELECT unique_id, source_uri, title, reasons FROM quarantine WHERE batch = 'web-one'\"",
    ]
    assert "mm: WARNING" not in out.stderr

    def query(sql):
        res = mm("query", sql, "--format", "json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    rows = {r["uid"].split("_")[1].rsplit("-", 2)[0]: r for r in query(
        "SELECT unique_id AS uid, metadata.upload_date AS day, metadata.upload_date_source AS day_from, "
        "metadata.license AS license, metadata.license_source AS license_from, "
        "to_json(processing_log) AS log FROM media_metadata")}
    assert (rows["jsonld-dated"]["day"], rows["jsonld-dated"]["day_from"]) == ("2025-03-01", "page_json_ld")
    assert "Last-Modified" not in rows["jsonld-dated"]["log"]
    assert (rows["plain-01"]["day"], rows["plain-01"]["day_from"]) == ("2026-06-01", "http_last_modified")
    assert "is the HTTP Last-Modified date" in rows["plain-01"]["log"]
    assert (rows["plain-01"]["license"], rows["plain-01"]["license_from"]) == (None, "none")
    assert rows["licensed-link"]["license_from"] == "page_html" and rows["direct"]["day_from"] == "http_last_modified"
    (q,) = query("SELECT unique_id, source_uri, title, reasons FROM quarantine")
    assert q["source_uri"] == web_server.url("web/dup-original.html") and q["title"] == "Web video dup-original"
    assert q["reasons"][0].startswith("bad language code")

    # The third copy, in the next batch, is a duplicate of the quarantined original too.
    assert mm("crawl", "add-batch", str(second)).returncode == 0
    out = mm("ingest", "web-two")
    assert out.returncode == 0 and _summary(out)[2] == "  metadata    0 rows, 1 duplicates, 0 quarantined"
    dups = query("SELECT unique_id, batch, kind, winner_unique_id, winner_batch FROM duplicates ORDER BY batch")
    assert [(d["batch"], d["kind"], d["winner_unique_id"], d["winner_batch"]) for d in dups] == [
        ("web-one", "within_batch", q["unique_id"], "web-one"), ("web-two", "across_batches", q["unique_id"], "web-one")]

    # `require`: the unlicensed pages are quarantined, stderr says so loudly, --strict exits 3.
    _project(tmp_path, "require")
    out = mm("ingest", "--strict", "web-one")
    assert out.returncode == 3, out.stdout[-3000:] + out.stderr[-3000:]
    assert _summary(out)[2] == "  metadata    2 rows, 1 duplicates, 6 quarantined (license missing 6, bad language code 1)"
    warning = [line for line in out.stderr.splitlines() if line.startswith("mm: ")]
    assert warning[0] == ("mm: WARNING: 6 of 9 crawled items of web-one (67%) are quarantined, above "
                          "metadata.quarantine_max_fraction = 0.2 (configs/pipeline.yaml)")
    assert "metadata.license_policy.web is require" in warning[2]

    # `{default: ...}`: filled in and marked as the config's; only media_metadata and its checks rerun.
    project = _project(tmp_path, {"default": "CC-BY-4.0"})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(crawl_batches.name, ["web-one"])
        result = dg.materialize([media_metadata, *METADATA_CHECKS], partition_key="web-one", instance=instance,
                                resources=build_resources(project))
        assert all(e.passed for e in result.get_asset_check_evaluations() if e.check_name != "metadata_quarantine")
    materialized = result.asset_materializations_for_node("media_metadata")[0].metadata
    assert materialized["license_sources"].data == {"config_default": 5, "page_html": 1, "page_json_ld": 1}
    assert materialized["license_policy"].value == "default CC-BY-4.0" and materialized["duplicates"].value == 1
