"""Bad items go to quarantine with a readable reason; the rest of the batch proceeds; nothing is lost."""

import json

import polars as pl
import pyarrow.parquet as pq
import pytest

from checks.metadata import check_license_policy, check_quarantine
from itemfactory import SOURCE, good_batch, make_item, run
from mm_assets.config.pipeline import MetadataConfig, parse_config

REQUIRE = "license missing: neither the page nor yt-dlp states a license and metadata.license_policy.youtube is require"


def _quarantine(res) -> dict[str, dict]:
    return {r["unique_id"]: r for r in pq.read_table(res.paths["quarantine"]).to_pylist()}


def _ids(res) -> list[str]:
    return pq.read_table(res.paths["metadata"], columns=["unique_id"])["unique_id"].to_pylist()


@pytest.fixture
def require(tmp_path):
    """The config where an item without a license is quarantined (the `require` policy)."""
    return parse_config({"metadata": {"license_policy": {SOURCE: "require"}}}, base_dir=tmp_path)


@pytest.fixture
def mixed(tmp_path, videos, require):
    items = good_batch(tmp_path, videos) + [
        make_item(tmp_path, "notjson", 5, audio_seed=5, info=b"{not json"),
        make_item(tmp_path, "isalist", 6, audio_seed=6, info=[1, 2]),
        make_item(tmp_path, "noitem", 7, audio_seed=7, write_item_json=False),
        make_item(tmp_path, "nolicense", 8, audio_seed=8, page={}),
        make_item(tmp_path, "badlang", 9, audio_seed=9, info={"title": "x", "language": "English"}),
        make_item(tmp_path, "negdur", 10, video=videos[2], probe={"duration_seconds": -3.0, "width": 64, "height": 48}),
        make_item(tmp_path, "baddate", 11, audio_seed=11, info={"title": "x", "upload_date": "last tuesday"}),
        make_item(tmp_path, "badtitle", 12, audio_seed=12, info={"title": {"nested": True}}),
        make_item(tmp_path, "nomedia", 13),
    ]
    return run(items, tmp_path, require)


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_proceed(mixed):
    assert _ids(mixed) == ["youtube_aud2", "youtube_aud3", "youtube_vid1", "youtube_vid4"]
    q = _quarantine(mixed)
    reasons = {uid: row["reason"] for uid, row in q.items()}
    assert reasons["youtube_notjson"].startswith("malformed info.json: Expecting property name enclosed in double")
    assert reasons["youtube_isalist"] == "malformed info.json: the top level is a JSON list, not an object"
    assert reasons["youtube_noitem"] == "missing item.json: item.json is not in the item folder"
    assert reasons["youtube_nolicense"].startswith(REQUIRE)
    assert reasons["youtube_badlang"].startswith("bad language code: metadata.language = 'english'")
    assert reasons["youtube_negdur"].startswith("bad duration: metadata.duration_seconds = '-3.0'")
    assert reasons["youtube_baddate"] == (
        "bad upload_date: info.json upload_date = 'last tuesday' is not YYYYMMDD or ISO 8601")
    assert reasons["youtube_badtitle"] == "bad field: info.json title is a JSON dict, expected text"
    assert "no modality: modalities is empty" in reasons["youtube_nomedia"]
    assert mixed.items == 13 and mixed.rows + mixed.quarantined == 13  # every ok item accounted for
    assert mixed.quarantine_reasons["license missing"] == 1
    assert q["youtube_nolicense"]["reason_codes"] == ["license missing"]
    assert q["youtube_notjson"]["line_no"] == 5 and q["youtube_notjson"]["item_dir"].endswith("raw/youtube/notjson")


def test_quarantined_row_json_keeps_what_could_be_read(mixed):
    row = json.loads(_quarantine(mixed)["youtube_nolicense"]["row_json"])
    assert row["unique_id"] == "youtube_nolicense" and row["modalities"] == ["audio"]
    assert row["metadata"]["license"] is None and row["metadata"]["sample_rate_hz"] == 16000
    stub = json.loads(_quarantine(mixed)["youtube_noitem"]["row_json"])
    assert stub["source_uri"] == "https://example.test/watch?v=noitem" and stub["metadata"] is None


def test_asset_checks_on_a_batch_with_quarantine(mixed, require):
    paths = mixed.paths
    passed, meta = check_license_policy(paths["metadata"], paths["quarantine"], require.metadata)
    assert passed and meta["quarantined_for_license"] == 1  # unlicensed items are counted, not in training
    passed, meta = check_quarantine(paths["metadata"], paths["quarantine"], paths["duplicates"],
                                    MetadataConfig(quarantine_max_fraction=0.2))
    assert not passed and meta["quarantined"] == 9 and meta["fraction"] == pytest.approx(9 / 13, abs=1e-6)
    assert meta["by_reason"]["license missing"] == 1 and meta["by_reason"]["malformed info.json"] == 2
    assert check_quarantine(paths["metadata"], paths["quarantine"], paths["duplicates"],
                            MetadataConfig(quarantine_max_fraction=0.8))[0]


def test_unsafe_or_missing_file_names_in_item_json(tmp_path, cfg, videos):
    rec, folder = make_item(tmp_path, "escape", 1, audio_seed=1)
    item = json.loads((folder / "item.json").read_text())
    item["files"]["video"] = "../../../../etc/passwd"
    item["files"]["subtitles"] = {"en": {"file": "gone.en.vtt", "automatic": True}}
    (folder / "item.json").write_text(json.dumps(item))
    res = run([(rec, folder)], tmp_path, cfg)
    reason = _quarantine(res)["youtube_escape"]["reason"]
    assert "files.video = '../../../../etc/passwd' leaves the item folder" in reason
    assert "missing file: files.subtitles.en names 'gone.en.vtt'" in reason


def test_ledger_and_item_json_must_agree(tmp_path, cfg):
    rec, folder = make_item(tmp_path, "a1", 1, audio_seed=1)
    rec.item_id = "other"
    res = run([(rec, folder)], tmp_path, cfg)
    assert "ledger mismatch: item.json item_id 'a1' != ledger 'other'" in _quarantine(res)["youtube_other"]["reason"]


def test_non_ok_records_are_refused(tmp_path, cfg):
    rec, folder = make_item(tmp_path, "a1", 1, audio_seed=1)
    rec.status = "failed"
    with pytest.raises(ValueError, match="ok ledger records only"):
        run([(rec, folder)], tmp_path, cfg)


def test_unreadable_audio_drops_the_modality_with_a_log_entry(tmp_path, cfg, videos):
    rec, folder = make_item(tmp_path, "v1", 1, video=videos[0], audio_seed=1)
    (folder / "v1.wav").write_bytes(b"RIFF garbage")
    res = run([(rec, folder)], tmp_path, cfg)
    row = pl.read_parquet(res.paths["metadata"]).row(0, named=True)
    assert row["modalities"] == ["video"] and row["metadata"]["sample_rate_hz"] is None
    failed = [e for e in row["processing_log"] if e["status"] == "failed"]
    assert failed[0]["stage"] == "audio" and "v1.wav dropped: unreadable" in failed[0]["message"]


def test_unforeseen_errors_and_untyped_rows_are_quarantined_not_fatal(tmp_path, cfg, monkeypatch):
    import mm_assets.etl.metadata as etl

    items = [make_item(tmp_path, f"a{i}", i, audio_seed=i) for i in (1, 2, 3)]
    real = etl.build_item_row

    def flaky(record, item_dir, **kw):
        row = real(record, item_dir, **kw)
        if record.item_id == "a1":
            raise OSError(5, "Input/output error")
        if record.item_id == "a2":
            row.row["metadata"]["sample_rate_hz"] = "sixteen thousand"  # does not fit int32
        return row

    monkeypatch.setattr(etl, "build_item_row", flaky)
    res = run(items, tmp_path, cfg)
    reasons = {uid: r["reason"] for uid, r in _quarantine(res).items()}
    assert reasons["youtube_a1"] == "unexpected error: OSError: [Errno 5] Input/output error"
    assert reasons["youtube_a2"].startswith("untyped row: does not fit the metadata schema")
    assert _ids(res) == ["youtube_a3"]


def test_huge_numbers_in_info_json_are_reasons(tmp_path, cfg):
    rec, folder = make_item(tmp_path, "big", 1, audio_seed=1, info=b'{"title": "t", "width": 1e999, "duration": 1' +
                            b"0" * 400 + b"}")
    res = run([(rec, folder)], tmp_path, cfg)
    assert res.rows == 1  # the wav's duration wins over info.json's; width is only read for a video
    rec, folder = make_item(tmp_path, "big2", 2, video=b"not really a video", probe={},
                            info=b'{"title": "t", "width": 1' + b"0" * 400 + b', "height": 5, "duration": 1}')
    reason = _quarantine(run([(rec, folder)], tmp_path, cfg))["youtube_big2"]["reason"]
    assert "bad field: info.json width = '1000" in reason and "is not a number" in reason
