"""Jobs: what a user (or the manifest sensor) launches for a crawl batch and for the catalog."""

import dagster as dg

# Everything per batch: crawl, then metadata ETL (its blocking checks gate downstream steps).
ingest_batch_job = dg.define_asset_job(
    "ingest_batch",
    selection=dg.AssetSelection.groups("crawl", "etl") - dg.AssetSelection.assets("metadata_catalog"),
    description="Crawl one batch and build its unified metadata Parquet.",
)

catalog_job = dg.define_asset_job(
    "refresh_catalog",
    selection=dg.AssetSelection.assets("metadata_catalog"),
    description="Rebuild the DuckDB catalog over every batch's metadata.",
)
