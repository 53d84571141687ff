"""Prometheus file-service-discovery targets for a running job: dcgm-exporter on each of its nodes.

Prometheus reads every `*.json` in the targets folder (file_sd_configs, ArtifactLayout.monitoring_targets) and
re-reads on change. When the job ends its file is rewritten as an empty list: Prometheus drops the targets and
marks their series stale at once, so nothing is scraped from nodes that no longer run the job. The folder must
be one Prometheus can read: under a local storage root, that is the folder itself (scripts/monitoring/start.sh).
"""

from __future__ import annotations

import json

from mm_assets.storage.store import Storage
from resources.slurm.state import HOSTNAME


def target_groups(experiment: str, nodes: list[str], port: int, job_id: str | None) -> list[dict]:
    """One file_sd group per node, so each target carries its own `node_id` label."""
    groups = []
    for node in nodes:
        if not HOSTNAME.match(node):
            raise ValueError(f"node {node!r} is not a host name")
        labels = {"experiment": experiment, "node_id": node}
        if job_id:
            labels["slurm_job_id"] = job_id
        groups.append({"targets": [f"{node}:{port}"], "labels": labels})
    return groups


def write_targets(storage: Storage, experiment: str, groups: list[dict]) -> str:
    """The experiment's target file (atomic: Prometheus never reads half of it); returns its key."""
    key = storage.layout.monitoring_target(experiment)
    storage.store.write_text(key, json.dumps(groups, indent=2, sort_keys=True) + "\n")
    return key
