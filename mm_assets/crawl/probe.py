"""Duration, resolution and streams of a downloaded file, measured by us (yt-dlp's generic extractor knows
none of them, and imageio-ffmpeg ships no ffprobe).

`ffmpeg -i FILE` with no output prints the container header to stderr and exits 1; a file it cannot open
reports "Invalid data found" or similar. The extracted audio is read back with soundfile.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import imageio_ffmpeg
import soundfile as sf

_DURATION = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*:\s*(Video|Audio|Subtitle|Data|Attachment):\s*(.*)$", re.M)
_CODEC = re.compile(r"([0-9a-z]+)")
_SIZE = re.compile(r",\s*(\d{2,5})x(\d{2,5})(?=[\s,\[]|$)")
_CONTEXT = re.compile(r"\[[^\]]*@ 0x[0-9a-f]+\]\s*")  # "[in#0 @ 0x55d...]": a pointer, different every run
_OPEN_ERROR = re.compile(r"Error opening input|Invalid data found|moov atom not found|could not find codec", re.I)


@dataclass(frozen=True)
class MediaProbe:
    readable: bool
    has_video: bool = False
    has_audio: bool = False
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    audio_codec: str | None = None  # as yt-dlp's own `ffmpeg -i` parsing names it (e.g. "aac", "opus")
    error: str | None = None  # ffmpeg's last lines when the file cannot be opened

    def as_dict(self) -> dict:
        return asdict(self)


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def parse_ffmpeg_header(stderr: str) -> MediaProbe:
    """Read `ffmpeg -i` stderr. Cover art ("attached pic") does not count as a video stream."""
    if "Input #0" not in stderr or (_OPEN_ERROR.search(stderr) and not _STREAM.search(stderr)):
        tail = [_CONTEXT.sub("", ln).strip() for ln in stderr.strip().splitlines() if ln.strip()][-2:]
        return MediaProbe(readable=False, error=" | ".join(tail) or "ffmpeg printed nothing")
    duration = None
    if m := _DURATION.search(stderr):
        h, mnt, s = m.groups()
        duration = round(int(h) * 3600 + int(mnt) * 60 + float(s), 3)
    has_video = has_audio = False
    width = height = codec = None
    for kind, desc in _STREAM.findall(stderr):
        if kind == "Audio":
            has_audio = True
            codec = codec or (m.group(1) if (m := _CODEC.match(desc)) else None)
        elif kind == "Video" and "attached pic" not in desc:
            has_video = True
            if width is None and (size := _SIZE.search(desc)):
                width, height = int(size.group(1)), int(size.group(2))
    return MediaProbe(True, has_video, has_audio, duration, width, height, codec)


def probe_media(path: Path, *, timeout_s: float = 60.0) -> MediaProbe:
    """Probe a media file's header with the bundled ffmpeg (argument list, never a shell)."""
    path = Path(path).resolve()
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", f"file:{path}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return MediaProbe(readable=False, error=f"ffmpeg did not read the header within {timeout_s}s")
    # The file's name, not its staging path, so that messages are the same on every run.
    return parse_ffmpeg_header(proc.stderr.decode("utf-8", "replace").replace(f"file:{path}", path.name))


@dataclass(frozen=True)
class AudioProbe:
    sample_rate_hz: int
    channels: int
    duration_seconds: float
    frames: int


def probe_audio(path: Path) -> AudioProbe:
    """Read back the extracted audio's header; raises soundfile's error if it is not a readable file."""
    info = sf.info(str(path))
    return AudioProbe(int(info.samplerate), int(info.channels), round(info.frames / info.samplerate, 3),
                      int(info.frames))
