"""Subtitles: strict UTF-8 (a BOM is fine); a bad file drops the text modality with a logged reason."""

import polars as pl

from itemfactory import VTT_EN, VTT_ZH, make_item, run
from mm_assets.etl.subtitles import Subtitle, choose_text, language_order, read_subtitle, vtt_text


def test_non_utf8_subtitles_drop_text_but_keep_the_item(tmp_path, cfg, videos):
    latin1 = "WEBVTT\n\n00:00.000 --> 00:01.000\ncafé déjà vu\n".encode("latin-1")
    rec, folder = make_item(tmp_path, "v1", 1, video=videos[0], audio_seed=1, subs={"fr": latin1})
    res = run([(rec, folder)], tmp_path, cfg)
    assert (res.rows, res.quarantined) == (1, 0)
    row = pl.read_parquet(res.paths["metadata"]).row(0, named=True)
    assert row["modalities"] == ["audio", "video"] and row["data_paths"]["text"] is None
    failed = [e for e in row["processing_log"] if e["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["stage"] == "subtitles"
    assert failed[0]["message"].startswith(
        "subtitle fr (v1.fr.vtt) is not UTF-8 ('utf-8' codec can't decode byte 0xe9")
    assert row["metadata"]["language"] is None  # an unreadable subtitle does not set the language


def test_a_readable_subtitle_is_used_when_another_is_not(tmp_path, cfg):
    subs = {"en": b"WEBVTT\n\n00:00.000 --> 00:01.000\n\xff\xfe bad\n", "zh-Hans": VTT_ZH}
    rec, folder = make_item(tmp_path, "a1", 1, audio_seed=1, subs=subs)
    row = pl.read_parquet(run([(rec, folder)], tmp_path, cfg).paths["metadata"]).row(0, named=True)
    assert row["modalities"] == ["text", "audio"] and row["data_paths"]["text"].endswith("a1.zh-Hans.vtt")
    assert row["metadata"]["language"] == "zh-Hans"
    assert [e["stage"] for e in row["processing_log"] if e["status"] == "failed"] == ["subtitles"]


def test_utf8_bom_is_fine(tmp_path):
    path = tmp_path / "x.en.vtt"
    path.write_bytes(b"\xef\xbb\xbf" + VTT_EN.encode())
    sub = read_subtitle(path, "en")
    assert sub.ok and sub.text == "hello world & more\nsecond line"


def test_not_webvtt_or_empty(tmp_path):
    (tmp_path / "a.vtt").write_text("1\n00:00:00,000 --> 00:00:01,000\nsrt text\n")
    (tmp_path / "b.vtt").write_text("WEBVTT\n\nNOTE nothing here\n")
    assert read_subtitle(tmp_path / "a.vtt", "en").error == "subtitle en (a.vtt) is not WebVTT (no WEBVTT header)"
    assert read_subtitle(tmp_path / "b.vtt", "en").error == "subtitle en (b.vtt) has no cue text"


def test_vtt_text_strips_markup_and_rolling_repeats():
    doc = ("WEBVTT\nKind: captions\nLanguage: en\n\nSTYLE\n::cue { color: red }\n\n"
           "cue-1\n00:00:00.000 --> 00:00:01.000 align:start\n<00:00:00.500><c>one</c>\n\n"
           "00:00:01.000 --> 00:00:02.000\none\ntwo &lt;3\n")
    assert vtt_text(doc) == "one\ntwo <3"


def test_language_choice_follows_the_primary_language_then_configured_order(tmp_path):
    subs = [Subtitle(lang, tmp_path / f"{lang}.vtt", False, text="t") for lang in ("de", "zh-Hant", "en-US", "en")]
    pref = ["en", "zh-Hans", "zh-Hant"]
    assert language_order(["de", "zh-Hant", "en", "ab"], pref) == ["en", "zh-Hant", "ab", "de"]
    assert choose_text(subs, pref, None).lang == "en"
    assert choose_text(subs, pref, "zh").lang == "zh-Hant"  # same primary subtag
    assert choose_text(subs, pref, "de").lang == "de"
    assert choose_text(subs, pref, "fr").lang == "en"  # no French text: first in configured order
    assert choose_text([Subtitle("live_chat", tmp_path / "l", False, text="t")], pref, None) is None
