"""License policy per source, where each row's license and upload date came from, and the precedence table."""

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest

from checks.metadata import check_license_policy, check_metadata_file
from itemfactory import SOURCE, make_item, run
from mm_assets.config.pipeline import parse_config
from mm_assets.etl.precedence import PRECEDENCE

LAST_MODIFIED_TS = 1780315200  # Mon, 01 Jun 2026 12:00:00 GMT: what yt-dlp's generic extractor makes of the header


def _cfg(tmp_path, policy):
    return parse_config({"metadata": {"license_policy": {SOURCE: policy}}}, base_dir=tmp_path)


def _rows(res) -> dict[str, dict]:
    return {r["unique_id"]: r for r in pq.read_table(res.paths["metadata"]).to_pylist()}


def _unlicensed(tmp_path, videos):
    """An ordinary page: no license in the page, none in info.json."""
    return [make_item(tmp_path, "plain", 1, video=videos[0], page={}),
            make_item(tmp_path, "stated", 2, video=videos[1], page={"license": "MIT", "license_from": "html"})]


@pytest.mark.parametrize("policy, license_, source", [
    ("unknown", None, "none"),
    ({"default": "CC-BY-4.0"}, "CC-BY-4.0", "config_default"),
])
def test_policies_that_keep_an_unlicensed_item(tmp_path, videos, policy, license_, source):
    cfg = _cfg(tmp_path, policy)
    res = run(_unlicensed(tmp_path, videos), tmp_path, cfg)
    assert (res.rows, res.quarantined) == (2, 0)
    rows = _rows(res)
    assert (rows["youtube_plain"]["metadata"]["license"], rows["youtube_plain"]["metadata"]["license_source"]) == (
        license_, source)
    assert (rows["youtube_stated"]["metadata"]["license"], rows["youtube_stated"]["metadata"]["license_source"]) == (
        "MIT", "page_html")  # a stated license is never replaced by the default
    assert res.license_sources == {source: 1, "page_html": 1}
    assert res.license_policy == str(cfg.metadata.license_policy[SOURCE])
    passed, meta = check_license_policy(res.paths["metadata"], res.paths["quarantine"], cfg.metadata)
    assert passed and meta["by_license_source"] == {source: 1, "page_html": 1}, meta
    assert check_metadata_file(res.paths["metadata"])[0]


def test_require_quarantines_with_the_config_key_to_change(tmp_path, videos):
    cfg = _cfg(tmp_path, "require")
    res = run(_unlicensed(tmp_path, videos), tmp_path, cfg)
    assert (res.rows, res.quarantined) == (1, 1)
    (q,) = pq.read_table(res.paths["quarantine"]).to_pylist()
    assert q["unique_id"] == "youtube_plain" and q["reason_codes"] == ["license missing"]
    assert q["reasons"] == [q["reason"]] and "metadata.license_policy.youtube is require" in q["reason"]
    assert (q["source_uri"], q["title"]) == ("https://example.test/watch?v=plain", "Title of plain")
    assert check_license_policy(res.paths["metadata"], res.paths["quarantine"], cfg.metadata)[1][
        "quarantined_for_license"] == 1


def test_the_license_check_holds_rows_to_the_current_policy(tmp_path, videos):
    """Rows written under `unknown` or a default do not pass a stricter policy: the check names them."""
    kept = run(_unlicensed(tmp_path, videos), tmp_path, _cfg(tmp_path, "unknown"))
    passed, meta = check_license_policy(kept.paths["metadata"], None, _cfg(tmp_path, "require").metadata)
    assert not passed and meta["examples"] == {"youtube_plain": "license_source 'none' under policy require"}
    filled = run(_unlicensed(tmp_path / "b", videos), tmp_path / "b", _cfg(tmp_path, {"default": "MIT"}))
    passed, meta = check_license_policy(filled.paths["metadata"], None, _cfg(tmp_path, {"default": "CC0-1.0"}).metadata)
    assert not passed and "is not the policy's 'CC0-1.0'" in meta["examples"]["youtube_plain"]


def test_license_source_names_the_part_that_stated_it(tmp_path, videos, cfg):
    items = [
        make_item(tmp_path, "ld", 1, audio_seed=1, page={"license": "CC-BY-4.0", "license_from": "json_ld"}),
        make_item(tmp_path, "link", 2, audio_seed=2, page={"license": "https://l/1", "license_from": "html"}),
        make_item(tmp_path, "oldcrawl", 3, audio_seed=3, page={"license": "CC0-1.0"}),  # before license_from
        make_item(tmp_path, "yt", 4, audio_seed=4, page={}, info={"title": "t", "license": "Creative Commons"}),
        make_item(tmp_path, "both", 5, audio_seed=5, page={"license": "MIT", "license_from": "html"},
                  info={"title": "t", "license": "GPL-3.0"}),  # the page beats yt-dlp
    ]
    rows = _rows(run(items, tmp_path, cfg))
    got = {uid: (r["metadata"]["license"], r["metadata"]["license_source"]) for uid, r in rows.items()}
    assert got == {"youtube_ld": ("CC-BY-4.0", "page_json_ld"), "youtube_link": ("https://l/1", "page_html"),
                   "youtube_oldcrawl": ("CC0-1.0", "page"), "youtube_yt": ("Creative Commons", "info_json"),
                   "youtube_both": ("MIT", "page_html")}


def _generic_info(item_id, **extra):
    """info.json as yt-dlp's generic extractor writes it for an HTML5 page served with Last-Modified."""
    return {"id": item_id, "title": f"{item_id} (1)", "extractor": "html5", "extractor_key": "HTML5MediaEmbed",
            "timestamp": LAST_MODIFIED_TS, "upload_date": "20260601", **extra}


def test_the_page_date_beats_last_modified_and_last_modified_alone_is_logged(tmp_path, videos, cfg):
    items = [
        make_item(tmp_path, "dated", 1, video=videos[0], info=_generic_info("dated"),
                  page={"upload_date": "2025-03-01", "upload_date_from": "json_ld", "title": "Dated page"}),
        make_item(tmp_path, "og", 2, video=videos[1], info=_generic_info("og"),
                  page={"upload_date": "2024-02-03", "upload_date_from": "opengraph"}),
        make_item(tmp_path, "undated", 3, video=videos[2], info=_generic_info("undated"), page={}),
        make_item(tmp_path, "platform", 4, audio_seed=4, page={},
                  info={"title": "t", "extractor_key": "Youtube", "timestamp": 1, "upload_date": "20240521"}),
        make_item(tmp_path, "nodate", 5, audio_seed=5, page={}, info={"title": "t"}),
    ]
    res = run(items, tmp_path, cfg)
    rows = _rows(res)
    got = {uid: (r["metadata"]["upload_date"], r["metadata"]["upload_date_source"]) for uid, r in rows.items()}
    assert got == {"youtube_dated": (dt.date(2025, 3, 1), "page_json_ld"),
                   "youtube_og": (dt.date(2024, 2, 3), "page_opengraph"),
                   "youtube_undated": (dt.date(2026, 6, 1), "http_last_modified"),
                   "youtube_platform": (dt.date(2024, 5, 21), "info_json"),
                   "youtube_nodate": (None, None)}
    assert res.upload_date_sources == {"http_last_modified": 1, "info_json": 1, "none": 1, "page_json_ld": 1,
                                       "page_opengraph": 1}

    def notes(uid):
        return [e["message"] for e in rows[uid]["processing_log"] if "Last-Modified" in (e["message"] or "")]

    assert notes("youtube_undated") == ["upload_date 2026-06-01 is the HTTP Last-Modified date yt-dlp's generic "
                                        "extractor reports: the page states no publication date"]
    assert notes("youtube_dated") == notes("youtube_platform") == []
    assert rows["youtube_dated"]["metadata"]["title"] == "Dated page"  # yt-dlp's "dated (1)" loses to the page


def test_precedence_table_covers_every_field_the_etl_fills(tmp_path, videos, cfg):
    """The table is what the code uses: every metadata field has a row, and a pick outside it is refused."""
    from mm_assets.etl.precedence import pick

    res = run([make_item(tmp_path, "v", 1, video=videos[0])], tmp_path, cfg)
    fields = set(json.loads(json.dumps(_rows(res)["youtube_v"]["metadata"], default=str)))
    assert fields - set(PRECEDENCE) == {"license_source", "upload_date_source"}  # the two provenance fields
    with pytest.raises(ValueError, match="not in PRECEDENCE"):
        pick("title", {"http_last_modified": ("x", "header")}, lambda v, w, p: v, [])
