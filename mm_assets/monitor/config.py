"""The `monitoring:` section of configs/pipeline.yaml: where metrics go, each alert signal's thresholds (shared by
its Prometheus rule and its training_log check), and where failed checks and runs are delivered.

Durations are Prometheus durations ("90s", "15m", "1h30m"); they go into the generated rules verbatim.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from mm_assets.config.base import Section

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_LABEL_VALUE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def duration_seconds(text: str) -> float:
    """A Prometheus duration ("1h30m") in seconds; ValueError names the text."""
    m = _DURATION.fullmatch(text)
    if not text or not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a Prometheus duration: write e.g. 30s, 15m, 2h or 1h30m")
    return sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS) if g)


def _valid_duration(text: str) -> str:
    duration_seconds(text)
    return text


Duration = Annotated[str, AfterValidator(_valid_duration)]
AlertSeverity = Literal["info", "warning", "critical"]  # the `severity` label Alertmanager routes on
CheckSeverity = Literal["WARN", "ERROR"]  # dg.AssetCheckSeverity


class AlertSpec(Section):
    """How long a condition must hold (`for`) and the severity label of the alert. Each signal's subclass holds
    its own defaults, so overriding one key keeps the others."""

    for_: Duration = Field("5m", alias="for")
    severity: AlertSeverity = "warning"


class WindowAlert(AlertSpec):
    window: Duration = "1h"


class SampledWindowAlert(WindowAlert):
    min_samples: Annotated[int, Field(ge=1)] = 10  # pushes seen in *each* window before the rule may fire


class CheckSpec(Section):
    severity: CheckSeverity = "WARN"


# -- one section per signal: the threshold its rule and its training_log check share -------------------------


class GradNormAlert(AlertSpec):
    for_: Duration = Field("5m", alias="for")  # the reference's
    severity: AlertSeverity = "critical"


class GradNormCheck(CheckSpec):
    severity: CheckSeverity = "ERROR"


class GradNormSignal(Section):
    threshold: Annotated[float, Field(gt=0)] = 10.0  # the reference's
    alert: GradNormAlert = GradNormAlert()
    check: GradNormCheck = GradNormCheck()


class StagnationAlert(SampledWindowAlert):
    for_: Duration = Field("2h", alias="for")  # the reference's window and `for`
    window: Duration = "1h"


class StagnationCheck(CheckSpec):
    window_iterations: Annotated[int, Field(ge=1)] = 100  # compare the mean loss of consecutive windows
    min_records: Annotated[int, Field(ge=1)] = 5  # logged records each window needs to count


class StagnationSignal(Section):
    min_delta: Annotated[float, Field(gt=0)] = 0.001  # the reference's
    alert: StagnationAlert = StagnationAlert()
    check: StagnationCheck = StagnationCheck()


class GpuUtilizationAlert(AlertSpec):
    for_: Duration = Field("15m", alias="for")  # the reference's
    severity: AlertSeverity = "critical"


class GpuUtilizationSignal(Section):
    threshold_percent: Annotated[float, Field(gt=0, le=100)] = 50.0  # the reference's
    alert: GpuUtilizationAlert = GpuUtilizationAlert()


class ThroughputAlert(SampledWindowAlert):
    for_: Duration = Field("15m", alias="for")
    window: Duration = "10m"
    baseline: Duration = "1h"  # the window before `window` that it is compared against
    min_samples: Annotated[int, Field(ge=1)] = 5


class ThroughputCheck(CheckSpec):
    min_tokens_per_s: Annotated[float, Field(gt=0)] | None = None  # median tokens/s floor; None: no floor
    skip_records: Annotated[int, Field(ge=0)] = 1  # the first interval includes start-up: not counted


class ThroughputSignal(Section):
    max_drop: Annotated[float, Field(gt=0, lt=1)] = 0.5  # alert when tokens/s falls below (1 - max_drop) × baseline
    mfu_floor: Annotated[float, Field(gt=0, lt=1)] | None = 0.2  # MFU below this is an alert and a failed check
    alert: ThroughputAlert = ThroughputAlert()
    check: ThroughputCheck = ThroughputCheck()


class SkippedAlert(WindowAlert):
    for_: Duration = Field("0s", alias="for")


class SkippedSignal(Section):
    max_skipped: Annotated[int, Field(ge=0)] = 10  # skipped iterations (loss-scale overflow, NaN) allowed per window/run
    alert: SkippedAlert = SkippedAlert()
    check: CheckSpec = CheckSpec()


class NonFiniteAlert(WindowAlert):
    for_: Duration = Field("0s", alias="for")
    window: Duration = "10m"
    severity: AlertSeverity = "critical"


class NonFiniteSignal(Section):
    alert: NonFiniteAlert = NonFiniteAlert()


class StaleAlert(AlertSpec):
    for_: Duration = Field("0s", alias="for")
    severity: AlertSeverity = "critical"


class StalenessSignal(Section):
    after: Duration = "15m"  # no push for this long while the run's group exists (it is deleted when the run ends)
    alert: StaleAlert = StaleAlert()


class PushgatewayDownAlert(AlertSpec):
    severity: AlertSeverity = "critical"


class PushgatewayDownSignal(Section):
    alert: PushgatewayDownAlert = PushgatewayDownAlert()


class SignalsConfig(Section):
    grad_norm_explosion: GradNormSignal = GradNormSignal()
    loss_stagnation: StagnationSignal = StagnationSignal()
    gpu_utilization_low: GpuUtilizationSignal = GpuUtilizationSignal()
    throughput: ThroughputSignal = ThroughputSignal()
    skipped_iterations: SkippedSignal = SkippedSignal()
    non_finite_loss: NonFiniteSignal = NonFiniteSignal()
    metrics_stale: StalenessSignal = StalenessSignal()
    pushgateway_down: PushgatewayDownSignal = PushgatewayDownSignal()


class PushgatewayConfig(Section):
    url: str | None = None  # e.g. http://127.0.0.1:9091 (scripts/monitoring/start.sh); None: nothing is pushed
    training_job: str = "llm_pretrain_training"  # the `job` label of each experiment's group
    data_job: str = "llm_pretrain_data"  # the `job` label of each crawl/token batch's group
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    min_push_interval_s: Annotated[float, Field(ge=0)] = 5.0  # while the log streams; the last record always goes

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^\s/]+", url):
            raise ValueError(f"{url!r}: give the Pushgateway's http(s)://host:port, or null to push nothing")
        return url.rstrip("/") if url else url

    @field_validator("training_job", "data_job")
    @classmethod
    def _label(cls, job: str) -> str:
        if not _LABEL_VALUE.match(job):
            raise ValueError(f"job {job!r}: use letters, digits and underscores (it is a Prometheus label value)")
        return job


class WebhookConfig(Section):
    """A webhook that takes Slack-compatible JSON. Give `url`, or `url_env` (the variable holding a secret URL)."""

    name: str
    url: str | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "WebhookConfig":
        if (self.url is None) == (self.url_env is None):
            raise ValueError(f"webhook {self.name!r}: give exactly one of url (a URL) or url_env (a variable name)")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError(f"webhook {self.name!r}: url {self.url!r} must start with http:// or https://")
        return self


class SlackConfig(Section):
    """Slack's API through dagster-slack (chat.postMessage); the bot token only from the environment."""

    token_env: str = "SLACK_BOT_TOKEN"
    channel: str
    base_url: str = "https://slack.com/api/"  # Slack's; another value only for a Slack-compatible server


class AlertsConfig(Section):
    """The alert sensor: failed asset checks (any asset) and failed runs, delivered once each."""

    ui_url: str = "http://127.0.0.1:3000"  # links to runs: <ui_url>/runs/<run id>
    min_severity: CheckSeverity = "WARN"  # WARN: every failed check; ERROR: only ERROR checks
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    slack: SlackConfig | None = None
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0
    interval_s: Annotated[int, Field(ge=1)] = 30  # the sensor's minimum interval


class MonitoringConfig(Section):
    pushgateway: PushgatewayConfig = PushgatewayConfig()
    # Dense BF16 peak FLOP/s per device, by training.cluster.gpu_type ("cpu" for gpus_per_node: 0), for MFU.
    peak_flops_per_device: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: {"h100": 9.89e14, "h200": 9.89e14, "a100": 3.12e14})
    dcgm_exporter_port: Annotated[int, Field(ge=1, le=65535)] = 9400  # file_sd targets: <node>:<port>
    signals: SignalsConfig = SignalsConfig()
    alerts: AlertsConfig = AlertsConfig()
