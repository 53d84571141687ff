"""Our item ids: safe as a path component and S3 key, and unable to clash.

yt-dlp's generic extractor names an item after the last segment of its URL, percent-decoded, so two pages
ending in `lecture.html` both become `lecture-1` (the second is "already archived"), and a page at
`..%2F..%2Fetc%2Fpasswd.html` becomes `../../etc/passwd-1` (DESIGN.md §9). Raw ids are kept verbatim in
info.json and item.json, never used in a path.
"""

from __future__ import annotations

from mm_assets.storage.paths import sanitize_component, short_hash

# Extractors whose ids come from URL file names rather than a site's own catalogue.
GENERIC_EXTRACTORS = frozenset({"Generic", "HTML5MediaEmbed", "QuotedHTML"})
MAX_STEM = 80  # sanitised stem + "-" + 10 hex digits stays under paths.MAX_COMPONENT


def derive_item_id(extractor: str | None, raw_id: object, webpage_url: str | None) -> str:
    """A site's own id when it is already safe (YouTube's `dQw4w9WgXcQ`), else `<sanitised>-<hash>`.

    The hash covers extractor, raw id and page URL: generic items from different pages never share an id,
    and ids that sanitising changed (`a/b` and `a_b`) stay distinct.
    """
    extractor = extractor or "unknown"
    raw = "" if raw_id is None else str(raw_id)
    stem = sanitize_component(raw, max_len=MAX_STEM)
    if extractor not in GENERIC_EXTRACTORS and stem == raw:
        return raw
    return f"{stem}-{short_hash(extractor, raw, webpage_url or '')}"
