"""One crawl worker: a long-lived YoutubeDL that turns manifest entries into published items and records.

Per item: extract (no download) -> derive our id -> already published? record it as `archived` without
downloading -> else download into the item's staging folder (resuming a partial download an earlier attempt
left there), probe, extract audio (video kept), write subtitles and info.json, hash, write item.json, and
publish the folder with one rename. Every outcome is a CrawlRecord; no exception leaves `Worker.crawl`.
"""

from __future__ import annotations

import ctypes
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import yt_dlp
from yt_dlp.extractor import gen_extractor_classes
from yt_dlp.postprocessor import FFmpegExtractAudioPP, FFmpegPostProcessor, PostProcessor
from yt_dlp.utils import DownloadError

from mm_assets.config.pipeline import CrawlConfig
from mm_assets.crawl.errors import MediaProblem, classify, clean_message
from mm_assets.crawl.ids import derive_item_id
from mm_assets.crawl.ledger import CrawlRecord, ItemRecord
from mm_assets.crawl.options import ydl_params
from mm_assets.crawl.page import read_page
from mm_assets.crawl.probe import MediaProbe, probe_audio, probe_media
from mm_assets.crawl.staging import item_lock, keep_partials, stage_item
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import atomic_write_text, sanitize_component, sha256_file
from mm_assets.storage.store import ArtifactStore

# yt-dlp's fixed output stem in an item's staging folder; files are renamed to <id>.<ext> before publishing
STAGED = ArtifactLayout.CRAWL_DOWNLOAD_STEM
THUMBNAIL_EXTS = {"jpg", "jpeg", "png", "webp"}
_SUBTITLE_FAILURE = re.compile(r"Unable to download video subtitles", re.I)


class Job(NamedTuple):
    """One manifest line as sent to a worker (not ManifestEntry: unpickling that would import Dagster)."""

    line_no: int
    url: str


@dataclass(frozen=True)
class CrawlTarget:
    """Where a crawl writes: the store and its layout (they pickle into a spawned worker without Dagster)."""

    store: ArtifactStore
    layout: ArtifactLayout
    source: str
    batch: str

    @property
    def staging_dir(self) -> Path:
        """The crawl's scratch folder: resumable downloads and item locks (staging.py)."""
        return self.store.scratch / ArtifactLayout.SCRATCH_CRAWL


class _Logger:
    """yt-dlp's logger: nothing reaches the terminal; errors and warnings are kept for the record."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def clear(self) -> None:
        self.errors.clear()
        self.warnings.clear()

    def debug(self, msg: str) -> None:
        pass

    def info(self, msg: str) -> None:
        pass

    def warning(self, msg: str) -> None:
        self.warnings.append(clean_message(msg))

    def error(self, msg: str) -> None:
        self.errors.append(clean_message(msg))


class ProbePP(PostProcessor):
    """Runs before audio extraction: probes the download ourselves, because yt-dlp reports a corrupt file and
    a file without audio with the same ffprobe message (DESIGN.md §9)."""

    def __init__(self, downloader: Any, worker: Worker):
        super().__init__(downloader)
        self.worker = worker

    def run(self, info: dict) -> tuple[list, dict]:
        probe = probe_media(Path(info["filepath"]))
        self.worker.media_probe, self.worker.probed_path = probe, info["filepath"]
        if not probe.readable:
            raise MediaProblem("corrupt_media", f"ffmpeg cannot open the downloaded media: {probe.error}")
        if not probe.has_audio:
            raise MediaProblem("no_audio", f"the downloaded media has no audio stream (video: {probe.has_video}, "
                                           f"{probe.duration_seconds}s)")
        return [], info


class ExtractAudioPP(FFmpegExtractAudioPP):
    """yt-dlp's audio extraction (same key, same postprocessor_args), told the codec by ProbePP instead of
    starting ffmpeg once more to find it."""

    def __init__(self, downloader: Any, worker: Worker, **kwargs: Any):
        super().__init__(downloader, **kwargs)
        self.worker = worker

    def get_audio_codec(self, path: str) -> str | None:
        probe = self.worker.media_probe
        if probe is not None and probe.audio_codec and self.worker.probed_path == path:
            return probe.audio_codec
        return super().get_audio_codec(path)


class Worker:
    """Holds one YoutubeDL; `notify(activity)` (optional) hears what the current item last did, for the pool's
    timeout message ("downloading item.mp4", "post-processing: ExtractAudio")."""

    def __init__(self, target: CrawlTarget, cfg: CrawlConfig, notify: Callable[[str], None] | None = None):
        self.target, self.cfg, self.notify = target, cfg, notify
        self.store, self.layout = target.store, target.layout
        self.staging = target.staging_dir
        self.log = _Logger()
        # The output template points into each item's own staging folder once the item is known (_stage).
        self.ydl = yt_dlp.YoutubeDL(ydl_params(cfg, str(self.staging / ArtifactLayout.CRAWL_STAGED_ITEMS / f"{STAGED}.%(ext)s"), logger=self.log))
        self.ydl.add_post_processor(ProbePP(self.ydl, self), when="post_process")
        self.ydl.add_post_processor(ExtractAudioPP(self.ydl, self, preferredcodec=cfg.audio_format),
                                    when="post_process")
        _warm_up(self.ydl)
        self.ydl.add_progress_hook(self._on_progress)
        self.ydl.add_postprocessor_hook(self._on_postprocess)
        # Asking for ffmpeg's version also warms yt-dlp's per-process cache before the first item's clock.
        ffmpeg_version = FFmpegPostProcessor.get_versions(self.ydl).get("ffmpeg")
        self.crawler = {"name": "yt-dlp", "version": yt_dlp.version.__version__, "ffmpeg": str(ffmpeg_version)}
        self.media_probe: MediaProbe | None = None
        self.probed_path: str | None = None
        self.stage = "extract"
        self.activity: str | None = None
        self.running_pp: str | None = None

    def close(self) -> None:
        self.ydl.close()

    def _tell(self, activity: str) -> None:
        if activity != self.activity:
            self.activity = activity
            if self.notify is not None:
                self.notify(activity)

    def _on_progress(self, d: dict) -> None:
        name = Path(d.get("filename") or "?").name
        if d.get("status") == "downloading":  # after the first block arrives, not when the request starts
            self._tell(f"downloading {name}")
        elif d.get("status") == "finished":
            self._tell(f"finished downloading {name}")

    def _on_postprocess(self, d: dict) -> None:
        self.running_pp = d.get("postprocessor") if d.get("status") == "started" else None
        if self.running_pp:
            self._tell(f"post-processing: {self.running_pp}")

    def crawl(self, entry: Job) -> CrawlRecord:
        """Crawl one manifest entry; always returns its record."""
        start = time.monotonic()
        rec = CrawlRecord(batch=self.target.batch, line_no=entry.line_no, url=entry.url, status="failed")
        self.log.clear()
        self.stage, self.media_probe, self.probed_path = "extract", None, None
        self.activity, self.running_pp = None, None
        try:
            self._crawl(entry, rec)
        except Exception as err:  # one bad URL never fails the batch
            rec.status, rec.item_dir = "failed", None  # item_id stays: it says which item failed
            rec.reason, rec.message = classify(err, self.stage)
            if self.running_pp not in {None, ProbePP.pp_key()} and self.running_pp not in rec.message:
                rec.message = clean_message(f"{self.running_pp}: {rec.message}")
        rec.elapsed_s = round(time.monotonic() - start, 3)
        return rec

    def _crawl(self, entry: Job, rec: CrawlRecord) -> None:
        info = self.ydl.extract_info(entry.url, download=False)
        if info is None:
            raise DownloadError(self.log.errors[-1] if self.log.errors else "yt-dlp returned no result")
        if info.get("_type") in {"playlist", "multi_video"}:
            n = len(list(info.get("entries") or []))
            rec.reason = "unsupported_url"
            rec.message = f"the page holds {n} videos; put each video's own URL in the manifest"
            return
        raw_id = str(info.get("id"))
        extractor = str(info.get("extractor_key") or info.get("extractor") or "unknown")
        webpage_url = info.get("webpage_url") or entry.url
        item_id = derive_item_id(extractor, raw_id, webpage_url)
        item_dir = self.layout.item_dir(self.target.source, item_id)
        rec.item_id, rec.raw_id, rec.extractor, rec.item_dir = item_id, raw_id, extractor, item_dir
        with item_lock(self.staging, self.target.source, item_id):
            record = self.layout.item_record(item_dir)
            if self.store.exists(record):
                owner = ItemRecord.load(self.store.local_path(record)).batch  # this batch's earlier run, or another
                rec.status, rec.reason, rec.owner_batch = "skipped", "archived", owner
                rec.message = f"published by batch {owner!r}"
                return
            self.stage = "download"
            work = self._stage(item_id)
            # A manifest line that is the media file itself has no page to read.
            page = {} if info.get("url") == webpage_url else read_page(self.ydl, webpage_url)
            done, note = self._download(entry, info, work)
            item = self._assemble(work, done, item_id, raw_id, extractor, entry.url, webpage_url, page)
            if note:
                item.files["subtitles_error"] = note
            atomic_write_text(work / ArtifactLayout.ITEM_RECORD, item.dump())
            with self.store.publish(item_dir, last=ArtifactLayout.ITEM_RECORD, what=f"item {item_id}") as staged:
                os.replace(work, staged)
        rec.status, rec.message = "ok", note

    def _download(self, entry: Job, info: dict, work: Path) -> tuple[dict, str | None]:
        """Download and post-process; a subtitle track that fails is dropped (noted), not the item."""
        try:
            return self.ydl.process_ie_result(info, download=True), None
        except DownloadError as err:
            if not _SUBTITLE_FAILURE.search(str(err)):
                raise
            note = clean_message(f"subtitles dropped: {err}")
        keep_partials(work)
        saved = {k: self.ydl.params.get(k) for k in ("writesubtitles", "writeautomaticsub")}
        self.ydl.params.update(writesubtitles=False, writeautomaticsub=False)
        try:
            return self.ydl.extract_info(entry.url, download=True), note
        finally:
            self.ydl.params.update(saved)

    def _stage(self, item_id: str) -> Path:
        """Point yt-dlp at the item's staging folder; a partial download left there is resumed (continuedl)."""
        work = stage_item(self.staging, self.target.source, item_id)
        self.ydl.params["outtmpl"]["default"] = str(work / f"{STAGED}.%(ext)s")
        return work

    def _assemble(self, work: Path, info: dict, item_id: str, raw_id: str, extractor: str, url: str,
                  webpage_url: str, page: dict) -> ItemRecord:
        """Rename staged files to <id>.<ext>, drop intermediates, probe and hash: the item's record."""
        requested = info.get("requested_subtitles") or {}
        official = (info.get("subtitles") or {}) if self.cfg.official_subtitles else {}
        sub_files = {f"{STAGED}.{lang}.{sub.get('ext')}": lang for lang, sub in requested.items()}
        files: dict[str, Any] = {"video": None, "audio": None, "image": None, "info_json": None, "subtitles": {}}
        media: list[str] = []
        for path in sorted(work.iterdir()):
            rest = path.name[len(STAGED) + 1:] if path.name.startswith(STAGED + ".") else None
            if rest is None or path.is_dir():
                continue
            if path.name in sub_files:
                lang = sub_files[path.name]
                new = f"{item_id}.{sanitize_component(lang)}.{sanitize_component(rest.rsplit('.', 1)[-1])}"
                files["subtitles"][lang] = {"file": new, "automatic": lang not in official}
            elif rest == "info.json":
                new = files["info_json"] = f"{item_id}.info.json"
            elif rest == self.cfg.audio_format:
                new = files["audio"] = f"{item_id}.{rest}"
            elif rest.lower() in THUMBNAIL_EXTS:  # --write-thumbnail: the page's poster
                new = files["image"] = f"{item_id}.{rest.lower()}"
            elif "." in rest:  # f137.mp4 kept by keepvideo after a merge, .part, .ytdl: not part of the item
                path.unlink()
                continue
            else:
                new = f"{item_id}.{sanitize_component(rest)}"
                media.append(new)
            path.rename(work / new)
        if files["audio"] is None:
            raise MediaProblem("no_audio", f"no {self.cfg.audio_format} was extracted")
        mp = self.media_probe or (probe_media(work / media[0]) if media else MediaProbe(readable=False))
        if media and mp.has_video:
            files["video"] = media[0]
        audio = probe_audio(work / files["audio"])
        probe = {"duration_seconds": mp.duration_seconds or audio.duration_seconds, "width": mp.width,
                 "height": mp.height, "sample_rate_hz": audio.sample_rate_hz, "audio_channels": audio.channels}
        sha = {p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()}
        return ItemRecord(
            item_id=item_id, raw_id=raw_id, source=self.target.source, batch=self.target.batch, url=url,
            webpage_url=webpage_url, extractor=extractor,
            crawled_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            crawler=dict(self.crawler), files=files, probe=probe, page=page, sha256=sha,
        )


def _warm_up(ydl: Any) -> None:
    """Compile every extractor's URL pattern and load the embed finders now, before the worker reports ready:
    ~1.5 s once per process, the main cost of a process per URL, and not the first item's time."""
    url, page = "http://127.0.0.1/warm-up.html", "<html><body></body></html>"
    for ie in gen_extractor_classes():
        ie.suitable(url)
        try:
            for _ in ie.extract_from_webpage(ydl, url, page):
                pass
        except Exception:  # a finder that cannot run on an empty page has been loaded all the same
            continue


def _die_with_parent(parent_pid: int) -> None:
    """Own process group (the pool kills ffmpeg children with us), and SIGKILL when the parent dies."""
    os.setpgrp()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the worker still exits at EOF on its pipe
    if os.getppid() != parent_pid:
        os._exit(0)


def worker_main(conn: Any, target: CrawlTarget, cfg: CrawlConfig, parent_pid: int) -> None:
    """Process entry point: ("ready", pid), then one ("done", record) per entry received; None or EOF ends."""
    _die_with_parent(parent_pid)
    worker = Worker(target, cfg, notify=lambda activity: conn.send(("activity", activity)))
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                entry = conn.recv()
            except EOFError:
                break
            if entry is None:
                break
            conn.send(("done", worker.crawl(entry)))
    finally:
        worker.close()
