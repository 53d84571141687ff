"""Checks on the eval assets: the reference's data-leakage guard (blocking) and the decontamination report."""

from collections import Counter

import dagster as dg
import pyarrow.parquet as pq

from mm_assets.eval.assets import configured_tasks, decontamination_report, eval_report
from mm_assets.eval.report import leakage_verdicts, read_report, verdicts_markdown
from mm_assets.eval.sets import load_eval_set
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


@dg.asset_check(asset=eval_report, blocking=True,
                description="Reference §B.6: leakage when a task's canary accuracy > eval.leakage.canary_accuracy_min "
                            "and > its standard accuracy + eval.leakage.margin_min (the canary was memorised).")
def check_leakage(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                  storage: StorageResource) -> dg.AssetCheckResult:
    rule = pipeline.load().eval.leakage
    verdicts = leakage_verdicts(read_report(storage, context.partition_key), rule)
    leaked = [v for v in verdicts if v.leaked]
    worst = max(verdicts, key=lambda v: v.margin, default=None)
    return dg.AssetCheckResult(passed=not leaked, metadata={
        "leaked_tasks": ", ".join(v.task_name for v in leaked) or "none",
        "canary_accuracy": worst.canary_accuracy if worst else -1.0,
        "standard_accuracy": worst.standard_accuracy if worst else -1.0,
        "margin": worst.margin if worst else 0.0,
        "worst_task": worst.task_name if worst else "none (no task has canary and standard accuracy)",
        "rule": f"canary > {rule.canary_accuracy_min} and canary > standard + {rule.margin_min}",
        "tasks": dg.MetadataValue.md(verdicts_markdown(verdicts)),
    })


@dg.asset_check(asset=decontamination_report,
                description="Warns when more than eval.decontamination.max_overlap_share of an eval set shares an "
                            "n-gram with the training text; the overlapping samples are listed.")
def eval_sets_decontaminated(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource,
                             storage: StorageResource) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    report = storage.store.local_path(storage.layout.decontamination_report(context.partition_key))
    rows = pq.read_table(report).to_pylist()
    per_task = Counter(r["task_name"] for r in rows)
    sizes = {t.task_name: len(load_eval_set(storage, t.task_name).rows) for t in configured_tasks(cfg)}
    shares = {task: per_task[task] / n for task, n in sizes.items()}
    over = {task: share for task, share in shares.items() if share > cfg.eval.decontamination.max_overlap_share}
    listed = "\n".join(f"{r['task_name']}/{r['sample_id']}: \"{r['example']}\" ({r['ngrams']} n-grams, document "
                       f"{r['document']} of {r['shard']})" for r in rows[:50])
    return dg.AssetCheckResult(passed=not over, severity=dg.AssetCheckSeverity.WARN, metadata={
        "max_overlap_share": cfg.eval.decontamination.max_overlap_share,
        "over_threshold": ", ".join(f"{t} {s:.2f}" for t, s in over.items()) or "none",
        "shares": dg.MetadataValue.json(shares),
        "overlapping_per_task": dg.MetadataValue.json(dict(per_task)),
        "overlapping_items": dg.MetadataValue.md(f"```\n{listed}\n```" if listed else "none"),
    })


EVAL_CHECKS = [check_leakage, eval_sets_decontaminated]
