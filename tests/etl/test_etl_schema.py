"""The unified schema: a good batch validates, every reference field is in the Parquet with its nested type."""

import datetime as dt

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from checks.metadata import check_license_policy, check_metadata_file, check_quarantine, check_unique_ids
from checks.metadata_schema import METADATA_ARROW_SCHEMA, row_failures, split_valid
from itemfactory import BATCH, REGISTERED, SOURCE, good_batch
from mm_assets.etl.metadata import build_metadata

# Reference §B.2.2, field by field (data_card_info may carry more than the two fields the reference shows).
REFERENCE = {
    "unique_id": pa.string(),
    "source": pa.string(),
    "source_uri": pa.string(),
    "modalities": pa.list_(pa.string()),
    "data_paths": {"text": pa.string(), "audio": pa.string(), "video": pa.string(), "image": pa.string()},
    "metadata": {
        "title": pa.string(),
        "description": pa.string(),
        "license": pa.string(),
        "license_source": pa.string(),  # schema v2
        "upload_date": pa.date32(),
        "upload_date_source": pa.string(),  # schema v2
        "duration_seconds": pa.float64(),
        "resolution": {"width": pa.int32(), "height": pa.int32()},
        "sample_rate_hz": pa.int32(),
        "language": pa.string(),
    },
    "quality_scores": {"text_perplexity": pa.float64(), "audio_snr_db": pa.float64(),
                       "image_aesthetic_score": pa.float64()},
    "processing_log": [{"stage": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "status": pa.string(),
                        "hash": pa.string()}],
    "data_card_info": {"collection_process": pa.string(), "pii_detection_method": pa.string()},
}


def _assert_has(arrow_type, expected, path):
    if isinstance(expected, dict):
        assert pa.types.is_struct(arrow_type), f"{path} is {arrow_type}, not a struct"
        for name, sub in expected.items():
            idx = arrow_type.get_field_index(name)
            assert idx >= 0, f"{path}.{name} is missing"
            _assert_has(arrow_type.field(idx).type, sub, f"{path}.{name}")
    elif isinstance(expected, list):
        assert pa.types.is_list(arrow_type), f"{path} is {arrow_type}, not a list"
        _assert_has(arrow_type.value_type, expected[0], f"{path}[]")
    else:
        assert arrow_type == expected, f"{path} is {arrow_type}, expected {expected}"


@pytest.fixture
def good(tmp_path, videos, cfg):
    items = good_batch(tmp_path, videos)
    return build_metadata(items, batch=BATCH, source=SOURCE, registered_at=REGISTERED, cfg=cfg, prior_hashes={},
                          out_dir=tmp_path / "metadata" / BATCH)


def test_good_batch_validates_and_passes_every_check(good, cfg):
    assert (good.items, good.rows, good.quarantined, good.duplicates_within, good.duplicates_across) == (4, 4, 0, 0, 0)
    assert good.modalities == {"audio": 3, "text": 2, "video": 2}
    assert good.audio_hours == pytest.approx(1.5 / 3600)
    for passed, meta in (check_metadata_file(good.paths["metadata"]), check_unique_ids(good.paths["metadata"]),
                         check_license_policy(good.paths["metadata"], good.paths["quarantine"], cfg.metadata),
                         check_quarantine(good.paths["metadata"], good.paths["quarantine"], good.paths["duplicates"],
                                          cfg.metadata)):
        assert passed, meta
    assert check_metadata_file(good.paths["metadata"])[1]["rows"] == 4


def test_parquet_holds_every_reference_field_with_nested_types(good):
    schema = pq.read_schema(good.paths["metadata"])
    for name, expected in REFERENCE.items():
        _assert_has(schema.field(name).type, expected, name)
    assert schema.remove_metadata().equals(METADATA_ARROW_SCHEMA.remove_metadata())
    assert schema.metadata[b"mm_pretrain.schema_version"] == b"2"


def test_row_values(good):
    rows = {r["unique_id"]: r for r in pq.read_table(good.paths["metadata"]).to_pylist()}
    assert list(rows) == sorted(rows)  # sorted by unique_id
    vid = rows["youtube_vid1"]
    assert vid["modalities"] == ["text", "audio", "video"]
    assert vid["data_paths"]["video"].endswith("raw/youtube/vid1/vid1.mp4")
    assert vid["data_paths"]["text"].endswith("vid1.en.vtt") and vid["data_paths"]["image"] is None
    meta = vid["metadata"]
    assert meta["upload_date"] == dt.date(2024, 5, 21) and meta["license"] == "CC-BY-4.0"
    assert meta["resolution"] == {"width": 64, "height": 48} and meta["sample_rate_hz"] == 16000
    assert meta["language"] == "en"  # from the subtitle: info.json has no language
    assert vid["quality_scores"] == {"text_perplexity": None, "audio_snr_db": None, "image_aesthetic_score": None}
    stages = [(e["stage"], e["status"]) for e in vid["processing_log"]]
    assert stages == [("crawl", "success"), ("etl", "success"), ("dedup", "success")]
    assert vid["processing_log"][0]["timestamp"] == dt.datetime(2026, 11, 29, 1, 2, 3, tzinfo=dt.timezone.utc)
    card = vid["data_card_info"]
    assert card["collection_process"] == "Automated crawl via yt-dlp 2026.10.26"
    assert (card["crawler"], card["pii_detection_method"], card["crawl_batch"]) == ("yt-dlp", "none", BATCH)
    # aud2: a title full of shell metacharacters is data, kept verbatim; its language is its subtitle's
    assert rows["youtube_aud2"]["metadata"]["title"] == "音频 $(rm -rf ~); `x` | y"
    assert rows["youtube_aud2"]["metadata"]["language"] == "zh-Hans"
    assert rows["youtube_aud2"]["metadata"]["resolution"] is None  # no video, no resolution
    # aud3: license from info.json when the page gave none; language from info.json
    assert rows["youtube_aud3"]["metadata"]["license"] == "CC0-1.0"
    assert rows["youtube_aud3"]["metadata"]["language"] == "en"
    assert rows["youtube_vid4"]["metadata"]["language"] is None


def test_duckdb_reads_the_nested_parquet(good):
    path = str(good.paths["metadata"])
    con = duckdb.connect()
    rows = con.execute(
        "SELECT unique_id, metadata.license, metadata.resolution.width, processing_log[1].stage, "
        "list_contains(modalities, 'audio') FROM read_parquet(?) ORDER BY unique_id", [path]
    ).fetchall()
    assert rows[0] == ("youtube_aud2", "CC-BY-4.0", None, "crawl", True)
    assert rows[2] == ("youtube_vid1", "CC-BY-4.0", 64, "crawl", True)
    # every output file of the batch reads too
    for name in ("quarantine", "duplicates", "hashes"):
        con.execute("SELECT count(*) FROM read_parquet(?)", [str(good.paths[name])]).fetchone()


def test_empty_batch_writes_typed_files(tmp_path, cfg):
    res = build_metadata([], batch=BATCH, source=SOURCE, registered_at=REGISTERED, cfg=cfg, prior_hashes={},
                         out_dir=tmp_path)
    assert res.rows == res.quarantined == 0
    assert pq.read_schema(res.paths["metadata"]).remove_metadata().equals(METADATA_ARROW_SCHEMA.remove_metadata())
    assert check_metadata_file(res.paths["metadata"])[0]
    assert check_quarantine(res.paths["metadata"], res.paths["quarantine"], res.paths["duplicates"],
                            cfg.metadata) == (True, {"quarantined": 0, "items": 0, "fraction": 0.0,
                                                     "max_fraction": 0.2})


def _frame(good, mutate):
    """The good batch's rows with one row changed by `mutate(row)`; rebuilt through the Arrow schema."""
    rows = pq.read_table(good.paths["metadata"]).to_pylist()
    mutate(rows[0])
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=METADATA_ARROW_SCHEMA))


BAD_ROWS = [
    (lambda r: r["metadata"].update(license=None, license_source=None),
     "license missing: neither the page nor yt-dlp states a license and metadata.license_policy.youtube is require"),
    (lambda r: r["metadata"].update(license="  ", license_source=None), "license missing"),
    (lambda r: r["metadata"].update(license=None), "bad license_source: metadata.license_source = 'page'"),
    (lambda r: r["metadata"].update(license_source="none"), "bad license_source"),
    (lambda r: r["metadata"].update(license_source="guessed"), "bad license_source"),
    (lambda r: r["metadata"].update(upload_date_source="info_json"), "bad upload_date_source"),  # no date
    (lambda r: r["metadata"].update(upload_date_source="the moon"), "bad upload_date_source"),
    (lambda r: r["metadata"].update(language="English"), "bad language code: metadata.language = 'English'"),
    (lambda r: r["metadata"].update(duration_seconds=-1.0), "bad duration: metadata.duration_seconds = '-1.0'"),
    (lambda r: r["metadata"].update(duration_seconds=float("nan")), "bad duration"),
    (lambda r: r["metadata"].update(sample_rate_hz=None), "bad sample rate"),
    (lambda r: r.update(modalities=[]), "no modality"),
    (lambda r: r.update(modalities=["text", "audio", "smell"]), "unknown modality"),
    (lambda r: r["data_paths"].update(audio=None), "data path mismatch"),
    (lambda r: r.update(unique_id="web_x"), "bad unique_id"),
    (lambda r: r.update(unique_id="youtube_vid4"), "duplicate unique_id"),
    (lambda r: r.update(source_uri="not a uri"), "bad source_uri"),
    (lambda r: r.update(processing_log=r["processing_log"][:2]), "no dedup entry"),
    (lambda r: r["processing_log"][0].update(status="ok"), "bad processing_log"),
    (lambda r: r["quality_scores"].update(audio_snr_db=float("inf")), "bad quality score"),
    (lambda r: r["data_card_info"].update(crawler=None), "bad data_card_info"),
    (lambda r: r.update(metadata=None), "missing value: metadata is null"),
]


@pytest.mark.parametrize("mutate, reason", BAD_ROWS, ids=[f"{i}-{r.split(':')[0]}" for i, (_, r) in
                                                           enumerate(BAD_ROWS)])
def test_split_valid_routes_failing_rows_with_a_reason(good, mutate, reason):
    df = _frame(good, mutate)
    valid, bad = split_valid(df)
    assert valid.height + bad.height == df.height  # nothing dropped
    assert bad.height >= 1 and reason in bad["reason"][0], bad["reason"].to_list()
    assert bad.columns == df.columns + ["reason"]
    assert valid.height >= df.height - 2


def test_a_frame_not_built_from_the_schema_is_a_bug_not_bad_rows(good):
    df = pl.read_parquet(good.paths["metadata"]).with_columns(pl.col("source").cast(pl.Categorical))
    with pytest.raises(ValueError, match="does not match the unified schema"):
        row_failures(df)


def test_schema_check_fails_on_a_wrong_parquet(tmp_path, good):
    wrong = tmp_path / "wrong.parquet"
    table = pq.read_table(good.paths["metadata"]).drop_columns(["quality_scores"])
    pq.write_table(table, wrong)
    passed, meta = check_metadata_file(wrong)
    assert not passed and meta["mismatched_columns"] == ["quality_scores"]


def test_validation_cannot_be_switched_off_by_the_environment(good):
    from pandera.config import config_context

    df = _frame(good, lambda r: r["metadata"].update(license=None, license_source=None))
    with config_context(validation_enabled=False, validation_depth="SCHEMA_ONLY"):
        assert len(row_failures(df)) == 1
