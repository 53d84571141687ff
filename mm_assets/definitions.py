"""The code location: assembles assets, checks, jobs, sensors and resources; no logic lives here."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from checks.catalog import catalog_row_count
from checks.crawl import every_item_accounted_for
from checks.eval import EVAL_CHECKS
from checks.metadata import METADATA_CHECKS
from checks.records import one_row_per_experiment
from checks.release import RELEASE_CHECKS
from checks.shards import SHARD_CHECKS
from checks.tokens import TOKEN_CHECKS
from checks.train import TRAIN_CHECKS
from mm_assets.config.base import DEFAULT_CONFIG
from mm_assets.config.pipeline import load_config
from mm_assets.crawl.assets import raw_media
from mm_assets.crawl.sensors import batch_manifest_sensor
from mm_assets.etl.assets import media_metadata, metadata_catalog
from mm_assets.eval.assets import EVAL_ASSETS
from mm_assets.jobs import (
    catalog_job,
    evaluate_experiment_job,
    ingest_batch_job,
    prepare_eval_job,
    records_job,
    release_job,
    train_experiment_job,
)
from mm_assets.monitor.sensor import alert_sensor
from mm_assets.records.assets import experiment_records
from mm_assets.release.assets import release_bundle
from mm_assets.shards.assets import token_shards
from mm_assets.tokens.assets import TOKEN_ASSETS
from mm_assets.train.assets import checkpoint, training_blend, training_log
from resources.compute import ComputeResource
from resources.config import PipelineConfigResource
from resources.storage import StorageResource
from resources.ytdlp import YtDlpResource


def build_resources(config_path: str | Path) -> dict[str, dg.ConfigurableResource]:
    """Every resource from one config file: the single source of truth (DESIGN.md §4)."""
    cfg = load_config(config_path)
    return {
        "pipeline": PipelineConfigResource(path=str(Path(config_path).resolve())),
        "storage": StorageResource.from_config(cfg),
        "crawler": YtDlpResource(**cfg.crawl.model_dump()),
        "compute": ComputeResource(**cfg.compute.model_dump(exclude={"credentials_file"}),
                                   credentials_file=str(cfg.credentials_path) if cfg.credentials_path else None,
                                   object_storage=cfg.storage.on_object_storage,
                                   object_storage_endpoint=cfg.storage.endpoint_url),
    }


def build_definitions(config_path: str | Path = DEFAULT_CONFIG) -> dg.Definitions:
    alerts = load_config(config_path).monitoring.alerts
    return dg.Definitions(
        assets=[raw_media, media_metadata, metadata_catalog, *TOKEN_ASSETS, token_shards,
                training_blend, checkpoint, training_log, *EVAL_ASSETS, experiment_records, release_bundle],
        asset_checks=[every_item_accounted_for, *METADATA_CHECKS, catalog_row_count, *TOKEN_CHECKS, *SHARD_CHECKS,
                      *TRAIN_CHECKS, *EVAL_CHECKS, one_row_per_experiment, *RELEASE_CHECKS],
        jobs=[ingest_batch_job, catalog_job, train_experiment_job, records_job, prepare_eval_job,
              evaluate_experiment_job, release_job],
        sensors=[batch_manifest_sensor, alert_sensor(alerts.interval_s)],
        resources=build_resources(config_path),
    )


defs = build_definitions()
