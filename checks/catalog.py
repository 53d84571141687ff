"""Checks on `metadata_catalog`: the catalog holds exactly the rows the batches wrote."""

import dagster as dg
import pyarrow.parquet as pq

from mm_assets.etl.assets import metadata_catalog
from mm_assets.etl.catalog import query_catalog
from mm_assets.storage.layout import EVERY
from resources.storage import StorageResource


def batch_row_counts(storage: StorageResource) -> dict[str, int]:
    """Rows per batch, read from each metadata Parquet footer (no data scanned)."""
    store, layout = storage.store, storage.layout
    return {layout.batch_of(key): pq.ParquetFile(store.local_path(key)).metadata.num_rows
            for key in store.list(layout.metadata_file(EVERY))}


@dg.asset_check(asset=metadata_catalog, description="Catalog row count = sum of the batches' metadata rows.")
def catalog_row_count(storage: StorageResource) -> dg.AssetCheckResult:
    expected = batch_row_counts(storage)
    if not expected:
        return dg.AssetCheckResult(passed=storage.store.exists(storage.layout.catalog()), metadata={"batches": 0})
    _, rows = query_catalog(storage.store, "SELECT batch, count(*) FROM media_metadata GROUP BY batch")
    actual = dict(rows)
    mismatched = {b: (n, actual.get(b, 0)) for b, n in expected.items() if actual.get(b, 0) != n}
    extra = sorted(set(actual) - set(expected))
    return dg.AssetCheckResult(
        passed=not mismatched and not extra,
        metadata={
            "batches": len(expected),
            "expected_rows": sum(expected.values()),
            "catalog_rows": sum(actual.values()),
            "mismatched (expected, catalog)": str(mismatched) if mismatched else "none",
            "unexpected_batches": ", ".join(extra) or "none",
        },
    )
