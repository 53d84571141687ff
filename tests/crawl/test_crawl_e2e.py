"""End to end over the loopback server, through crawl_batch (what raw_media runs): the demo site and the bad
inputs in one batch, crawled twice (the rerun must download nothing and give the same ledger), then an item seen
again by another batch."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf

from mm_assets.config.pipeline import CrawlConfig, parse_config
from mm_assets.crawl.batch import load_batch, register_batch
from mm_assets.crawl.ledger import ItemRecord, read_ledger, write_ledger
from mm_assets.crawl.pool import crawl_batch
from mm_assets.crawl.probe import probe_media
from mm_assets.crawl.progress import CrawlProgress
from mm_assets.crawl.staging import is_resumable
from mm_assets.demo.media import LICENSE_URL, SHELL_TITLE
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import sha256_file
from resources.storage import StorageResource
from resources.ytdlp import YtDlpResource

pytestmark = pytest.mark.slow
SETTINGS = dict(workers=2, subtitle_languages=["en", "zh-Hans"], audio_sample_rate_hz=16000, audio_channels=1,
                item_timeout_s=6.0, socket_timeout_s=5.0, retries=0)
TMP_PWNED_BEFORE = Path("/tmp/pwned").exists()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / "raw").rglob("*")}


@pytest.fixture(scope="module")
def crawl(tmp_path_factory, demo_site, demo_server, bad_site, bad_server):
    project = tmp_path_factory.mktemp("project")
    storage = StorageResource(root=str(project / "store"))
    cfg = parse_config({"sources": {"names": ["demo"]}}, base_dir=project)
    urls = demo_site.urls(demo_server.base_url) + bad_site.urls(bad_server.base_url)
    manifest = project / "sources" / "demo" / "e2e.txt"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("\n".join(["# demo and bad inputs", *urls, "ftp://127.0.0.1/x.mp4", urls[0]]) + "\n")
    info, _ = register_batch(storage, cfg, manifest)
    info, entries = load_batch(storage, info.batch)
    crawler = YtDlpResource(**SETTINGS)
    progress = CrawlProgress(info.batch, len(entries), (lines := []).append, every_n=1)
    d0, b0 = len(demo_server.requests), len(bad_server.requests)
    first = crawl_batch(storage, crawler.crawl_config, info, entries, progress=progress)
    before = snapshot(storage.store.root)
    n_demo, n_bad = len(demo_server.requests), len(bad_server.requests)
    second = crawl_batch(storage, crawler.crawl_config, info, entries)
    first_requests = demo_server.requests[d0:n_demo] + bad_server.requests[b0:n_bad]
    rerun_requests = demo_server.requests[n_demo:] + bad_server.requests[n_bad:]
    by_url: dict = {}
    for rec in first:
        by_url.setdefault(rec.url, rec)  # the repeated URL at the end is the duplicate
    pages = {p.note: (p, by_url[demo_server.url(p.path) if p in demo_site.pages else bad_server.url(p.path)])
             for p in demo_site.pages + bad_site.pages}
    return SimpleNamespace(storage=storage, info=info, entries=entries, crawler=crawler, first=first,
                           second=second, before=before, after=snapshot(storage.store.root), progress=lines,
                           first_requests=first_requests, rerun_requests=rerun_requests, pages=pages,
                           project=project)


def item(crawl, note: str) -> tuple[Path, ItemRecord]:
    rec = crawl.pages[note][1]
    folder = crawl.storage.store.local_dir(crawl.storage.layout.item_dir(crawl.info.source, rec.item_id))
    assert folder == crawl.storage.store.root / rec.item_dir
    return folder, ItemRecord.load(folder / ArtifactLayout.ITEM_RECORD)


def test_every_manifest_line_has_one_record(crawl):
    assert [r.line_no for r in crawl.first] == [e.line_no for e in crawl.entries]
    for note, (page, rec) in crawl.pages.items():
        if page.expect == "ok":
            assert (rec.status, rec.reason) == ("ok", None), (note, rec)
        else:
            assert (rec.status, rec.reason) == ("failed", page.expect), (note, rec)
            assert rec.item_dir is None and rec.message
    invalid, duplicate = crawl.first[-2:]
    assert (invalid.status, invalid.reason) == ("failed", "invalid_url")
    assert (duplicate.status, duplicate.reason) == ("skipped", "duplicate_url")
    assert duplicate.message == "duplicate of line 2"
    n, status = len(crawl.entries), Counter(r.status for r in crawl.first)
    done = [int(line.split(": ", 1)[1].split("/")[0]) for line in crawl.progress]
    assert set(range(1, n + 1)) <= set(done) and done == sorted(done)  # every item (every_n=1), and the clock
    assert crawl.progress[-1].startswith(f"crawl {crawl.info.batch}: {n}/{n} items done ({status['ok']} ok, "
                                         f"{status['skipped']} skipped, {status['failed']} failed), ")
    ledger = crawl.storage.store.local_path(crawl.storage.layout.crawl_ledger(crawl.info.batch))
    write_ledger(ledger, crawl.first)
    assert read_ledger(ledger) == crawl.first


@pytest.mark.parametrize("note", ["clip-1", "clip-2", "clip-3", "lecture-a", "latin1-subs", "shell-title",
                                  "dotdot-id", "bad-json-ld", "json-ld"])
def test_ok_items_are_complete(crawl, note):
    folder, rec = item(crawl, note)
    record = crawl.pages[note][1]
    assert (rec.item_id, rec.raw_id, rec.extractor, rec.batch, rec.source) == (
        record.item_id, record.raw_id, record.extractor, crawl.info.batch, "demo")
    assert rec.url == record.url and rec.webpage_url == record.url
    assert rec.crawler["name"] == "yt-dlp" and rec.crawler["version"] and rec.crawler["ffmpeg"]
    wav = sf.info(str(folder / rec.files["audio"]))
    assert (wav.samplerate, wav.channels) == (16000, 1)
    video = probe_media(folder / rec.files["video"])
    assert video.has_video and video.has_audio and (video.width, video.height) == (320, 240)
    seconds = 3.0 if note == "json-ld" else 2.0
    assert rec.probe == {"duration_seconds": pytest.approx(seconds, abs=0.1), "width": 320, "height": 240,
                         "sample_rate_hz": 16000, "audio_channels": 1}
    info = json.loads((folder / rec.files["info_json"]).read_text(encoding="utf-8"))
    assert info["id"] == rec.raw_id
    if note == "json-ld":
        assert rec.files["subtitles"] == {} and rec.extractor == "Generic"
        assert rec.page["title"] == "A talk without a video tag"
    else:
        assert rec.files["subtitles"] == {"en": {"file": f"{rec.item_id}.en.vtt", "automatic": False}}
        assert (folder / rec.files["subtitles"]["en"]["file"]).read_bytes().startswith(b"WEBVTT")
    assert rec.page["license"] == LICENSE_URL and rec.page["language"] == "en"
    if note != "bad-json-ld":
        assert rec.page["upload_date"] == "2026-01-15" and "json_ld_error" not in rec.page
    names = {p.name for p in folder.iterdir()}
    assert names == set(rec.sha256) | {ArtifactLayout.ITEM_RECORD}
    assert all(sha256_file(folder / n) == h for n, h in rec.sha256.items())
    assert all(n.startswith(rec.item_id + ".") for n in rec.sha256)


def test_rerun_downloads_nothing_and_reports_archived(crawl):
    def key(records):
        return [{k: v for k, v in asdict(r).items() if k != "elapsed_s"} for r in records]

    batch = crawl.info.batch
    archived = [r for r in crawl.second if r.reason == "archived"]
    assert {r.line_no for r in archived} == {r.line_no for r in crawl.first if r.status == "ok"}
    assert {(r.status, r.owner_batch, r.message) for r in archived} == {
        ("skipped", batch, f"published by batch {batch!r}")}
    assert all(r.published_by(batch) for r in archived), "the metadata ETL still reads them"
    as_first = [next(f for f in crawl.first if f.line_no == r.line_no) for r in archived]
    assert key(replace(r, status="ok", reason=None, owner_batch=None, message=None) for r in archived) == \
        key(replace(f, message=None) for f in as_first)
    assert key(r for r in crawl.second if r.reason != "archived") == key(r for r in crawl.first if r.status != "ok")
    assert crawl.after == crawl.before, "published files were rewritten"
    def media(requests):
        return Counter(r.split(" ", 1)[1] for r in requests if r.endswith((".mp4", ".vtt")))

    first, rerun = media(crawl.first_requests), media(crawl.rerun_requests)
    failed_media = {"/media/corrupt.mp4", "/media/silent.mp4", "/media/slow.mp4", "/subs/good.en.vtt"}
    # yt-dlp's generic extractor opens a JSON-LD contentUrl while extracting, to learn its type (it reads
    # 512 bytes); the download itself is the first run's second request.
    assert set(rerun) - failed_media <= {"/media/talk.mp4"}, "only failed items are fetched again"
    assert rerun["/media/talk.mp4"] == first["/media/talk.mp4"] - 1 == 1
    assert all(r.elapsed_s < 5 for r in crawl.second if r.status == "ok")


def test_dead_link_is_recorded_not_fatal(crawl):
    rec = crawl.pages["dead-link"][1]
    assert rec.reason == "page_unavailable" and "404" in rec.message


def test_corrupt_and_silent_media_are_told_apart(crawl):
    corrupt, silent = crawl.pages["corrupt"][1], crawl.pages["silent"][1]
    assert corrupt.reason == "corrupt_media" and "Invalid data" in corrupt.message
    assert silent.reason == "no_audio" and "no audio stream" in silent.message
    raw = crawl.storage.store.local_dir(crawl.storage.layout.raw_dir("demo"))
    assert not (raw / corrupt.item_id).exists() and not (raw / silent.item_id).exists()


def test_non_utf8_subtitles_are_kept_as_served(crawl, bad_site):
    folder, rec = item(crawl, "latin1-subs")
    served = (bad_site.root / "subs/latin1.en.vtt").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        served.decode("utf-8")
    assert (folder / rec.files["subtitles"]["en"]["file"]).read_bytes() == served


def test_shell_title_is_stored_verbatim_and_never_run(crawl, pwn_marker):
    folder, rec = item(crawl, "shell-title")
    title = SHELL_TITLE.format(marker=pwn_marker)
    assert rec.page["title"] == title and rec.page["description"] == f"{title} (description)"
    info = json.loads((folder / rec.files["info_json"]).read_text(encoding="utf-8"))
    assert info["title"].startswith(title)
    assert not pwn_marker.exists()
    assert TMP_PWNED_BEFORE or not Path("/tmp/pwned").exists()
    assert not (Path.home() / ".mm-canary").exists()


def test_dotdot_id_is_sanitised_and_confined(crawl):
    folder, rec = item(crawl, "dotdot-id")
    assert rec.raw_id == "../../etc/passwd-1"
    assert ".." not in rec.item_id and "/" not in rec.item_id
    assert folder.parent == crawl.storage.store.local_dir(crawl.storage.layout.raw_dir("demo"))
    root = crawl.storage.store.root
    assert sorted(p.name for p in crawl.project.iterdir()) == ["sources", "store"]
    assert sorted(p.name for p in root.iterdir()) == [".staging", "batches", "crawl", "raw"]
    assert all(root in p.resolve().parents for p in root.rglob("*"))
    assert not list(root.rglob("passwd*"))


def test_urls_ending_in_the_same_file_name_do_not_clash(crawl):
    (_, a), (_, b) = item(crawl, "lecture-a"), item(crawl, "lecture-b")
    assert a.raw_id == b.raw_id == "lecture-1"
    assert a.item_id != b.item_id and a.sha256 != b.sha256


def test_a_missing_subtitle_track_drops_the_track_not_the_item(crawl):
    folder, rec = item(crawl, "missing-subs")
    record = crawl.pages["missing-subs"][1]
    assert record.status == "ok" and record.message.startswith("subtitles dropped:") and "404" in record.message
    assert rec.files["subtitles"] == {} and rec.files["subtitles_error"] == record.message
    assert not list(folder.glob("*.vtt")) and (folder / rec.files["audio"]).is_file()


def test_a_page_with_two_videos_is_refused_with_a_reason(crawl):
    rec = crawl.pages["two-videos"][1]
    assert rec.message == "the page holds 2 videos; put each video's own URL in the manifest"


def test_trickling_server_times_out_while_others_succeed(crawl):
    slow = crawl.pages["slow"][1]
    assert slow.reason == "timeout" and 6.0 <= slow.elapsed_s < 15
    assert "(last activity: finished downloading item.en.vtt)" in slow.message  # the clip trickles next
    after = [r for r in crawl.first if r.line_no > slow.line_no and r.url.startswith("http")]
    assert after and all(r.status in {"ok", "skipped"} or r.reason != "timeout" for r in after)
    assert crawl.pages["bad-json-ld"][1].status == "ok"
    staging = (crawl.storage.store.scratch / "crawl")
    assert sorted(p.name for p in staging.iterdir()) == ["items", "locks"]
    # At ~128 B/s the timed-out clip never filled yt-dlp's first 1 kB read, so not even a partial is left to resume.
    assert [p for p in (staging / "items").rglob("*") if p.is_file() and not is_resumable(p.name)] == []


def test_another_batch_finds_the_items_archived(crawl, demo_server):
    cfg = parse_config({"sources": {"names": ["demo"]}}, base_dir=crawl.project)
    manifest = crawl.project / "sources" / "demo" / "again.txt"
    manifest.write_text(f"{demo_server.url('watch/clip-1.html')}\n{demo_server.url('watch/missing.html')}\n")
    info, _ = register_batch(crawl.storage, cfg, manifest)
    before = snapshot(crawl.storage.store.root)
    records = crawl_batch(crawl.storage, CrawlConfig(**{**SETTINGS, "workers": 1}), info, load_batch(
        crawl.storage, info.batch)[1])
    archived, dead = records
    assert (archived.status, archived.reason, archived.owner_batch) == ("skipped", "archived", crawl.info.batch)
    assert archived.item_id == crawl.pages["clip-1"][1].item_id and archived.item_dir
    assert dead.reason == "page_unavailable"
    assert snapshot(crawl.storage.store.root) == before


def test_resource_mirrors_crawl_config():
    cfg = CrawlConfig()
    assert YtDlpResource(**cfg.model_dump()).crawl_config == cfg
    with pytest.raises(ValueError, match="audio_format"):
        _ = YtDlpResource(audio_format="mp3").crawl_config
