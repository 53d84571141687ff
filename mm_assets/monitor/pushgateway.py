"""A Prometheus Pushgateway client: replace or delete one group, each call bounded by a timeout.

A group is the set of metrics under one grouping key (`job` plus e.g. `experiment`); a push (HTTP PUT) replaces
the whole group, so a group always holds one consistent snapshot, and the Pushgateway stamps it with
`push_time_seconds`, which the rules use to tell a live run from a dead one (values never go stale there).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from mm_assets.monitor.metrics import Metric, family


@dataclass(frozen=True)
class Sample:
    metric: Metric
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


class _Snapshot:
    """A prometheus_client collector that yields fixed samples, grouped into their metric families."""

    def __init__(self, samples: Iterable[Sample]):
        self.samples = list(samples)

    def collect(self):
        families: dict[str, tuple[Metric, list[Sample]]] = {}
        for s in self.samples:
            families.setdefault(s.metric.name, (s.metric, []))[1].append(s)
        for metric, samples in families.values():
            labels = sorted(samples[0].labels)
            missing = set(metric.labels) - set(labels)
            if missing:
                raise ValueError(f"{metric.name}: labels {sorted(missing)} missing (the table names {metric.labels})")
            cls = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
            fam = cls(family(metric), metric.help, labels=labels)
            for s in samples:
                fam.add_metric([str(s.labels[k]) for k in labels], float(s.value))
            yield fam


class Pushgateway:
    """One Pushgateway at `url` (http://host:port). Errors propagate (OSError/URLError): callers decide."""

    def __init__(self, url: str, timeout_s: float = 2.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def push(self, job: str, grouping_key: Mapping[str, str], samples: Iterable[Sample]) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Snapshot(s for s in samples if not _is_inf(s.value)))
        push_to_gateway(self.url, job=job, registry=registry, grouping_key=dict(grouping_key), timeout=self.timeout_s)

    def delete(self, job: str, grouping_key: Mapping[str, str]) -> None:
        delete_from_gateway(self.url, job=job, grouping_key=dict(grouping_key), timeout=self.timeout_s)


def _is_inf(value: float) -> bool:
    # NaN is pushed (a NaN loss is news); an infinite gauge would only break averages, so it is left out.
    return math.isinf(value)
