"""`mm ingest` interrupted mid-download: SIGTERM / Ctrl-C end it with one line and exit code 143 / 130, no
traceback, no worker left, nothing published, the run failed (not STARTED), and the rerun resumes the download.
A SIGKILLed `mm ingest` leaves a STARTED run that the next `mm` command marks failed, with the reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pyarrow.parquet as pq
import pytest

from mm_assets.crawl.ledger import read_ledger
from mm_assets.demo.media import build_resume_site, write_manifest
from mm_assets.demo.server import Trickle, serve
from mm_assets.storage.paths import sha256_file
from procs import alive, descendants, wait_until

pytestmark = pytest.mark.slow
CLIP = "media/long.mp4"
BATCH = "demo-long"


@pytest.fixture(scope="module")
def site_server(tmp_path_factory):
    site = build_resume_site(tmp_path_factory.mktemp("resume-site"))
    with serve(site.root, slow_paths={CLIP: Trickle(chunk=1024, interval_s=0.05)}) as server:
        yield site, server


@pytest.fixture
def project(tmp_path, site_server):
    site, server = site_server
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text("sources: {manifest_dir: sources, names: [demo]}\nstorage: {root: data}\n"
                   "crawl: {workers: 2, item_timeout_s: 60, socket_timeout_s: 5, retries: 0}\n"
                   "tokenizers: {allow_random_weights: true, audio: {batch_size: 1}, text: {allow_train_demo: true}}\n")
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    manifest = write_manifest(site, server.base_url, tmp_path / "sources" / "demo" / "long.txt")

    def mm(*args: str, stderr=subprocess.PIPE) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "mm_assets.cli", "--config", str(cfg), *args], env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, text=True)

    add = mm("crawl", "add-batch", str(manifest))
    assert add.wait(120) == 0, add.stderr.read()
    data = tmp_path / "data"
    return SimpleNamespace(mm=mm, home=home, data=data, site=site, server=server, manifest=manifest,
                           size=(site.root / CLIP).stat().st_size, tmp=tmp_path)


def staged_part(data: Path) -> int:
    parts = list((data / ".staging" / "crawl" / "items").glob("*/item.mp4.part"))
    return parts[0].stat().st_size if parts else 0


def interrupt_mid_download(p, signo: int) -> SimpleNamespace:
    """Start `mm ingest`, send `signo` once a third of the clip is on disk; what it left behind."""
    stderr = p.tmp / f"ingest-{signo}.stderr"
    already = len(p.server.served(CLIP))
    with open(stderr, "w") as err:
        proc = p.mm("ingest", BATCH, stderr=err)
        wait_until(lambda: staged_part(p.data) >= p.size // 3, proc, "a third of the clip on disk")
        workers = descendants(proc.pid)
        proc.send_signal(signo)
        code = proc.wait(60)
    wait_until(lambda: not [pid for pid in workers if alive(pid)], None, "the workers' end", timeout_s=10)
    with dg.DagsterInstance.from_config(str(p.home)) as instance:
        runs = {r.dagster_run.job_name: r.dagster_run for r in instance.get_run_records()}
    return SimpleNamespace(code=code, stderr=stderr.read_text(), workers=workers, runs=runs,
                           served=p.server.served(CLIP)[already:], partial=staged_part(p.data))


def assert_clean_stop(p, stop: SimpleNamespace, name: str) -> None:
    assert stop.workers, "the crawl had started its workers"
    lines = stop.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("mm:")] == [lines[-1]]
    assert lines[-1].startswith(f"mm: interrupted by {name}: items published so far are kept; "
                                f"`mm ingest {BATCH}` continues the batch")
    for noise in ("Traceback", "Stack Trace", "DagsterExecutionInterruptedError", "KeyboardInterrupt"):
        assert noise not in stop.stderr
    assert not list((p.data / "raw").rglob("*.mp4")), "nothing published half-way"
    assert 0 < stop.partial < p.size, "the partial download is kept for the rerun"
    assert set(stop.runs) == {"ingest_batch"}, "the catalog refresh did not start"
    assert stop.runs["ingest_batch"].status == dg.DagsterRunStatus.FAILURE


def test_sigterm_stops_cleanly_and_the_rerun_resumes(project):
    stop = interrupt_mid_download(project, signal.SIGTERM)
    assert stop.code == 143
    assert_clean_stop(project, stop, "SIGTERM")

    before = len(project.server.served(CLIP))
    rerun = project.mm("ingest", BATCH)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    served = project.server.served(CLIP)[before:]
    assert [(r.status, r.range, r.sent) for r in served] == [
        (206, f"bytes={stop.partial}-", project.size - stop.partial)]
    print(f"\nmm ingest, SIGTERM: clip {project.size} B; first run sent {sum(r.sent for r in stop.served)} B "
          f"({stop.partial} B on disk); rerun fetched {served[0].sent} B with Range bytes={stop.partial}-")
    [record] = read_ledger(project.data / "crawl" / BATCH / "items.parquet")
    published = project.data / record.item_dir / f"{record.item_id}.mp4"
    assert record.status == "ok" and sha256_file(published) == sha256_file(project.site.root / CLIP)
    assert pq.read_metadata(project.data / "metadata" / BATCH / "media_metadata.parquet").num_rows == 1


def test_ctrl_c_exits_130(project):
    stop = interrupt_mid_download(project, signal.SIGINT)
    assert stop.code == 130
    assert_clean_stop(project, stop, "SIGINT")


def test_a_sigkilled_run_is_marked_failed_by_the_next_mm(project):
    stop = interrupt_mid_download(project, signal.SIGKILL)
    assert stop.code == -signal.SIGKILL and stop.workers, "the workers died with it (PR_SET_PDEATHSIG)"
    assert stop.runs["ingest_batch"].status == dg.DagsterRunStatus.STARTED, "nobody ended the run"

    again = project.mm("crawl", "add-batch", str(project.manifest))
    _, err = again.communicate(timeout=120)
    run = stop.runs["ingest_batch"]
    assert again.returncode == 0 and f"mm: run {run.run_id} was left STARTED by a process that is gone" in err
    with dg.DagsterInstance.from_config(str(project.home)) as instance:
        after = instance.get_run_by_id(run.run_id)
        [failure] = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert after.status == dg.DagsterRunStatus.FAILURE
    assert after.tags["dagster/failure_reason"] == "UNEXPECTED_TERMINATION"
    assert f"pid {run.tags['mm/pid']}" in failure.dagster_event.message and "is gone" in failure.dagster_event.message
