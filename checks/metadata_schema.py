"""The unified metadata schema (DESIGN.md §5, reference §B.2.2): Arrow types and the Pandera row rules.

The Arrow schema below is the single source of truth for types: the Pandera model derives its polars dtypes
from it, and every Parquet file is written with it, so an empty batch still has every nested field typed.
Row-level rules live in the Pandera model; `row_failures`/`split_valid` turn its lazy failure report into
one readable reason per failing row, so nothing is dropped without a reason.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import pandera.polars as pa
import polars as pl
import pyarrow as pa_arrow
from pandera.config import ValidationDepth, config_context

from mm_assets.config.pipeline import SOURCE_NAME

SCHEMA_VERSION = 2  # v2: metadata.license_source and metadata.upload_date_source (v1 files still read)
MODALITIES = ("text", "audio", "video", "image")  # canonical order of `modalities` and `data_paths`
LOG_STATUSES = ("success", "failed", "skipped")
# BCP 47 with an ISO 639 primary subtag: "en", "zh-Hans", "pt-BR" (3 letters only where 639-1 has no code).
LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
SHA256_HEX = r"^[0-9a-f]{64}$"
# Where a row's license came from; "page" is an item crawled before the crawl recorded which part of the page.
# "none": no license stated and the source's metadata.license_policy is `unknown` (a null license, kept).
LICENSE_SOURCES = ("page_json_ld", "page_html", "page", "info_json", "config_default")
NO_LICENSE = "none"
# Where upload_date came from; http_last_modified is yt-dlp's generic extractor reading the Last-Modified header.
UPLOAD_DATE_SOURCES = ("page_json_ld", "page_opengraph", "page", "info_json", "http_last_modified")

_s, _f64, _i32 = pa_arrow.string(), pa_arrow.float64(), pa_arrow.int32()
RESOLUTION_TYPE = pa_arrow.struct([("width", _i32), ("height", _i32)])
LOG_ENTRY_TYPE = pa_arrow.struct(
    [("stage", _s), ("timestamp", pa_arrow.timestamp("us", tz="UTC")), ("status", _s), ("hash", _s), ("message", _s)]
)
METADATA_ARROW_SCHEMA = pa_arrow.schema(
    [
        ("unique_id", _s),
        ("source", _s),
        ("source_uri", _s),
        ("modalities", pa_arrow.list_(_s)),
        ("data_paths", pa_arrow.struct([(m, _s) for m in MODALITIES])),
        (
            "metadata",
            pa_arrow.struct(
                [
                    ("title", _s),
                    ("description", _s),
                    ("license", _s),
                    ("license_source", _s),
                    ("upload_date", pa_arrow.date32()),
                    ("upload_date_source", _s),
                    ("duration_seconds", _f64),
                    ("resolution", RESOLUTION_TYPE),
                    ("sample_rate_hz", _i32),
                    ("language", _s),
                ]
            ),
        ),
        (
            "quality_scores",
            pa_arrow.struct([("text_perplexity", _f64), ("audio_snr_db", _f64), ("image_aesthetic_score", _f64)]),
        ),
        ("processing_log", pa_arrow.list_(LOG_ENTRY_TYPE)),
        (
            "data_card_info",
            pa_arrow.struct(
                [
                    ("collection_process", _s),
                    ("crawler", _s),
                    ("crawler_version", _s),
                    ("extractor", _s),
                    ("pii_detection_method", _s),
                    ("crawl_batch", _s),
                    ("schema_version", _i32),
                ]
            ),
        ),
    ],
    metadata={"mm_pretrain.schema": "unified_metadata", "mm_pretrain.schema_version": str(SCHEMA_VERSION)},
)
_PL = dict(pl.from_arrow(METADATA_ARROW_SCHEMA.empty_table()).schema)


def _fields(name: str) -> dict[str, pl.DataType]:
    return dict(_PL[name].to_schema())


def struct_field(col: str, name: str) -> pl.Expr:
    return pl.col(col).struct.field(name)


def filled(expr: pl.Expr) -> pl.Expr:
    return expr.is_not_null() & (expr.str.strip_chars().str.len_chars() > 0)


def _log_all(expr: pl.Expr) -> pl.Expr:
    return pl.col("processing_log").list.eval(expr).list.all()


def _log_any(expr: pl.Expr) -> pl.Expr:
    return pl.col("processing_log").list.eval(expr).list.any()


# check name -> (reason code, what is wrong, key path whose value the reason quotes)
CHECK_REASONS: dict[str, tuple[str, str, str | None]] = {
    "field_uniqueness": ("duplicate unique_id", "unique_id repeats another row of the batch", "unique_id"),
    "not_nullable": ("missing value", "column is null", None),
    "unique_id_format": ("bad unique_id", "unique_id must be '<source>_<id>' with id in [A-Za-z0-9._-]", "unique_id"),
    "source_name": ("bad source", f"source must match {SOURCE_NAME.pattern}", "source"),
    "source_uri_format": ("bad source_uri", "source_uri must be an absolute URI (scheme://...)", "source_uri"),
    "modalities_nonempty": ("no modality", "modalities is empty: no usable media or text", None),
    "modalities_known": ("unknown modality", f"modalities must be a subset of {list(MODALITIES)}", "modalities"),
    "modalities_unique": ("repeated modality", "a modality is listed twice", "modalities"),
    "paths_match_modalities": (
        "data path mismatch",
        "every listed modality needs a data_paths entry and every data_paths entry a listed modality",
        "data_paths",
    ),
    "license_present": ("license missing", "neither the page nor yt-dlp states a license", None),
    "license_source_valid": (
        "bad license_source",
        f"metadata.license_source must be one of {list(LICENSE_SOURCES)} with a license, or {NO_LICENSE!r} without",
        "metadata.license_source",
    ),
    "upload_date_source_valid": (
        "bad upload_date_source",
        f"metadata.upload_date_source must be one of {list(UPLOAD_DATE_SOURCES)} with a date, null without",
        "metadata.upload_date_source",
    ),
    "duration_valid": (
        "bad duration",
        "metadata.duration_seconds must be a finite number >= 0",
        "metadata.duration_seconds",
    ),
    "resolution_valid": (
        "bad resolution",
        "a video needs metadata.resolution with width and height > 0",
        "metadata.resolution",
    ),
    "sample_rate_valid": (
        "bad sample rate",
        "audio needs metadata.sample_rate_hz in [1000, 768000]",
        "metadata.sample_rate_hz",
    ),
    "language_code": (
        "bad language code",
        "metadata.language must be an ISO 639 code with optional BCP 47 subtags (en, zh-Hans)",
        "metadata.language",
    ),
    "scores_finite": ("bad quality score", "quality scores must be null or finite", "quality_scores"),
    "log_entries_valid": (
        "bad processing_log",
        f"every entry needs a stage, a timestamp and a status in {list(LOG_STATUSES)}",
        None,
    ),
    "log_has_crawl": ("bad processing_log", "no successful crawl entry", None),
    "log_has_dedup_hash": ("bad processing_log", "no dedup entry with a sha256 content hash", None),
    "data_card_filled": (
        "bad data_card_info",
        "collection_process, crawler and pii_detection_method must be set",
        "data_card_info",
    ),
}


class MediaMetadata(pa.DataFrameModel):
    """One row per accepted media item, in the reference's unified schema (quality scores stay null: no scorer)."""

    unique_id: str = pa.Field(unique=True)
    source: str
    source_uri: str
    modalities: Annotated[pl.List, _PL["modalities"].inner]
    data_paths: Annotated[pl.Struct, _fields("data_paths")]
    metadata: Annotated[pl.Struct, _fields("metadata")]
    quality_scores: Annotated[pl.Struct, _fields("quality_scores")]
    processing_log: Annotated[pl.List, _PL["processing_log"].inner]
    data_card_info: Annotated[pl.Struct, _fields("data_card_info")]

    class Config:
        strict = True  # no missing, extra or reordered-away columns
        ordered = True

    @pa.check("unique_id", name="unique_id_format")
    def _unique_id_format(cls, data):
        uid = pl.col("unique_id")
        return data.lazyframe.select(
            uid.str.starts_with(pl.col("source") + "_") & uid.str.contains(r"^[a-z][a-z0-9]*_[A-Za-z0-9._-]+$")
        )

    @pa.check("source", name="source_name")
    def _source_name(cls, data):
        return data.lazyframe.select(pl.col("source").str.contains(SOURCE_NAME.pattern))

    @pa.check("source_uri", name="source_uri_format")
    def _source_uri(cls, data):
        return data.lazyframe.select(pl.col("source_uri").str.contains(r"^[a-z][a-z0-9+.-]*://\S+$"))

    @pa.check("modalities", name="modalities_nonempty")
    def _modalities_nonempty(cls, data):
        return data.lazyframe.select(pl.col("modalities").list.len() > 0)

    @pa.check("modalities", name="modalities_known")
    def _modalities_known(cls, data):
        return data.lazyframe.select(
            pl.col("modalities").list.eval(pl.element().is_in(list(MODALITIES))).list.all()
        )

    @pa.check("modalities", name="modalities_unique")
    def _modalities_unique(cls, data):
        mods = pl.col("modalities")
        return data.lazyframe.select(mods.list.n_unique() == mods.list.len())

    @pa.check("data_paths", name="paths_match_modalities")
    def _paths_match(cls, data):
        agree = [
            pl.col("modalities").list.contains(m).fill_null(False) == filled(struct_field("data_paths", m))
            for m in MODALITIES
        ]
        return data.lazyframe.select(pl.all_horizontal(agree))

    @pa.check("metadata", name="license_present")
    def _license(cls, data):
        """A license, or license_source 'none': the ETL writes 'none' only under the `unknown` policy."""
        lic, src = struct_field("metadata", "license"), struct_field("metadata", "license_source")
        # A null metadata struct is not_nullable's failure, not a license policy's.
        ok = pl.col("metadata").is_null() | filled(lic) | (src == NO_LICENSE)
        return data.lazyframe.select(ok.fill_null(False))

    @pa.check("metadata", name="license_source_valid")
    def _license_source(cls, data):
        lic, src = struct_field("metadata", "license"), struct_field("metadata", "license_source")
        ok = (pl.when(src.is_null()).then(~filled(lic))  # null, null: license_present explains it
              .when(src == NO_LICENSE).then(lic.is_null())
              .otherwise(src.is_in(LICENSE_SOURCES) & filled(lic)))
        return data.lazyframe.select(ok.fill_null(False))

    @pa.check("metadata", name="upload_date_source_valid")
    def _upload_date_source(cls, data):
        day, src = struct_field("metadata", "upload_date"), struct_field("metadata", "upload_date_source")
        ok = pl.when(day.is_null()).then(src.is_null()).otherwise(src.is_in(UPLOAD_DATE_SOURCES))
        return data.lazyframe.select(ok.fill_null(False))

    @pa.check("metadata", name="duration_valid")
    def _duration(cls, data):
        d = struct_field("metadata", "duration_seconds")
        return data.lazyframe.select(d.is_not_null() & d.is_finite() & (d >= 0))

    @pa.check("metadata", name="resolution_valid")
    def _resolution(cls, data):
        res = struct_field("metadata", "resolution")
        ok = res.struct.field("width").fill_null(0).gt(0) & res.struct.field("height").fill_null(0).gt(0)
        has_video = pl.col("modalities").list.contains("video").fill_null(False)
        return data.lazyframe.select(pl.when(res.is_null()).then(~has_video).otherwise(ok))

    @pa.check("metadata", name="sample_rate_valid")
    def _sample_rate(cls, data):
        sr = struct_field("metadata", "sample_rate_hz")
        has_audio = pl.col("modalities").list.contains("audio").fill_null(False)
        return data.lazyframe.select(pl.when(sr.is_null()).then(~has_audio).otherwise(sr.is_between(1000, 768000)))

    @pa.check("metadata", name="language_code")
    def _language(cls, data):
        lang = struct_field("metadata", "language")
        return data.lazyframe.select(lang.is_null() | lang.str.contains(LANGUAGE_TAG.pattern))

    @pa.check("quality_scores", name="scores_finite")
    def _scores(cls, data):
        names = _PL["quality_scores"].to_schema()
        finite = [struct_field("quality_scores", n).is_finite().fill_null(True) for n in names]
        return data.lazyframe.select(pl.all_horizontal(finite))

    @pa.check("processing_log", name="log_entries_valid")
    def _log_entries(cls, data):
        e = pl.element().struct
        ok = filled(e.field("stage")) & e.field("timestamp").is_not_null() & e.field("status").is_in(LOG_STATUSES)
        return data.lazyframe.select(_log_all(ok.fill_null(False)))

    @pa.check("processing_log", name="log_has_crawl")
    def _log_crawl(cls, data):
        e = pl.element().struct
        return data.lazyframe.select(_log_any((e.field("stage") == "crawl") & (e.field("status") == "success")))

    @pa.check("processing_log", name="log_has_dedup_hash")
    def _log_dedup(cls, data):
        e = pl.element().struct
        return data.lazyframe.select(
            _log_any((e.field("stage") == "dedup") & e.field("hash").str.contains(SHA256_HEX).fill_null(False))
        )

    @pa.check("data_card_info", name="data_card_filled")
    def _data_card(cls, data):
        need = ("collection_process", "crawler", "pii_detection_method")
        return data.lazyframe.select(pl.all_horizontal([filled(struct_field("data_card_info", n)) for n in need]))


def _value_at(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _reason(check: str, column: str, row: dict[str, Any]) -> str:
    code, what, path = CHECK_REASONS.get(check, (f"failed check {check}", f"{column} failed {check}", column))
    if check == "not_nullable":
        return f"{code}: {column} is null"
    if check == "license_present":  # only `require` leaves a row without a license and without 'none'
        return (f"{code}: {what} and metadata.license_policy.{row.get('source')} is require (set it to "
                "unknown or {default: <SPDX id or URL>} to keep such items)")
    if path is None:
        return f"{code}: {what}"
    value = _value_at(row, path)
    if value is None:
        return f"{code}: {what}"
    return f"{code}: {path} = {str(value)[:120]!r}; {what}"


def row_failures(df: pl.DataFrame) -> dict[int, list[str]]:
    """Validate lazily; row position -> readable reasons (sorted, de-duplicated). Empty when all rows pass.

    A failure that names no row (a missing column or a wrong dtype) means the frame was not built from
    METADATA_ARROW_SCHEMA: that is a bug upstream, raised rather than blamed on every row.
    """
    try:
        # Pinned here: PANDERA_VALIDATION_ENABLED=False or a SCHEMA_ONLY depth would otherwise pass every row.
        with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
            MediaMetadata.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return {}
    schema_level = cases.filter(pl.col("index").is_null())
    if schema_level.height:
        details = "; ".join(f"{r['column']}: {r['check']}" for r in schema_level.iter_rows(named=True))
        raise ValueError(f"metadata frame does not match the unified schema ({details}); build it from "
                         "METADATA_ARROW_SCHEMA")
    out: dict[int, set[str]] = {}
    for idx, check, column in cases.select("index", "check", "column").unique().iter_rows():
        row = df.row(int(idx), named=True)
        out.setdefault(int(idx), set()).add(_reason(check, column, row))
    return {i: sorted(reasons) for i, reasons in sorted(out.items())}


def split_valid(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows, failing rows with a `reason` column); together they hold every input row."""
    failures = row_failures(df)
    bad = sorted(failures)
    mask = pl.Series("bad", [False] * df.height)
    if bad:
        mask = mask.scatter(bad, True)
    reasons = pl.Series("reason", ["; ".join(failures[i]) for i in bad], dtype=pl.String)
    return df.filter(~mask), df.filter(mask).with_columns(reasons)
