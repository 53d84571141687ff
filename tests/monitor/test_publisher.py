"""The Megatron-log publisher against a real Pushgateway (loopback): what it pushes, per experiment; that a
Pushgateway that is down or hangs neither fails nor holds up the log stream (one warning); that the end of a run
empties the group and the targets; and the data-pipeline counters' groups."""

import json
import socket
import threading
from datetime import datetime, timezone

import numpy as np
from monitoring_stack import get_json

from mm_assets.monitor.data_counts import BatchCounts, publish_counts, token_counts
from mm_assets.monitor.config import MonitoringConfig
from mm_assets.monitor.publisher import TrainingMetricsPublisher, metric_values
from mm_assets.monitor.pushgateway import Pushgateway
from mm_assets.monitor.run_spec import RunSpec
from mm_assets.tokens.store import TokenRow
from mm_assets.train.megatron_log.format import format_training_line
from mm_assets.train.megatron_log.parse import parse_line
from resources.storage import StorageResource

JOB = "llm_pretrain_training"
SPEC = RunSpec("exp-pub", "10b", 8192, 6.1e10, 256, "h100", 9.89e14)


def _line(iteration: int, *, loss=2.5, grad_norm=0.9, skipped=0, nans=0, elapsed_ms=4000.0) -> str:
    losses = [("lm loss", loss)] if loss is not None else []
    return format_training_line(moment=datetime(2026, 11, 29, 4, 0, iteration), iteration=iteration,
                                train_iters=1000, consumed_samples=1024 * iteration, elapsed_ms=elapsed_ms,
                                global_batch_size=1024, losses=losses, loss_scale=1.0, grad_norm=grad_norm,
                                skipped_iterations=skipped, nan_iterations=nans, learning_rate=3e-4)


def _group(url: str, experiment: str) -> dict | None:
    for group in get_json(f"{url}/api/v1/metrics")["data"]:
        if group["labels"].get("experiment") == experiment:
            return {k: float(v["metrics"][0]["value"]) for k, v in group.items() if isinstance(v, dict) and "metrics" in v}
    return None


def test_metric_values_from_a_record_with_mfu():
    totals = {"llm_pretrain_training_skipped_iterations_total": 0.0, "llm_pretrain_training_nan_iterations_total": 0.0}
    record = parse_line(_line(10, skipped=2), seq_length=8192)
    values = metric_values(record, SPEC, totals)
    tps = 1024 * 8192 / 4.0
    assert values["llm_pretrain_training_throughput_tokens_per_second"] == tps
    assert values["llm_pretrain_training_mfu_ratio"] == tps * 6.1e10 / (256 * 9.89e14)
    assert values["llm_pretrain_training_consumed_tokens_total"] == 10 * 1024 * 8192
    assert values["llm_pretrain_training_skipped_iterations_total"] == 2
    assert values["llm_pretrain_training_last_update_timestamp_seconds"] == \
        datetime(2026, 11, 29, 4, 0, 10, tzinfo=timezone.utc).timestamp()
    nan_record = parse_line(_line(20, loss=None, nans=1), seq_length=8192)  # Megatron leaves a NaN loss out
    values = metric_values(nan_record, SPEC, totals)
    assert values["llm_pretrain_training_loss"] != values["llm_pretrain_training_loss"]
    assert values["llm_pretrain_training_skipped_iterations_total"] == 2 and \
        values["llm_pretrain_training_nan_iterations_total"] == 1


def test_publishes_the_experiment_group_then_deletes_it_and_its_targets(pushgateway, tmp_path):
    warnings: list[str] = []
    storage = StorageResource(root=str(tmp_path))
    targets = tmp_path / "monitoring" / "targets" / "exp-pub.json"  # where Prometheus's file_sd looks
    pub = TrainingMetricsPublisher(SPEC, Pushgateway(pushgateway), job=JOB, warn=warnings.append,
                                   min_push_interval_s=0, storage=storage)
    pub.job_started("4242", ["dgx-01", "dgx-02"])
    assert json.loads(targets.read_text()) == [
        {"labels": {"experiment": "exp-pub", "node_id": n, "slurm_job_id": "4242"}, "targets": [f"{n}:9400"]}
        for n in ("dgx-01", "dgx-02")]
    for line in ("some other output", _line(1), _line(2, grad_norm=1.5)):
        pub.on_line(line)
    pub._worker.stop(timeout_s=5)
    group = _group(pushgateway, "exp-pub")
    assert group["llm_pretrain_training_grad_norm"] == 1.5 and group["llm_pretrain_training_iteration"] == 2
    assert group["llm_pretrain_training_loss"] == 2.5 and group["push_time_seconds"] > 0
    pub.finish()
    assert _group(pushgateway, "exp-pub") is None and warnings == []
    assert json.loads(targets.read_text()) == []  # Prometheus drops the nodes at once


def test_a_pushgateway_that_is_down_warns_once_and_never_blocks(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    warnings: list[str] = []
    pub = TrainingMetricsPublisher(SPEC, Pushgateway(f"http://127.0.0.1:{port}", 0.5), job=JOB,
                                   warn=warnings.append, min_push_interval_s=0)
    for i in range(1, 6):
        pub.on_line(_line(i))
    pub.finish()
    assert pub.records == 5
    failed = [w for w in warnings if "pushing to the Pushgateway" in w]
    assert len(failed) == 1 and "training goes on" in failed[0]
    assert len([w for w in warnings if "could not delete" in w]) == 1


def test_a_hanging_pushgateway_does_not_hold_up_the_log_stream():
    """The push runs on its own thread: on_line returns while the Pushgateway still holds the request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted = threading.Event()

    def hang():
        conn, _ = server.accept()
        accepted.set()
        conn.recv(65536)  # read the request, never answer (the client's timeout ends it)

    threading.Thread(target=hang, daemon=True).start()
    warnings: list[str] = []
    pub = TrainingMetricsPublisher(SPEC, Pushgateway(f"http://127.0.0.1:{server.getsockname()[1]}", 1.0), job=JOB,
                                   warn=warnings.append, min_push_interval_s=0)
    pub.on_line(_line(1))
    assert accepted.wait(10)
    pub.on_line(_line(2))  # returns although the first push is still unanswered
    assert pub.records == 2 and pub._worker.pushes == 0
    pub.finish()
    server.close()
    assert any("timed out" in w or "TimeoutError" in w or "failed" in w for w in warnings)


def test_data_counters_replace_their_batch_group(pushgateway):
    cfg = MonitoringConfig.model_validate({"pushgateway": {"url": pushgateway}})
    rows = [TokenRow("a", "ok", codes=np.zeros((8, 75), np.int32)), TokenRow("b", "failed", reason="too_short")]
    counts = token_counts("batch-1", "audio", rows)
    assert counts.metadata() == {"bytes.audio": 8 * 75 * 4, "items.audio": 1, "failed.audio": 1}
    warnings: list[str] = []
    assert publish_counts(cfg, counts, warnings.append) and publish_counts(cfg, counts, warnings.append)
    groups = [g for g in get_json(f"{pushgateway}/api/v1/metrics")["data"] if g["labels"].get("batch") == "batch-1"]
    assert len(groups) == 1 and groups[0]["labels"]["asset"] == "audio_tokens"  # pushed twice, counted once
    metric = groups[0]["llm_pretrain_data_pipeline_processed_bytes_total"]["metrics"][0]
    assert metric["labels"]["modality"] == "audio" and float(metric["value"]) == 2400
    assert float(groups[0]["llm_pretrain_data_pipeline_tokens_total"]["metrics"][0]["value"]) == 600
    off = MonitoringConfig()
    assert not publish_counts(off, BatchCounts("raw_media", "crawl", "b"), warnings.append) and warnings == []
