"""Asset checks on `media_metadata`: schema (blocking), unique ids, licenses, quarantine share.

Pure functions over the written files return (passed, metadata); the Dagster checks below wrap them.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from checks.metadata_schema import METADATA_ARROW_SCHEMA, SCHEMA_VERSION, filled, row_failures, struct_field
from mm_assets.config import MetadataConfig
from mm_assets.etl.assets import media_metadata
from mm_assets.etl.metadata import DUPLICATES_FILE, METADATA_FILE, QUARANTINE_FILE
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

# -- asset checks: pure functions over the written files, returning (passed, metadata) ----------------------


def check_metadata_file(path: Path) -> tuple[bool, dict[str, Any]]:
    """Blocking schema check: the Parquet's Arrow schema is exactly the unified one and every row validates."""
    schema = pq.read_schema(path)
    same = schema.remove_metadata().equals(METADATA_ARROW_SCHEMA.remove_metadata())
    meta: dict[str, Any] = {"path": str(path), "schema_matches": same, "schema_version": SCHEMA_VERSION}
    if not same:
        diff = [f.name for f in METADATA_ARROW_SCHEMA if f.name not in schema.names or schema.field(f.name) != f]
        meta["mismatched_columns"] = diff + [n for n in schema.names if n not in METADATA_ARROW_SCHEMA.names]
        return False, meta
    df = pl.read_parquet(path)
    failures = row_failures(df)
    meta.update(rows=df.height, failing_rows=len(failures))
    if failures:
        meta["first_failures"] = {df["unique_id"][i]: r for i, r in list(failures.items())[:10]}
    return not failures, meta


def check_unique_ids(path: Path) -> tuple[bool, dict[str, Any]]:
    ids = pl.read_parquet(path, columns=["unique_id"])["unique_id"]
    repeated = ids.filter(ids.is_duplicated()).unique().sort()
    nulls = ids.null_count()
    return (repeated.len() == 0 and nulls == 0), {
        "rows": ids.len(),
        "repeated_ids": repeated.len(),
        "null_ids": nulls,
        "examples": repeated.head(10).to_list(),
    }


def check_license_present(metadata_path: Path, quarantine_path: Path | None = None) -> tuple[bool, dict[str, Any]]:
    """Every accepted row names a license; unlicensed items are counted in quarantine, not in training."""
    df = pl.read_parquet(metadata_path, columns=["unique_id", "metadata"])
    missing = df.filter(~filled(struct_field("metadata", "license")))
    meta: dict[str, Any] = {"rows": df.height, "missing_license": missing.height,
                            "examples": missing["unique_id"].head(10).to_list()}
    if quarantine_path is not None and Path(quarantine_path).exists():
        q = pl.read_parquet(quarantine_path, columns=["reason_codes"])
        meta["quarantined_for_license"] = q.filter(pl.col("reason_codes").list.contains("license missing")).height
    return missing.height == 0, meta


def check_quarantine(
    metadata_path: Path, quarantine_path: Path, duplicates_path: Path, cfg: MetadataConfig
) -> tuple[bool, dict[str, Any]]:
    """Quarantined share of the batch's ok items (accepted + duplicates + quarantined) within the configured max."""
    rows = pq.read_metadata(metadata_path).num_rows
    quarantined = pq.read_metadata(quarantine_path).num_rows
    duplicates = pq.read_metadata(duplicates_path).num_rows
    total = rows + duplicates + quarantined
    fraction = quarantined / total if total else 0.0
    meta: dict[str, Any] = {"quarantined": quarantined, "items": total, "fraction": round(fraction, 6),
                            "max_fraction": cfg.quarantine_max_fraction}
    if quarantined:
        codes = pl.read_parquet(quarantine_path, columns=["reason_codes"])["reason_codes"].explode()
        meta["by_reason"] = dict(sorted(codes.value_counts().iter_rows()))
    return fraction <= cfg.quarantine_max_fraction, meta


# -- Dagster asset checks ---------------------------------------------------------------------------------


def _result(passed: bool, meta: dict[str, Any], severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=severity, metadata={k: _md(v) for k, v in meta.items()})


def _md(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else dg.MetadataValue.json(value)


def _batch_file(context: dg.AssetCheckExecutionContext, storage: StorageResource, name: str) -> Path:
    return storage.metadata_dir(context.partition_key) / name


@dg.asset_check(asset=media_metadata, blocking=True, description="The Parquet has the unified schema and every row passes the Pandera model.")
def metadata_schema(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    return _result(*check_metadata_file(_batch_file(context, storage, METADATA_FILE)))


@dg.asset_check(asset=media_metadata, blocking=True, description="unique_id is unique and never null.")
def metadata_unique_ids(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    return _result(*check_unique_ids(_batch_file(context, storage, METADATA_FILE)))


@dg.asset_check(asset=media_metadata, blocking=True, description="Every accepted row names a license; unlicensed items are in quarantine.")
def metadata_license_present(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    return _result(*check_license_present(
        _batch_file(context, storage, METADATA_FILE), _batch_file(context, storage, QUARANTINE_FILE)
    ))


@dg.asset_check(asset=media_metadata, description="Share of quarantined items within metadata.quarantine_max_fraction.")
def metadata_quarantine(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, pipeline: PipelineConfigResource
) -> dg.AssetCheckResult:
    passed, meta = check_quarantine(
        _batch_file(context, storage, METADATA_FILE),
        _batch_file(context, storage, QUARANTINE_FILE),
        _batch_file(context, storage, DUPLICATES_FILE),
        pipeline.load().metadata,
    )
    return _result(passed, meta, severity=dg.AssetCheckSeverity.WARN)


METADATA_CHECKS = [metadata_schema, metadata_unique_ids, metadata_license_present, metadata_quarantine]
