"""The metadata ETL assets: `media_metadata` per crawl batch, and the DuckDB `metadata_catalog` over all."""

import dagster as dg

from mm_assets.crawl.assets import raw_media
from mm_assets.crawl.batch import load_batch
from mm_assets.crawl.ledger import read_ledger
from mm_assets.etl.catalog import build_catalog
from mm_assets.etl.dedup import load_prior_hashes
from mm_assets.etl.metadata import publish_batch_metadata
from mm_assets.partitions import crawl_batches
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


@dg.asset(
    partitions_def=crawl_batches,
    deps=[raw_media],
    group_name="etl",
    kinds={"parquet", "polars"},
    description="One Parquet file per batch in the unified metadata schema; failing rows go to quarantine.parquet.",
)
def media_metadata(
    context: dg.AssetExecutionContext, pipeline: PipelineConfigResource, storage: StorageResource
) -> dg.MaterializeResult:
    batch = context.partition_key
    cfg = pipeline.load()
    info, _ = load_batch(storage, batch)
    ledger = storage.layout.crawl_ledger(batch)
    if not storage.store.exists(ledger):
        raise dg.Failure(f"batch {batch} has no crawl ledger at {storage.store.url(ledger)}: "
                         "materialize raw_media for it first")
    records = read_ledger(storage.store.local_path(ledger))
    prior = load_prior_hashes(storage, exclude_batch=batch)
    result, urls = publish_batch_metadata(records, storage=storage, info=info, cfg=cfg, prior_hashes=prior)
    context.log.info(
        f"metadata {batch}: {result.rows} rows, {result.quarantined} quarantined, "
        f"{result.duplicates_within} duplicates within the batch, {result.duplicates_across} across batches"
    )
    return dg.MaterializeResult(metadata=result.dagster_metadata(urls))


@dg.asset(
    deps=[media_metadata, dg.AssetKey("experiment_records")],
    group_name="etl",
    kinds={"duckdb"},
    automation_condition=dg.AutomationCondition.eager(),
    description="DuckDB views over every batch's metadata, quarantine, duplicates and crawl ledger, and the experiment records.",
)
def metadata_catalog(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    result = build_catalog(storage)
    for view, n in result.views.items():
        context.log.info(f"catalog view {view}: {n} rows from {result.files[view]} Parquet files")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(result.url),
            **{f"rows.{view}": n for view, n in result.views.items()},
            "batches": result.files.get("media_metadata", 0),
            "query": "mm query \"SELECT * FROM media_metadata LIMIT 10\"",
        }
    )
