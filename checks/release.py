"""The release checklist (reference §B.7) as blocking checks on `release_bundle`, one per item, each proven
from the lineage and the data (mm_assets/release/checklist.py). They share one step: the bundle is read (on
object storage: downloaded and verified) once for all of them."""

from collections.abc import Iterator

import dagster as dg

from checks.eval import check_leakage
from mm_assets.records.outcome import latest_evaluation
from mm_assets.release.assets import release_bundle, release_lineage
from mm_assets.release.checklist import CHECKLIST, collect_evidence
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


LEAKAGE = next(iter(check_leakage.check_keys))  # the canary item reads its latest evaluation


@dg.multi_asset_check(
    specs=[dg.AssetCheckSpec(item.check, asset=release_bundle, blocking=True,
                             description=f"{item.section} {item.number}: {item.text} {item.rule.__doc__ or ''}".strip())
           for item in CHECKLIST],
    description="The reference's release checklist, each item checked against the lineage and the data.",
)
def release_checklist(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                      storage: StorageResource) -> Iterator[dg.AssetCheckResult]:
    lineage = release_lineage(context, pipeline, storage)
    leakage = latest_evaluation(context.instance, LEAKAGE, lineage.experiment.id)
    evidence = collect_evidence(storage, lineage, leakage)
    for item in CHECKLIST:
        verdict = item.rule(evidence)
        if verdict.passed:
            context.log.info(f"release {evidence.lineage.version}: {item.check} passed")
        else:
            context.log.error(f"release {evidence.lineage.version}: {item.check}: {verdict.reason}")
        yield dg.AssetCheckResult(check_name=item.check, asset_key=release_bundle.key, passed=verdict.passed,
                                  metadata={"reason": verdict.reason,
                                            "items": dg.MetadataValue.json(list(verdict.lines))})


RELEASE_CHECKS = [release_checklist]
