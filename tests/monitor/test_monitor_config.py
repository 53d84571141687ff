"""The monitoring: section is typed like the rest of configs/pipeline.yaml: unknown keys and bad values are
refused with their key path."""

import pytest

from mm_assets.config.pipeline import load_config, parse_config
from mm_assets.monitor.config import duration_seconds
from mm_assets.config.base import ConfigError


@pytest.mark.parametrize("section, where, hint", [
    ({"pushgatway": {}}, "monitoring.pushgatway", "Extra inputs"),
    ({"signals": {"grad_norm_explosion": {"threshold": "10"}}}, "monitoring.signals.grad_norm_explosion.threshold",
     "write 10 without quotes"),
    ({"signals": {"loss_stagnation": {"alert": {"window": "1hour"}}}}, "monitoring.signals.loss_stagnation.alert.window",
     "not a Prometheus duration"),
    ({"signals": {"gpu_utilization_low": {"alert": {"severity": "page"}}}},
     "monitoring.signals.gpu_utilization_low.alert.severity", "'info', 'warning' or 'critical'"),
    ({"signals": {"grad_norm_explosion": {"check": {"severity": "FATAL"}}}},
     "monitoring.signals.grad_norm_explosion.check.severity", "'WARN' or 'ERROR'"),
    ({"pushgateway": {"url": "127.0.0.1:9091"}}, "monitoring.pushgateway.url", "http(s)://host:port"),
    ({"pushgateway": {"training_job": "llm-pretrain"}}, "monitoring.pushgateway.training_job", "underscores"),
])
def test_bad_monitoring_config_names_its_key(section, where, hint):
    with pytest.raises(ConfigError) as err:
        parse_config({"monitoring": section})
    assert where in str(err.value) and hint in str(err.value)


def test_the_shipped_config_and_durations():
    monitoring = load_config().monitoring
    assert monitoring.pushgateway.url is None  # the embedded default pushes nothing
    assert monitoring.signals.grad_norm_explosion.threshold == 10.0
    assert monitoring.signals.grad_norm_explosion.alert.for_ == "5m"
    assert [duration_seconds(d) for d in ("90s", "15m", "1h30m", "250ms")] == [90, 900, 5400, 0.25]
