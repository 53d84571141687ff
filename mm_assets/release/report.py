"""`mm release checklist <version>`: the reference's Markdown checklist (§B.7), each box ticked by the latest
evaluation of its blocking check on the release's latest `release_bundle` materialization, with the reason
the check gave. Items no check owns say who decides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg

from mm_assets.records.outcome import latest_evaluation
from mm_assets.release.assets import release_bundle
from mm_assets.release.checklist import CHECKLIST, ChecklistItem

# The reference's Release steps that no check owns.
RELEASE_STEPS = {
    2: "Upload to model hub / object storage.",
    3: "Announce release with links and documentation.",
}


@dataclass(frozen=True)
class Box:
    ticked: bool
    text: str
    why: str
    lines: tuple[str, ...] = ()

    def markdown(self, number: int) -> list[str]:
        return [f"- [{'x' if self.ticked else ' '}] {number}. {self.text}",
                *(f"  - {line}" for line in self.lines), f"  - why: {self.why}"]


def _box(instance: dg.DagsterInstance, item: ChecklistItem, version: str) -> Box:
    evaluation = latest_evaluation(instance, dg.AssetCheckKey(release_bundle.key, item.check), version)
    if evaluation.status is None:
        return Box(False, item.text, f"not checked yet: `mm release build {version}` (check {item.check})")
    reason = str(evaluation.metadata.get("reason", f"check {item.check} {evaluation.status.value.lower()}"))
    lines = tuple(evaluation.metadata.get("items") or ())
    return Box(evaluation.passed, item.text, f"{reason} (check {item.check})", lines)


def _upload_box(materialization: dict[str, Any] | None, complete: Box) -> Box:
    text = RELEASE_STEPS[2]
    url = str((materialization or {}).get("url", ""))
    if not url:
        return Box(False, text, "no bundle materialized")
    if not url.startswith("s3://"):
        return Box(False, text, f"the bundle is in the local folder {url}; with storage.root: s3://… it is "
                                "written to object storage")
    return Box(complete.ticked, text, f"written to {url}, manifest last" +
               ("" if complete.ticked else "; not verified there (see Release 1)"))


def latest_bundle(instance: dg.DagsterInstance, version: str) -> dict[str, Any] | None:
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=release_bundle.key, asset_partitions=[version]), limit=1).records
    if not found or found[0].asset_materialization is None:
        return None
    return {k: getattr(v, "value", v) for k, v in found[0].asset_materialization.metadata.items()}


def checklist_markdown(instance: dg.DagsterInstance, version: str, model_name: str) -> tuple[str, bool]:
    """The checklist, and whether every box a check owns is ticked."""
    boxes = {(i.section, i.number): _box(instance, i, version) for i in CHECKLIST}
    lines = [f"# Model Release Checklist: {model_name} - {version}", "", "## Pre-Release"]
    for (section, number), box in sorted(boxes.items()):
        if section == "Pre-Release":
            lines += box.markdown(number)
    complete = boxes[("Release", 1)]
    lines += ["", "## Release", *complete.markdown(1)]
    lines += _upload_box(latest_bundle(instance, version), complete).markdown(2)
    lines += Box(False, RELEASE_STEPS[3], "left to a person: mm-pretrain does not announce releases").markdown(3)
    return "\n".join(lines) + "\n", all(box.ticked for box in boxes.values())
