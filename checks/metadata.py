"""Asset checks on `media_metadata`: schema (blocking), unique ids, license policy (blocking), quarantine share.

Pure functions over the written files return (passed, metadata); the Dagster checks below wrap them.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq

from checks.metadata_schema import (
    LICENSE_SOURCES,
    METADATA_ARROW_SCHEMA,
    NO_LICENSE,
    SCHEMA_VERSION,
    row_failures,
    struct_field,
)
from mm_assets.config.pipeline import LicensePolicy, MetadataConfig
from mm_assets.etl.assets import media_metadata
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

# -- asset checks: pure functions over the written files, returning (passed, metadata) ----------------------


def check_metadata_file(path: Path) -> tuple[bool, dict[str, Any]]:
    """Blocking schema check: the Parquet's Arrow schema is exactly the unified one and every row validates."""
    schema = pq.read_schema(path)
    same = schema.remove_metadata().equals(METADATA_ARROW_SCHEMA.remove_metadata())
    written = (schema.metadata or {}).get(b"mm_pretrain.schema_version", b"?").decode()
    meta: dict[str, Any] = {"path": str(path), "schema_matches": same, "schema_version": SCHEMA_VERSION,
                            "file_schema_version": written}
    if not same:
        if written != str(SCHEMA_VERSION):
            meta["hint"] = (f"written with schema v{written}; this code writes v{SCHEMA_VERSION}: rematerialize "
                            "media_metadata for this batch (older files still read in the catalog)")
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


# What each policy accepts as a row's license_source (null: the row names no license and no policy admits it).
POLICY_SOURCES = {
    "require": set(LICENSE_SOURCES) - {"config_default"},
    "default": set(LICENSE_SOURCES),
    "unknown": (set(LICENSE_SOURCES) - {"config_default"}) | {NO_LICENSE},
}


def _policy_violation(policy: LicensePolicy, license_: str | None, source: str | None) -> str | None:
    if source not in POLICY_SOURCES[policy.kind]:
        return f"license_source {source!r} under policy {policy}"
    if source == "config_default" and license_ != policy.license:
        return f"config default {license_!r} is not the policy's {policy.license!r}"
    if (source == NO_LICENSE) != (not license_):
        return f"license {license_!r} with license_source {source!r}"
    return None


def check_license_policy(metadata_path: Path, quarantine_path: Path | None, cfg: MetadataConfig
                         ) -> tuple[bool, dict[str, Any]]:
    """Every accepted row's license agrees with its source's metadata.license_policy: `require` rows name a
    stated license, `default` rows a stated one or the configured default, `unknown` rows a stated one or
    none ('none'). Counts rows by license_source and the items quarantined for a missing license."""
    df = pl.read_parquet(metadata_path, columns=["unique_id", "source", "metadata"])
    has_source = "license_source" in dict(df.schema["metadata"].to_schema())
    lic = struct_field("metadata", "license")
    src = struct_field("metadata", "license_source") if has_source else pl.lit(None, pl.String)
    rows = df.select("unique_id", "source", lic.alias("license"), src.alias("license_source")).iter_rows()
    bad = {}
    for uid, source, license_, license_source in rows:
        if not has_source:  # a schema v1 file: only "every row has a license" can be checked
            problem = None if license_ else "no license (schema v1 file: rematerialize it)"
        else:
            problem = _policy_violation(cfg.license_policy_for(source), license_, license_source)
        if problem:
            bad[uid] = problem
    by_source = df.select(src.fill_null("null").alias("s"))["s"].value_counts()
    meta: dict[str, Any] = {
        "rows": df.height,
        "policies": {s: str(cfg.license_policy_for(s)) for s in sorted(set(df["source"].to_list()))},
        "by_license_source": dict(sorted(by_source.iter_rows())),
        "violations": len(bad),
        "examples": dict(list(bad.items())[:10]),
    }
    if quarantine_path is not None and Path(quarantine_path).exists():
        q = pl.read_parquet(quarantine_path, columns=["reason_codes"])
        meta["quarantined_for_license"] = q.filter(pl.col("reason_codes").list.contains("license missing")).height
    return not bad, meta


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


def _batch_file(context: dg.AssetCheckExecutionContext, storage: StorageResource, kind: str) -> Path:
    """The batch's metadata file of `kind` (metadata, quarantine, duplicates), as a local file."""
    return storage.store.local_path(storage.layout.metadata_files(context.partition_key)[kind])


@dg.asset_check(asset=media_metadata, blocking=True, description="The Parquet has the unified schema and every row passes the Pandera model.")
def metadata_schema(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    return _result(*check_metadata_file(_batch_file(context, storage, "metadata")))


@dg.asset_check(asset=media_metadata, blocking=True, description="unique_id is unique and never null.")
def metadata_unique_ids(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    return _result(*check_unique_ids(_batch_file(context, storage, "metadata")))


@dg.asset_check(asset=media_metadata, blocking=True,
                description="Every accepted row's license agrees with its source's metadata.license_policy.")
def metadata_license_present(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, pipeline: PipelineConfigResource
) -> dg.AssetCheckResult:
    return _result(*check_license_policy(
        _batch_file(context, storage, "metadata"), _batch_file(context, storage, "quarantine"),
        pipeline.load().metadata,
    ))


@dg.asset_check(asset=media_metadata, description="Share of quarantined items within metadata.quarantine_max_fraction.")
def metadata_quarantine(
    context: dg.AssetCheckExecutionContext, storage: StorageResource, pipeline: PipelineConfigResource
) -> dg.AssetCheckResult:
    passed, meta = check_quarantine(
        _batch_file(context, storage, "metadata"),
        _batch_file(context, storage, "quarantine"),
        _batch_file(context, storage, "duplicates"),
        pipeline.load().metadata,
    )
    return _result(passed, meta, severity=dg.AssetCheckSeverity.WARN)


METADATA_CHECKS = [metadata_schema, metadata_unique_ids, metadata_license_present, metadata_quarantine]
