"""Alert messages for failed asset checks and failed runs, and their delivery: Slack-compatible JSON to webhooks
(Slack incoming webhooks, Mattermost, Rocket.Chat, or any receiver), and Slack's API through dagster-slack.

Secrets (webhook URLs, the bot token) are read from the environment when a message is sent, never from files
in the repo, and never logged: destinations are named by their config `name`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_FIELDS, MAX_VALUE = 20, 300
SEVERITY_RANK = {"WARN": 1, "ERROR": 2}


@dataclass(frozen=True)
class Alert:
    kind: str  # "check" or "run"
    severity: str  # WARN | ERROR (a failed run is ERROR)
    title: str
    run_id: str
    run_url: str
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    partition: str | None = None
    description: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def plain(value: Any) -> str:
    """A Dagster metadata value (or anything) as short text; inline images are named, not inlined."""
    raw = getattr(value, "value", value)
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str) if isinstance(raw, (dict, list)) else str(raw)
    if "data:image/" in text:
        return "(image: open the run in the UI)"
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def summary_line(alert: Alert) -> str:
    if alert.kind == "check":
        where = f" partition {alert.partition}" if alert.partition else ""
        return f"[{alert.severity}] check {alert.check} failed on {alert.asset}{where}"
    where = f" (partition {alert.partition})" if alert.partition else ""
    return f"[{alert.severity}] run of {alert.job}{where} failed"


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack's message format (`text` is the fallback every receiver shows; `blocks` the layout)."""
    facts = {"asset": alert.asset, "check": alert.check, "partition": alert.partition, "severity": alert.severity,
             "job": alert.job, "run": f"<{alert.run_url}|{alert.run_id[:8]}>"}
    details = "\n".join(f"*{k}*: {plain(v)}" for k, v in list(alert.metadata.items())[:MAX_FIELDS])
    text = f"{summary_line(alert)}: {alert.run_url}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts.items() if v]},
    ]
    if alert.description:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": plain(alert.description)}})
    if details:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": details[:2900]}})
    return {"text": text, "blocks": blocks}


def meets(severity: str, minimum: str) -> bool:
    return SEVERITY_RANK.get(severity, 2) >= SEVERITY_RANK[minimum]


class DeliveryError(RuntimeError):
    """A destination refused or did not answer; the message names the destination, never its URL."""


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str

    def send(self, payload: dict[str, Any], timeout_s: float) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(payload).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as err:
            raise DeliveryError(f"webhook {self.name!r} answered HTTP {err.code}") from None
        except (OSError, urllib.error.URLError) as err:
            raise DeliveryError(f"webhook {self.name!r} unreachable: {type(err).__name__}") from None


@dataclass(frozen=True)
class SlackChannel:
    name: str
    token: str
    channel: str
    base_url: str

    def send(self, payload: dict[str, Any], timeout_s: float) -> None:
        from dagster_slack import SlackResource

        client = SlackResource(token=self.token).get_client()
        client.base_url, client.timeout = self.base_url, int(max(1, timeout_s))
        try:
            client.chat_postMessage(channel=self.channel, text=payload["text"], blocks=payload["blocks"])
        except Exception as err:  # slack_sdk's SlackApiError / URLError / timeouts
            raise DeliveryError(f"Slack {self.name!r} refused the message: {type(err).__name__}") from None


def destinations(alerts_cfg, environ: Mapping[str, str] = os.environ) -> tuple[list, list[str]]:
    """(destinations, problems): webhooks and Slack from config, URLs and tokens resolved from the environment."""
    found, problems = [], []
    for hook in alerts_cfg.webhooks:
        url = hook.url or environ.get(hook.url_env or "", "")
        if url:
            found.append(Webhook(hook.name, url))
        else:
            problems.append(f"webhook {hook.name!r}: environment variable {hook.url_env} is not set")
    slack = alerts_cfg.slack
    if slack is not None:
        token = environ.get(slack.token_env, "")
        if token:
            found.append(SlackChannel(f"slack {slack.channel}", token, slack.channel, slack.base_url))
        else:
            problems.append(f"slack: environment variable {slack.token_env} is not set")
    return found, problems
