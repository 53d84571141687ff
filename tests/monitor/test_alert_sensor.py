"""The alert sensor on a real Dagster instance, posting to a loopback webhook receiver (and to a Slack-API stand-in
on loopback through dagster-slack): each failed check and each failed run is delivered exactly once."""

import dagster as dg
import pytest
import yaml

from mm_assets.monitor.sensor import alert_sensor
from resources.config import PipelineConfigResource
from monitoring_stack import Ticker

PARTS = dg.StaticPartitionsDefinition(["exp-a", "exp-b"])


@dg.asset(partitions_def=PARTS)
def trained() -> None:
    return None


@dg.asset_check(asset=trained, description="fails with ERROR")
def grad_norm_bounded() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"max_grad_norm": 42.5, "above_at": "3: 42.5"})


@dg.asset_check(asset=trained, description="fails with WARN")
def loss_not_stagnant() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"windows_compared": 2})


@dg.asset_check(asset=trained, description="passes")
def few_skipped_iterations() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.op
def explode():
    raise RuntimeError("the trainer died: NCCL timeout")


@dg.job
def broken():
    explode()


def _defs(tmp_path, alerts: dict) -> dg.Definitions:
    (tmp_path / "configs").mkdir(exist_ok=True)
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "data")},
                                   "monitoring": {"alerts": {"ui_url": "http://ui.example:3000", **alerts}}}))
    return dg.Definitions(assets=[trained], asset_checks=[grad_norm_bounded, loss_not_stagnant, few_skipped_iterations],
                          jobs=[broken], sensors=[alert_sensor(1)],
                          resources={"pipeline": PipelineConfigResource(path=str(cfg))})


def _materialize(defs, instance, partition):
    return dg.materialize([trained, grad_norm_bounded, loss_not_stagnant, few_skipped_iterations],
                          partition_key=partition, instance=instance,
                          resources={"pipeline": defs.resources["pipeline"]})


def test_each_failed_check_and_run_is_delivered_once(tmp_path, webhook):
    defs = _defs(tmp_path, {"webhooks": [{"name": "ops", "url": f"{webhook.url}/hooks/ops"}]})
    with dg.instance_for_test() as instance:
        _materialize(defs, instance, "exp-a")  # before the sensor started: history is not replayed
        assert not defs.resolve_job_def("broken").execute_in_process(instance=instance, raise_on_error=False).success
        tick = Ticker(defs, instance)
        assert "started" in tick()
        _materialize(defs, instance, "exp-b")
        assert "delivered 2 alert(s)" in tick()
        for _ in range(3):
            assert "no failed check or run" in tick()
        assert not defs.resolve_job_def("broken").execute_in_process(instance=instance, raise_on_error=False).success
        assert "delivered 1 alert(s)" in tick()
        assert "no failed check or run" in tick()

    texts = [m.body["text"] for m in webhook.received]
    assert len(texts) == 3 and all(m.path == "/hooks/ops" for m in webhook.received)
    check = next(m.body for m in webhook.received if "grad_norm_bounded" in m.body["text"])
    assert check["text"].startswith("[ERROR] check grad_norm_bounded failed on trained partition exp-b: "
                                     "http://ui.example:3000/runs/")
    fields = " ".join(f["text"] for f in check["blocks"][1]["fields"])
    assert "*asset*\ntrained" in fields and "*partition*\nexp-b" in fields and "*severity*\nERROR" in fields
    assert "<http://ui.example:3000/runs/" in fields
    assert "*max_grad_norm*: 42.5" in check["blocks"][-1]["text"]["text"]
    assert any(t.startswith("[WARN] check loss_not_stagnant failed on trained partition exp-b") for t in texts)
    run = next(m.body for m in webhook.received if m.body["text"].startswith("[ERROR] run of broken failed"))
    assert "NCCL timeout" in run["blocks"][2]["text"]["text"]


def test_min_severity_error_skips_warnings_and_slack_goes_through_dagster_slack(tmp_path, webhook, monkeypatch):
    monkeypatch.setenv("MM_TEST_SLACK_TOKEN", "xoxb-test-token")
    monkeypatch.setenv("MM_TEST_HOOK", f"{webhook.url}/hooks/secret")
    defs = _defs(tmp_path, {"min_severity": "ERROR", "webhooks": [{"name": "ops", "url_env": "MM_TEST_HOOK"}],
                            "slack": {"token_env": "MM_TEST_SLACK_TOKEN", "channel": "#mm-alerts",
                                      "base_url": f"{webhook.url}/api/"}})
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        tick()
        _materialize(defs, instance, "exp-a")
        assert "delivered 1 alert(s) to 2 destination(s)" in tick()
    paths = sorted(m.path for m in webhook.received)
    assert paths == ["/api/chat.postMessage", "/hooks/secret"]
    slack = next(m.body for m in webhook.received if m.path == "/api/chat.postMessage")
    assert slack["channel"] == "#mm-alerts" and "grad_norm_bounded" in slack["text"]


def test_an_unreachable_webhook_is_reported_and_the_sensor_goes_on(tmp_path, webhook):
    webhook.status = 500
    defs = _defs(tmp_path, {"webhooks": [{"name": "ops", "url": f"{webhook.url}/down"}]})
    with dg.instance_for_test() as instance:
        tick = Ticker(defs, instance)
        tick()
        _materialize(defs, instance, "exp-a")
        assert "2 deliveries failed" in tick()
        assert "no failed check or run" in tick()  # handled once: not retried on every tick


@pytest.mark.parametrize("bad", [{"url": "ftp://x"}, {}, {"url": "http://x", "url_env": "X"}])
def test_a_webhook_needs_exactly_one_http_source(tmp_path, bad):
    from mm_assets.config.base import ConfigError

    with pytest.raises(ConfigError, match="monitoring.alerts.webhooks.0"):
        _defs(tmp_path, {"webhooks": [{"name": "ops", **bad}]}).resources["pipeline"].load()
