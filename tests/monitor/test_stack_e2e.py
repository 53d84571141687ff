"""The loopback stack end to end: Megatron log lines -> publisher -> Pushgateway -> Prometheus rule ->
Alertmanager -> webhook receiver; and the Pushgateway staleness guard: a finished run (group deleted) is quiet,
a dead one (group left behind) raises TrainingMetricsStale."""

import time
from datetime import datetime, timezone

from mm_assets.monitor.pushgateway import Pushgateway
from mm_assets.monitor.publisher import TrainingMetricsPublisher
from mm_assets.monitor.run_spec import RunSpec
from mm_assets.train.megatron_log.format import format_training_line

JOB = "llm_pretrain_training"


def _line(iteration: int, grad_norm: float, loss: float = 2.0) -> str:
    return format_training_line(moment=datetime.now(timezone.utc).replace(tzinfo=None), iteration=iteration,
                                train_iters=100, consumed_samples=8 * iteration, elapsed_ms=100.0, global_batch_size=8,
                                losses=[("lm loss", loss)], loss_scale=1.0, grad_norm=grad_norm, skipped_iterations=0,
                                nan_iterations=0, learning_rate=1e-3)


def _publisher(stack, experiment: str, warnings: list[str]) -> TrainingMetricsPublisher:
    spec = RunSpec(experiment, "3m", 128, 1.7e7, 1, "cpu", 1.0e11)
    return TrainingMetricsPublisher(spec, Pushgateway(stack.pushgateway, 1.0), job=JOB, warn=warnings.append,
                                    min_push_interval_s=0.0)


def _group_value(stack, experiment: str, metric: str) -> float | None:
    for group in stack.pushed():
        if group["labels"].get("experiment") == experiment and metric in group:
            return float(group[metric]["metrics"][0]["value"])
    return None


def _wait(predicate, timeout_s: float, step_s: float = 0.02):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return None


def _feed_until(stack, publisher, grad_norm: float, predicate, timeout_s: float):
    """Log a line every 0.25 s, as a live trainer does, until the receiver has a matching message."""
    deadline, iteration = time.monotonic() + timeout_s, 3
    while time.monotonic() < deadline:
        publisher.on_line(_line(iteration, grad_norm))
        iteration += 1
        found = stack.receiver.wait_for(predicate, 0.25)
        if found:
            return found
    return None


def _alertmanager(alertname: str, experiment: str, status: str = "firing"):
    def match(message) -> bool:
        return message.path == "/alertmanager" and any(
            a["status"] == status and a["labels"]["alertname"] == alertname and a["labels"].get("experiment") == experiment
            for a in message.body["alerts"])
    return match


def test_a_pushed_grad_norm_explosion_reaches_the_webhook(stack):
    warnings: list[str] = []
    publisher = _publisher(stack, "exp-stack", warnings)
    publisher.job_started(None, [])
    publisher.on_line(_line(1, 1.5))
    publisher.on_line(_line(2, 42.0))
    assert _wait(lambda: _group_value(stack, "exp-stack", "llm_pretrain_training_grad_norm") == 42.0, 10)
    pushed_at = time.time()
    message = _feed_until(stack, publisher, 42.0, _alertmanager("GradNormExplosion", "exp-stack"), 60)
    assert message is not None, f"no GradNormExplosion at the webhook; Prometheus alerts: {stack.alerts()}"
    print(f"\nend-to-end alert latency (pushed -> Alertmanager webhook): {message.at - pushed_at:.2f} s "
          "(1 s scrape and evaluation, group_wait 1 s)")
    (alert,) = [a for a in message.body["alerts"] if a["labels"]["alertname"] == "GradNormExplosion"]
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["model"] == "3m"
    assert alert["annotations"]["summary"] == "Gradient norm explosion in exp-stack"
    assert _group_value(stack, "exp-stack", "llm_pretrain_training_mfu_ratio") is not None

    publisher.finish()  # the run ended: its group goes, the alert resolves
    assert _wait(lambda: _group_value(stack, "exp-stack", "llm_pretrain_training_grad_norm") is None, 5, 0.1)
    assert stack.receiver.wait_for(_alertmanager("GradNormExplosion", "exp-stack", "resolved"), 60)
    assert warnings == []


def test_a_dead_run_goes_stale_and_a_finished_one_stays_quiet(stack):
    warnings: list[str] = []
    finished, dead = _publisher(stack, "exp-finished", warnings), _publisher(stack, "exp-dead", warnings)
    for publisher in (finished, dead):
        publisher.job_started(None, [])
        publisher.on_line(_line(1, 1.0))
    assert _wait(lambda: _group_value(stack, "exp-dead", "llm_pretrain_training_loss") == 2.0, 10)
    finished.finish()
    dead._worker.stop(timeout_s=2)  # the Dagster process "died": nobody deletes exp-dead's group
    try:
        stale = stack.receiver.wait_for(_alertmanager("TrainingMetricsStale", "exp-dead"), 60)
        assert stale is not None, f"no TrainingMetricsStale; Prometheus alerts: {stack.alerts()}"
        assert not [a for a in stack.alerts() if a["labels"].get("experiment") == "exp-finished"]
        assert not [m for m in stack.receiver.received if "exp-finished" in str(m.body)]
    finally:
        Pushgateway(stack.pushgateway).delete(JOB, {"experiment": "exp-dead"})
    assert warnings == []
