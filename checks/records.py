"""Checks on `experiment_records`: one row per experiment."""

import dagster as dg
import pyarrow.parquet as pq

from mm_assets.records.assets import experiment_records
from resources.storage import StorageResource


@dg.asset_check(asset=experiment_records, description="One row per experiment id, no id twice.")
def one_row_per_experiment(storage: StorageResource) -> dg.AssetCheckResult:
    table = storage.store.local_path(storage.layout.records_table())
    ids = pq.read_table(table, columns=["experiment_id"]).column(0).to_pylist()
    return dg.AssetCheckResult(passed=len(ids) == len(set(ids)), metadata={"rows": len(ids)})
