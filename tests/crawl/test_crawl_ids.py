"""Our item ids: safe path components that cannot clash, whatever the extractor's raw id is."""

from __future__ import annotations

import pytest

from mm_assets.crawl.ids import GENERIC_EXTRACTORS, derive_item_id
from mm_assets.storage.paths import MAX_COMPONENT, safe_join, sanitize_component

PAGE = "http://127.0.0.1:8000/bad/page.html"
HOSTILE = ["../../etc/passwd", "../../etc/passwd-1", "a/b", "a_b", "..", ".", "", "\x00", "a\x00b", "x" * 300,
           "日本語のタイトル", "ｆｕｌｌｗｉｄｔｈ", "é", "e\u0301", "\ud800", "-rf", "~", "$(touch x)", "a\\b", " ",
           "CON", ".hidden", "x/" * 200]


@pytest.mark.parametrize("raw", HOSTILE)
@pytest.mark.parametrize("extractor", ["Generic", "HTML5MediaEmbed", "Youtube"])
def test_hostile_ids_become_one_safe_component(tmp_path, extractor, raw):
    item_id = derive_item_id(extractor, raw, PAGE)
    assert item_id == sanitize_component(item_id), "the storage layer must not change it again"
    assert 0 < len(item_id) <= MAX_COMPONENT
    assert "/" not in item_id and "\x00" not in item_id and not item_id.startswith(".")
    assert set(item_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    target = safe_join(tmp_path / "raw" / "demo", item_id)
    assert target.parent == (tmp_path / "raw" / "demo").resolve()


def test_distinct_raw_ids_stay_distinct():
    ids = {derive_item_id(e, raw, PAGE) for e in ("Generic", "Youtube") for raw in HOSTILE}
    assert len(ids) == 2 * len(HOSTILE)  # every (extractor, raw id) pair has its own id
    assert derive_item_id("Youtube", "a/b", PAGE) != derive_item_id("Youtube", "a_b", PAGE)


def test_generic_ids_from_different_pages_do_not_clash():
    """yt-dlp gives both pages the id `lecture-1` (the second would be 'already archived')."""
    a = derive_item_id("HTML5MediaEmbed", "lecture-1", "http://h/a/lecture.html")
    b = derive_item_id("HTML5MediaEmbed", "lecture-1", "http://h/b/lecture.html")
    assert a != b and a.startswith("lecture-1-") and b.startswith("lecture-1-")


def test_safe_site_ids_are_kept_and_stable():
    assert derive_item_id("Youtube", "dQw4w9WgXcQ", "https://www.youtube.com/watch?v=dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert derive_item_id("Youtube", "dQw4w9WgXcQ", "https://youtu.be/dQw4w9WgXcQ") == "dQw4w9WgXcQ"
    assert "Generic" in GENERIC_EXTRACTORS
    first = derive_item_id("Generic", "../../etc/passwd", PAGE)
    assert first == derive_item_id("Generic", "../../etc/passwd", PAGE)  # same input, same id: reruns find it
    assert first.startswith("etc_passwd-")


def test_missing_values_still_give_an_id():
    assert derive_item_id(None, None, None) == derive_item_id(None, None, None)
    assert derive_item_id(None, None, None).startswith("x-")
