"""Prometheus file-service-discovery targets for a running job: dcgm-exporter on each of its nodes.

Prometheus reads every `*.json` in the targets folder (file_sd_configs) and re-reads on change; removing the
file when the job ends makes Prometheus drop the targets and mark their series stale at once, so nothing is
scraped from nodes that no longer run the job.
"""

from __future__ import annotations

import json
from pathlib import Path

from mm_assets.paths import atomic_write_text
from mm_assets.train.slurm_state import HOSTNAME


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


def write_targets(path: Path, groups: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(groups, indent=2, sort_keys=True) + "\n")
    return path


def remove_targets(path: Path) -> None:
    path.unlink(missing_ok=True)
