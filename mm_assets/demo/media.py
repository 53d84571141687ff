"""Synthetic media sites for the crawl: small clips made with the bundled ffmpeg, HTML pages that yt-dlp's
generic extractor understands, and the bad inputs a real crawl meets.

Pages are templates: the server (mm_assets.demo.server) replaces `{{base_url}}` in HTML with its own
address, so a site is built once and served on any port. JSON-LD needs absolute URLs (yt-dlp ignores a
relative `contentUrl`), everything else is relative.
"""

from __future__ import annotations

import html
import json
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import imageio_ffmpeg

BASE_URL = "{{base_url}}"
LICENSE_URL = "https://creativecommons.org/licenses/by/4.0/"
UPLOAD_DATE = "2026-01-15"
# What the web site's server sends as every file's Last-Modified: the date yt-dlp's generic extractor would
# present as upload_date (yt_dlp/extractor/generic.py). PAGE_DATE is what one page's JSON-LD states instead.
LAST_MODIFIED = "Mon, 01 Jun 2026 12:00:00 GMT"
PAGE_DATE = "2025-03-01"
# Shell metacharacters of every kind; the `touch` target is given by the caller, and the `rm` names a
# canary path rather than `~`, so even a broken crawler cannot hurt the machine running the tests.
SHELL_TITLE = "$(touch {marker}); rm -rf ~/.mm-canary && echo \"x\" | tee '; <b>`id`</b>"


@dataclass(frozen=True)
class SitePage:
    """One manifest line of a site and what the crawl must make of it: "ok" or a REASONS key."""

    path: str
    expect: str
    note: str = ""


@dataclass(frozen=True)
class Site:
    root: Path
    pages: tuple[SitePage, ...]
    slow_paths: tuple[str, ...] = field(default=())  # served a few bytes at a time (see server.Trickle)
    last_modified: str | None = None  # the Last-Modified header the server should send (serve(last_modified=))

    def urls(self, base_url: str) -> list[str]:
        return [base_url.rstrip("/") + "/" + p.path for p in self.pages]

    def subset(self, notes: set[str] | frozenset[str], *, exclude: bool = False) -> "Site":
        """The same site with only the pages noted `notes` (or all but those): one manifest per batch."""
        return replace(self, pages=tuple(p for p in self.pages if (p.note in notes) != exclude))

    def page(self, note: str) -> SitePage:
        return next(p for p in self.pages if p.note == note)


def make_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    freq_hz: int = 440,
    audio: bool = True,
    size: str = "320x240",
    fps: int = 15,
    pattern: str = "testsrc",
) -> Path:
    """Encode a bit-exact h264/aac mp4 from lavfi sources (a test pattern and a sine tone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"{pattern}=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency={freq_hz}:sample_rate=44100:duration={seconds}"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1",
            "-x264-params", "threads=1:sliced-threads=0"]
    cmd += ["-c:a", "aac", "-b:a", "64k", "-ac", "1"] if audio else ["-an"]
    cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart", "-shortest", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not make {path.name}: {proc.stderr.strip()[-500:]}")
    return path


def vtt(lines: list[str]) -> str:
    cues = [f"00:00:{i:02d}.000 --> 00:00:{i:02d}.900\n{text}\n" for i, text in enumerate(lines)]
    return "WEBVTT\n\n" + "\n".join(cues)


def json_ld(title: str, description: str, *, content_url: str | None = None, seconds: int = 2,
            license: str | None = LICENSE_URL, upload_date: str | None = UPLOAD_DATE,
            date_published: str | None = None) -> dict:
    """A schema.org VideoObject; `license`, `uploadDate` and `datePublished` are left out when None."""
    obj = {
        "@context": "https://schema.org",
        "@type": "VideoObject",
        "name": title,
        "description": description,
        "uploadDate": upload_date,
        "datePublished": date_published,
        "license": license,
        "inLanguage": "en",
        "duration": f"PT{seconds}S",
        "thumbnailUrl": BASE_URL + "thumb.jpg",
    }
    if content_url:
        obj["contentUrl"] = content_url
    return {k: v for k, v in obj.items() if v is not None}


def page_html(
    title: str,
    *,
    video: str | None,
    tracks: dict[str, str] | None = None,
    ld: dict | str | None = None,
    description: str = "A synthetic clip for the mm-pretrain crawl.",
    lang: str = "en",
    poster: str | None = None,
    license: str | None = LICENSE_URL,
) -> str:
    """A page: optional <video> (with a poster image) and <track>s (lang -> src), optional JSON-LD, and a
    `<link rel="license">` unless `license` is None."""
    esc = html.escape
    head = ['<meta charset="utf-8">', f"<title>{esc(title)}</title>",
            f'<meta name="description" content="{esc(description)}">']
    if license:
        head.append(f'<link rel="license" href="{esc(license)}">')
    if ld is not None:
        text = ld if isinstance(ld, str) else json.dumps(ld, ensure_ascii=False).replace("</", "<\\/")
        head.append(f'<script type="application/ld+json">{text}</script>')
    body = [f"<h1>{esc(title)}</h1>"]
    if video:
        poster_attr = f' poster="{esc(poster)}"' if poster else ""
        body.append(f'<video controls width="320" height="240"{poster_attr}>')
        body.append(f'  <source src="{esc(video)}" type="video/mp4">')
        for lang_code, src in (tracks or {}).items():
            body.append(f'  <track kind="subtitles" srclang="{esc(lang_code)}" label="{esc(lang_code)}" '
                        f'src="{esc(src)}">')
        body.append("</video>")
    return (f'<!DOCTYPE html>\n<html lang="{esc(lang)}">\n<head>\n' + "\n".join(head) + "\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _write(root: Path, rel: str, data: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)


def _fresh(folder: Path) -> Path:
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def make_poster(path: Path, *, pattern: str = "testsrc") -> Path:
    """A 320x240 PNG still (the <video poster>, which the crawl keeps as the item's image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"{pattern}=size=320x240:rate=1", "-frames:v", "1", "-fflags", "+bitexact", str(path)],
                   check=True, timeout=60)
    return path


def _video_page(root: Path, rel: str, title: str, clip: str, sub: str, *, ld: dict | str | None = None,
                poster: str | None = None) -> None:
    """Write a page at `rel` whose video, English track and poster are site-root files."""
    up = "../" * rel.count("/")
    if ld is None:
        ld = json_ld(title, f"{title}: a synthetic clip.")
    _write(root, rel, page_html(title, video=up + clip, tracks={"en": up + sub}, ld=ld,
                                poster=up + poster if poster else None))


@dataclass(frozen=True)
class DemoClip:
    """What the demo site's generator knows about one of its clips (the demo eval set asks about it)."""

    number: int
    freq_hz: int  # the sine tone of its audio
    pattern: str  # the ffmpeg test pattern of its video
    seconds: float = 2.0

    @property
    def title(self) -> str:
        return f"Demo clip {self.number}"

    @property
    def media(self) -> str:
        return f"media/clip-{self.number}.mp4"

    @property
    def subtitles(self) -> tuple[str, ...]:
        return (f"Clip {self.number}, first line.", f"Clip {self.number}, second line.")


DEMO_CLIPS = (DemoClip(1, 440, "testsrc"), DemoClip(2, 660, "testsrc2"), DemoClip(3, 880, "smptebars"))


def build_demo_site(folder: str | Path) -> Site:
    """Six crawlable pages and a dead link: three clips, two pages whose URLs end in the same file name
    (yt-dlp gives both the id `lecture-1`), a JSON-LD-only page (no <video>), and a 404."""
    root = _fresh(Path(folder))
    for clip in DEMO_CLIPS:
        i = clip.number
        make_clip(root / clip.media, seconds=clip.seconds, freq_hz=clip.freq_hz, pattern=clip.pattern)
        _write(root, f"subs/clip-{i}.en.vtt", vtt(list(clip.subtitles)))
        make_poster(root / f"media/clip-{i}.png", pattern=clip.pattern)
        _video_page(root, f"watch/clip-{i}.html", clip.title, clip.media, f"subs/clip-{i}.en.vtt",
                    poster=f"media/clip-{i}.png")
    for d, clip in (("a", 1), ("b", 2)):
        _video_page(root, f"{d}/lecture.html", f"Lecture {d.upper()}", f"media/clip-{clip}.mp4",
                    f"subs/clip-{clip}.en.vtt")
    make_clip(root / "media/talk.mp4", seconds=3.0, freq_hz=330, pattern="rgbtestsrc")
    ld = json_ld("A talk without a video tag", "Only JSON-LD describes this clip.",
                 content_url=BASE_URL + "media/talk.mp4", seconds=3)
    _write(root, "ld/talk.html", page_html("Talk page", video=None, ld=ld))
    pages = (
        SitePage("watch/clip-1.html", "ok", "clip-1"),
        SitePage("watch/clip-2.html", "ok", "clip-2"),
        SitePage("watch/clip-3.html", "ok", "clip-3"),
        SitePage("a/lecture.html", "ok", "lecture-a"),
        SitePage("b/lecture.html", "ok", "lecture-b"),
        SitePage("ld/talk.html", "ok", "json-ld"),
        SitePage("watch/missing.html", "page_unavailable", "dead-link"),
    )
    return Site(root, pages)


def build_bad_site(folder: str | Path, *, pwn_marker: str | Path = "/tmp/pwned") -> Site:
    """The inputs that break naive crawlers, each with the outcome the crawl must record.

    `pwn_marker` is the file the shell-metacharacter title would `touch` if anything ever ran it in a shell.
    """
    root = _fresh(Path(folder))
    # Every page that can succeed has its own clip (its own tone), so no two items share content.
    for i, name in enumerate(["good", "latin1", "shell", "dotdot", "badjsonld", "nosubs", "slow"]):
        make_clip(root / f"media/{name}.mp4", freq_hz=550 + 50 * i)
    make_clip(root / "media/silent.mp4", audio=False)
    _write(root, "media/corrupt.mp4", bytes(range(256)) * 64)  # garbage served as video/mp4
    _write(root, "subs/good.en.vtt", vtt(["A good line."]))
    # cp1252: curly quotes, an en dash, accents; not valid UTF-8.
    _write(root, "subs/latin1.en.vtt", vtt(["Caf\u00e9 \u201cna\u00efve\u201d \u2013 \u00fcber"]).encode("cp1252"))

    _video_page(root, "bad/corrupt.html", "Corrupt media", "media/corrupt.mp4", "subs/good.en.vtt")
    _video_page(root, "bad/silent.html", "No audio stream", "media/silent.mp4", "subs/good.en.vtt")
    _video_page(root, "bad/latin1.html", "Latin-1 subtitles", "media/latin1.mp4", "subs/latin1.en.vtt")
    title = SHELL_TITLE.format(marker=pwn_marker)
    _video_page(root, "bad/shell.html", title, "media/shell.mp4", "subs/good.en.vtt",
                ld=json_ld(title, f"{title} (description)"))
    # yt-dlp's generic id is the URL's percent-decoded last segment: this page's id is `../../etc/passwd-1`.
    _video_page(root, "bad/..%2F..%2Fetc%2Fpasswd.html", "Dot-dot id", "media/dotdot.mp4", "subs/good.en.vtt")
    _video_page(root, "bad/slow.html", "Trickling media", "media/slow.mp4", "subs/good.en.vtt")
    _video_page(root, "bad/nosubs.html", "Subtitle track 404", "media/nosubs.mp4", "subs/missing.en.vtt")
    two = page_html("Two videos", video="../media/good.mp4", tracks={"en": "../subs/good.en.vtt"})
    _write(root, "bad/two.html", two.replace("</video>", '</video>\n<video><source src="../media/silent.mp4" '
                                                      'type="video/mp4"></video>'))
    _video_page(root, "bad/badjsonld.html", "Malformed JSON-LD", "media/badjsonld.mp4", "subs/good.en.vtt",
                ld='{"@context": "https://schema.org", "@type": "VideoObject", "name": "broken", license: ,}')
    pages = (
        SitePage("bad/corrupt.html", "corrupt_media", "corrupt"),
        SitePage("bad/silent.html", "no_audio", "silent"),
        SitePage("bad/latin1.html", "ok", "latin1-subs"),
        SitePage("bad/shell.html", "ok", "shell-title"),
        SitePage("bad/..%2F..%2Fetc%2Fpasswd.html", "ok", "dotdot-id"),
        SitePage("bad/slow.html", "timeout", "slow"),
        SitePage("bad/badjsonld.html", "ok", "bad-json-ld"),
        SitePage("bad/nosubs.html", "ok", "missing-subs"),  # kept without subtitles, the record says why
        SitePage("bad/two.html", "unsupported_url", "two-videos"),  # a manifest line is one item
    )
    return Site(root, pages, slow_paths=("media/slow.mp4",))


def build_bench_site(folder: str | Path, n: int = 30) -> Site:
    """`n` pages, each with its own copy of one short clip and an English track, for throughput runs."""
    root = _fresh(Path(folder))
    make_clip(root / "media/bench.mp4", seconds=2.0, freq_hz=500)
    _write(root, "subs/bench.en.vtt", vtt(["Benchmark line."]))
    pages = []
    for i in range(n):
        clip = f"media/bench-{i:03d}.mp4"
        shutil.copy(root / "media/bench.mp4", root / clip)
        _video_page(root, f"bench/item-{i:03d}.html", f"Bench item {i}", clip, "subs/bench.en.vtt")
        pages.append(SitePage(f"bench/item-{i:03d}.html", "ok", f"item-{i:03d}"))
    return Site(root, tuple(pages))


def build_web_site(folder: str | Path, n_plain: int = 20) -> Site:
    """Ordinary web pages, as most of the web has them: no license metadata and no JSON-LD, served with a
    `Last-Modified` header (LAST_MODIFIED, which yt-dlp's generic extractor turns into an upload date).

    Besides `n_plain` such pages (`plain-NN`): two direct media links, a page with `<link rel="license">`, a
    JSON-LD page with a license, a JSON-LD page whose `datePublished` (PAGE_DATE) differs from the header, a
    dead link, and one clip on three pages: `dup-original` (whose `<html lang="English">` is quarantined),
    `dup-copy` and `dup-next-batch`; put the last one in a second batch (`site.subset({"dup-next-batch"})`).
    """
    root = _fresh(Path(folder))
    _write(root, "subs/web.en.vtt", vtt(["An ordinary page.", "Nothing says who may reuse it."]))
    patterns = ("testsrc", "testsrc2", "smptebars", "rgbtestsrc")
    pages: list[SitePage] = []

    def page(note: str, clip: str, **kwargs) -> None:
        title = kwargs.pop("title", f"Web video {note}")
        _write(root, f"web/{note}.html", page_html(title, video=f"../{clip}", tracks={"en": "../subs/web.en.vtt"},
                                                   **{"license": None, **kwargs}))
        pages.append(SitePage(f"web/{note}.html", "ok", note))

    clips = [f"media/web-{i:02d}.mp4" for i in range(n_plain + 7)]
    for i, clip in enumerate(clips):
        make_clip(root / clip, seconds=1.0, freq_hz=300 + 20 * i, pattern=patterns[i % len(patterns)])
    for i in range(n_plain):
        page(f"plain-{i + 1:02d}", clips[i])
    for i, clip in enumerate(clips[n_plain:n_plain + 2], start=1):
        shutil.copy(root / clip, root / f"media/direct-{i}.mp4")
        pages.append(SitePage(f"media/direct-{i}.mp4", "ok", f"direct-{i}"))
    page("licensed-link", clips[n_plain + 2], license=LICENSE_URL)
    page("jsonld-licensed", clips[n_plain + 3], ld=json_ld("JSON-LD licensed", "A licensed clip.", upload_date=None,
                                                           date_published=UPLOAD_DATE))
    page("jsonld-dated", clips[n_plain + 4], ld=json_ld("JSON-LD dated", "Only a date, no license.", license=None,
                                                        upload_date=None, date_published=PAGE_DATE))
    shared = clips[n_plain + 5]
    page("dup-original", shared, lang="English")
    page("dup-copy", shared)
    page("dup-next-batch", shared)
    pages.append(SitePage("web/gone.html", "page_unavailable", "dead-link"))
    return Site(root, tuple(pages), last_modified=LAST_MODIFIED)


def build_resume_site(folder: str | Path, *, seconds: float = 4.0) -> Site:
    """One page whose clip (~20 kB a second of video) is served trickling (`slow_paths`, with a Trickle the
    caller picks), so a crawl can be interrupted mid-download and its rerun seen resuming the partial file."""
    root = _fresh(Path(folder))
    make_clip(root / "media/long.mp4", seconds=seconds, freq_hz=520)
    _write(root, "subs/long.en.vtt", vtt(["A long clip, first line."]))
    _video_page(root, "watch/long.html", "A long clip", "media/long.mp4", "subs/long.en.vtt")
    return Site(root, (SitePage("watch/long.html", "ok", "long"),), slow_paths=("media/long.mp4",))


def write_manifest(site: Site, base_url: str, path: str | Path, *, header: str | None = None) -> Path:
    """Write the site's URLs, one a line, in page order (a crawl batch manifest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {header}"] if header else []
    path.write_text("\n".join(lines + site.urls(base_url)) + "\n", encoding="utf-8")
    return path
