"""One crawled item folder -> one row of the unified metadata schema (plus why it cannot be used, if so).

Inputs are untrusted: item.json and info.json may be missing, malformed or wrongly typed, and file names in
them are confined to the item folder. Nothing here raises for bad data; problems are returned as reasons
and the row goes to quarantine. Which source wins for each field is the table in precedence.py; the row
records where its license and upload date came from (metadata.license_source / upload_date_source).

Every processing_log timestamp is the item's `crawled_at`: the data holds no wall-clock time of the ETL run,
so rematerializing gives the same bytes (the run's own time is in Dagster's materialization record).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import soundfile as sf

from checks.metadata_schema import MODALITIES, NO_LICENSE, SCHEMA_VERSION
from mm_assets.config.pipeline import LicensePolicy, PipelineConfig
from mm_assets.crawl.ledger import CrawlRecord
from mm_assets.etl.precedence import date_is_last_modified, page_origin, pick
from mm_assets.etl.subtitles import Subtitle, choose_text, normalize_language, read_subtitle
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import UnsafePathError, safe_join, sha256_file

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ItemRow:
    """A candidate row and what the batch needs to know about it besides the row itself."""

    line_no: int
    unique_id: str | None
    item_dir: str
    row: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # non-empty: quarantined without schema validation
    content_hash: str | None = None  # sha256 of the primary media: video, else audio, else text
    hash_of: str | None = None  # which modality's file was hashed
    audio_seconds: float | None = None


def empty_row(unique_id: str | None, source: str, uri: str) -> dict[str, Any]:
    return {
        "unique_id": unique_id,
        "source": source,
        "source_uri": uri,
        "modalities": [],
        "data_paths": {m: None for m in MODALITIES},
        "metadata": None,
        "quality_scores": {"text_perplexity": None, "audio_snr_db": None, "image_aesthetic_score": None},
        "processing_log": [],
        "data_card_info": None,
    }


def _text(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    problems.append(f"bad field: {where} is a JSON {type(value).__name__}, expected text")
    return None


def _number(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a JSON integer beyond float range
            pass
    problems.append(f"bad field: {where} = {str(value)[:60]!r} is not a number")
    return None


def _int(value: Any, where: str, problems: list[str]) -> int | None:
    num = _number(value, where, problems)
    if num is None:
        return None
    if not math.isfinite(num) or num != int(num) or abs(num) >= 2**31:
        problems.append(f"bad field: {where} = {value!r} is not a 32-bit integer")
        return None
    return int(num)


def _first(*candidates: tuple[Any, str], conv, problems: list[str]) -> Any:
    """The first candidate value that is present (not None/empty), converted; conversion problems are kept."""
    for value, where in candidates:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        return conv(value, where, problems)
    return None


def parse_upload_date(value: Any, where: str, problems: list[str]) -> date | None:
    """yt-dlp's 'YYYYMMDD', or ISO 8601 (a date, or a datetime whose day is taken as given)."""
    text = str(value).strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return datetime.fromisoformat(text).date() if "T" in text else date.fromisoformat(text)
    except ValueError:
        problems.append(f"bad upload_date: {where} = {text[:40]!r} is not YYYYMMDD or ISO 8601")
        return None


def parse_timestamp(value: Any, where: str, problems: list[str]) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        problems.append(f"bad timestamp: {where} = {str(value)[:40]!r} is not ISO 8601")
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


def _load_json_object(path: Path, name: str, problems: list[str]) -> tuple[dict[str, Any] | None, bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        problems.append(f"missing {name}: {path.name} is not in the item folder")
        return None, b""
    except OSError as err:
        problems.append(f"unreadable {name}: {err.strerror or err}")
        return None, b""
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"malformed {name}: {err}")
        return None, data
    if not isinstance(obj, dict):
        problems.append(f"malformed {name}: the top level is a JSON {type(obj).__name__}, not an object")
        return None, data
    return obj, data


def _objects(item: dict[str, Any], problems: list[str], *keys: str) -> bool:
    bad = [k for k in keys if not isinstance(item.get(k, {}), dict)]
    for k in bad:
        problems.append(f"malformed item.json: {k} is a JSON {type(item[k]).__name__}, not an object")
    return not bad


def _file(item_dir: Path, name: Any, what: str, problems: list[str]) -> Path | None:
    """The named file inside the item folder; a missing or escaping name is a problem, not an exception."""
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        problems.append(f"malformed item.json: files.{what} = {name!r} is not a file name")
        return None
    try:
        path = safe_join(item_dir, name)
    except UnsafePathError:
        problems.append(f"malformed item.json: files.{what} = {name!r} leaves the item folder")
        return None
    if not path.is_file():
        problems.append(f"missing file: files.{what} names {name!r}, which is not in the item folder")
        return None
    return path


def _log(stage: str, ts: datetime | None, status: str, hash_: str | None = None, message: str | None = None):
    return {"stage": stage, "timestamp": ts, "status": status, "hash": hash_, "message": message}


def _subtitles(item_dir: Path, files: dict[str, Any], problems: list[str]) -> list[Subtitle]:
    subs = files.get("subtitles") or {}
    if not isinstance(subs, dict):
        problems.append("malformed item.json: files.subtitles is not an object")
        return []
    out = []
    for lang, entry in sorted(subs.items()):
        entry = entry if isinstance(entry, dict) else {"file": entry}
        path = _file(item_dir, entry.get("file"), f"subtitles.{lang}", problems)
        if path is not None:
            out.append(read_subtitle(path, lang, bool(entry.get("automatic", False))))
    return out


def _media(item_dir: Path, files: dict[str, Any], hashes: dict[str, Any], out: ItemRow, log: list, ts, cfg,
           language: str | None) -> tuple[dict[str, Path | None], int | None, str | None]:
    """Usable files per modality, the audio sample rate and the language; sets the content hash on `out`."""
    problems = out.problems
    video = _file(item_dir, files.get("video"), "video", problems)
    image = _file(item_dir, files.get("image"), "image", problems)
    audio_file = audio = _file(item_dir, files.get("audio"), "audio", problems)
    sample_rate = None
    if audio_file is not None:
        try:
            snd = sf.info(str(audio_file))
            sample_rate, out.audio_seconds = int(snd.samplerate), snd.frames / snd.samplerate
        except (RuntimeError, OSError, ZeroDivisionError) as err:
            log.append(_log("audio", ts, "failed", None, f"audio {audio_file.name} dropped: unreadable ({err})"))
            audio = None
    subs = _subtitles(item_dir, files, problems)
    log += [_log("subtitles", ts, "failed", None, f"{s.error}; text modality not taken from it")
            for s in subs if not s.ok]
    text = choose_text(subs, cfg.crawl.subtitle_languages, language)
    if language is None and text is not None:
        language = text.lang
    # The dedup key: the primary media file (an unreadable audio file is still the item's content).
    hashed = [("video", video), ("audio", audio_file), ("text", text.path if text else None), ("image", image)]
    primary, hashed_path = next(((m, p) for m, p in hashed if p is not None), (None, None))
    if hashed_path is not None:
        recorded = hashes.get(hashed_path.name)
        valid = isinstance(recorded, str) and _HEX64.match(recorded)
        out.content_hash, out.hash_of = (recorded if valid else sha256_file(hashed_path)), primary
    return {"text": text.path if text else None, "audio": audio, "video": video, "image": image}, sample_rate, language


def _license(page: dict, info: dict, policy: LicensePolicy, problems: list[str]) -> tuple[str | None, str | None]:
    """(license, license_source): stated by the page or yt-dlp, else as the source's license policy says.
    `require` leaves (None, None), which the schema's license_present rule quarantines with the policy's name."""
    value, origin = pick("license", {"page": (page.get("license"), "page.license"),
                                     "info_json": (info.get("license"), "info.json license")}, _text, problems)
    if value is not None:
        return value, page_origin(page, "license") if origin == "page" else origin
    if policy.kind == "default":
        return pick("license", {"config_default": (policy.license, "metadata.license_policy")}, _text, problems)
    return None, NO_LICENSE if policy.kind == "unknown" else None


def _upload_date(page: dict, info: dict, problems: list[str]) -> tuple[date | None, str | None]:
    """(upload_date, upload_date_source): the page's date beats yt-dlp's, which may be Last-Modified."""
    stated = (info.get("upload_date"), "info.json upload_date")
    value, origin = pick("upload_date", {
        "page": (page.get("upload_date"), "page.upload_date"),
        "http_last_modified" if date_is_last_modified(info) else "info_json": stated,
    }, parse_upload_date, problems)
    return value, page_origin(page, "upload_date") if origin == "page" else origin


def build_item_row(record: CrawlRecord, item_dir: Path | None, *, source: str, cfg: PipelineConfig,
                   item_url: str | None = None) -> ItemRow:
    """The metadata row of one ok ledger record whose published folder is `item_dir` (a local folder; None:
    unknown). `item_url` is where the folder is stored, for data_paths (default: the local folder)."""
    uid = f"{source}_{record.item_id}" if record.item_id else None
    out = ItemRow(record.line_no, uid, str(item_dir or record.item_dir), empty_row(uid, source, record.url))
    problems = out.problems
    if uid is None:
        problems.append("ledger error: an ok record without item_id")
    if item_dir is None:
        problems.append(f"ledger error: item_dir {record.item_dir!r} is missing or leaves the storage root")
        return out
    item_dir = Path(item_dir).resolve()
    item_url = item_url or str(item_dir)
    out.item_dir = item_url
    record_name = ArtifactLayout.ITEM_RECORD
    item, item_bytes = _load_json_object(item_dir / record_name, record_name, problems)
    if item is None or not _objects(item, problems, "files", "probe", "page", "sha256", "crawler"):
        return out
    if item.get("item_id") != record.item_id:
        problems.append(f"ledger mismatch: item.json item_id {item.get('item_id')!r} != ledger {record.item_id!r}")
    if item.get("source") not in (None, source):
        problems.append(f"ledger mismatch: item.json source {item.get('source')!r} != batch source {source!r}")
    files, probe, page, hashes, crawler = (item.get(k) or {} for k in ("files", "probe", "page", "sha256", "crawler"))

    info: dict[str, Any] = {}
    info_bytes = b""
    info_path = _file(item_dir, files.get("info_json"), "info_json", problems)
    if files.get("info_json") is None:
        problems.append("missing info.json: item.json names no files.info_json")
    elif info_path is not None:
        loaded, info_bytes = _load_json_object(info_path, "info.json", problems)
        info = loaded or {}

    ts = parse_timestamp(item.get("crawled_at"), "item.json crawled_at", problems)
    name, version = (_text(crawler.get(k), f"item.json crawler.{k}", problems) for k in ("name", "version"))
    log = [_log("crawl", ts, "success", None, f"{name} {version} in batch {item.get('batch')}")]
    language, _ = pick("language", {"info_json": (info.get("language"), "info.json language"),
                                    "page": (page.get("language"), "page.language")}, _text, problems)
    paths, sample_rate, language = _media(item_dir, files, hashes, out, log, ts, cfg,
                                          normalize_language(language) if language else None)
    fingerprint = hashlib.sha256(item_bytes + b"\0" + info_bytes).hexdigest()
    log.append(_log("etl", ts, "success", fingerprint,
                    f"mm-pretrain metadata ETL, schema v{SCHEMA_VERSION}; hash = sha256(item.json, info.json)"))
    license_, license_source = _license(page, info, cfg.metadata.license_policy_for(source), problems)
    upload_date, date_source = _upload_date(page, info, problems)
    if date_source == "http_last_modified":
        log.append(_log("etl", ts, "success", None, f"upload_date {upload_date} is the HTTP Last-Modified date "
                        "yt-dlp's generic extractor reports: the page states no publication date"))
    if out.content_hash:
        log.append(_log("dedup", ts, "success", out.content_hash, f"exact sha256 of the {out.hash_of} file"))

    def first(field, conv=_text, **candidates):
        return pick(field, candidates, conv, problems)[0]

    resolution = None
    if paths["video"] is not None:
        w = first("resolution", _int, probe=(probe.get("width"), "probe.width"),
                  info_json=(info.get("width"), "info.json width"))
        h = first("resolution", _int, probe=(probe.get("height"), "probe.height"),
                  info_json=(info.get("height"), "info.json height"))
        resolution = {"width": w, "height": h} if (w, h) != (None, None) else None
    out.row.update(
        source_uri=_first((item.get("webpage_url"), "item.json webpage_url"),
                          (info.get("webpage_url"), "info.json webpage_url"), (record.url, "ledger url"),
                          conv=_text, problems=problems),
        modalities=[m for m in MODALITIES if paths[m] is not None],
        data_paths={m: (f"{item_url}/{p.relative_to(item_dir).as_posix()}" if p is not None else None)
                    for m, p in paths.items()},
        metadata={
            "title": first("title", page=(page.get("title"), "page.title"),
                           info_json=(info.get("title"), "info.json title")),
            "description": first("description", info_json=(info.get("description"), "info.json description"),
                                 page=(page.get("description"), "page.description")),
            "license": license_,
            "license_source": license_source,
            "upload_date": upload_date,
            "upload_date_source": date_source,
            "duration_seconds": first("duration_seconds", _number,
                                      probe=(probe.get("duration_seconds"), "probe.duration_seconds"),
                                      audio_file=(out.audio_seconds, "the audio file"),
                                      info_json=(info.get("duration"), "info.json duration")),
            "resolution": resolution,
            "sample_rate_hz": sample_rate,
            "language": language,
        },
        processing_log=log,
        data_card_info={
            "collection_process": f"Automated crawl via {name} {version}" if name else None,
            "crawler": name,
            "crawler_version": version,
            "extractor": _first((item.get("extractor"), "item.json extractor"),
                                (info.get("extractor"), "info.json extractor"), conv=_text, problems=problems),
            "pii_detection_method": cfg.metadata.pii_detection_method,
            "crawl_batch": _first((item.get("batch"), "item.json batch"), conv=_text, problems=problems),
            "schema_version": SCHEMA_VERSION,
        },
    )
    return out
