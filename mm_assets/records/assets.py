"""`experiment_records` (group `records`): the reference's experiment table (§B.7), one row per trained
experiment, as Parquet (queryable with `mm query`) and Markdown; an evaluated experiment's result summary
adds its eval report's headline metrics, PPL and canary verdict.

A result is listed only from an attempt whose training assets materialized with every blocking check passed
(outcome.py reads that from the Dagster instance). A failed attempt is listed as `failed` with the check or
step that failed, and no result columns: the files of a failed run are never reported as its result.
"""

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from checks.train import TRAIN_CHECKS
from mm_assets.config.base import ConfigError
from mm_assets.eval.assets import eval_report
from mm_assets.eval.report import eval_summary
from mm_assets.partitions import experiments
from mm_assets.records.outcome import FAILED, experiment_outcome
from mm_assets.records.table import RECORDS_SCHEMA, experiment_row, to_markdown
from mm_assets.train.assets import checkpoint, training_log
from mm_assets.train.launch.experiment import load_experiment
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

# The blocking checks that decide whether an attempt's result may be listed.
BLOCKING_CHECKS = [spec.key for c in TRAIN_CHECKS for spec in c.check_specs if spec.blocking]


@dg.asset(group_name="records", kinds={"parquet"},
          deps=[dg.AssetDep(a, partition_mapping=dg.AllPartitionMapping())
                for a in (checkpoint, training_log, eval_report)],
          description="The experiment table: id, date, git commit, config path, key changes, result summary, notes.")
def experiment_records(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                       storage: StorageResource) -> dg.MaterializeResult:
    cfg = pipeline.load()
    rows = []
    for exp_id in sorted(context.instance.get_dynamic_partitions(experiments.name)):
        try:
            exp = load_experiment(cfg, exp_id)
        except ConfigError as err:
            context.log.warning(f"experiment {exp_id} skipped: {err}")
            continue
        outcome = experiment_outcome(context.instance, exp_id, final_asset=training_log.key,
                                     blocking_checks=BLOCKING_CHECKS)
        if outcome is not None:
            rows.append(experiment_row(storage, exp, outcome, eval_summary(storage, exp_id, cfg.eval.leakage)))
    table = storage.layout.records_table()
    with storage.store.publish(table, wait=True) as staged:
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORDS_SCHEMA), staged)
    storage.store.write_text(storage.layout.records_markdown(), to_markdown(rows))
    return dg.MaterializeResult(metadata={
        "experiments": len(rows),
        "failed": sum(r["status"] == FAILED for r in rows),
        "path": dg.MetadataValue.path(storage.store.url(table)),
        "table": dg.MetadataValue.md(to_markdown(rows)),
    })
