"""Shared helpers of the image and video tokenizers: per-item media errors, decoding with the bundled ffmpeg,
resize + centre crop, and reading Lightning checkpoints.

ffmpeg always runs from an argument list (never a shell) on `file:<path>`, so a name starting with `-` or
looking like a protocol is still read as a local file. Frames come back as raw rgb24 through a pipe; stderr
goes to a temporary file so a chatty decoder can never fill a pipe and stall the read.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F

from mm_assets.tokens.identity import InvalidWeightsError

_OUTPUT_SIZE = re.compile(r"Output #0.*?Stream #\S+: Video: rawvideo.*?, (\d{1,5})x(\d{1,5})", re.S)
_INPUT_VIDEO = re.compile(r"^\s*Stream #0:\d+\S*: Video: (.*)$", re.M)
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_NO_VIDEO = re.compile(r"matches no streams|does not contain any stream|Output file does not contain", re.I)
_CONTEXT = re.compile(r"\[[^\]]*@ 0x[0-9a-f]+\]\s*")  # "[in#0 @ 0x55d...]": a pointer, different every run


class MediaDecodeError(ValueError):
    """One item cannot be tokenized; the caller records `reason` for that item and goes on with the rest."""

    reason = "corrupt_media"

    def __init__(self, path: str | Path, detail: str, *, reason: str | None = None):
        self.path = str(path)
        self.detail = detail
        if reason is not None:
            self.reason = reason
        super().__init__(f"{self.path}: {detail}")


class NoFramesError(MediaDecodeError):
    """The file decodes but holds no picture: no video stream, only cover art, an empty file, zero frames."""

    reason = "no_frames"


class ClipTooShortError(MediaDecodeError):
    """Fewer sampled frames than one tubelet: such a clip would give zero codes, which the tokens check
    ("no empty items") would reject anyway, so it fails here with the counts that explain why."""

    reason = "too_short"


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _stderr_tail(stderr: str, path: Path, lines: int = 2) -> str:
    text = stderr.replace(f"file:{path}", path.name)
    tail = [_CONTEXT.sub("", ln).strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(tail) or "ffmpeg printed nothing"


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise MediaDecodeError(path, "no such file", reason="missing_file")
    if path.stat().st_size == 0:
        raise NoFramesError(path, "the file is empty (0 bytes)")


def _first_video_stream(stderr: str) -> str | None:
    """The description of the input's first video stream, or None (cover art does not count)."""
    head = stderr.split("Output #0", 1)[0]
    for desc in _INPUT_VIDEO.findall(head):
        return desc
    return None


def decode_image(path: str | Path, *, timeout_s: float = 60.0) -> np.ndarray:
    """The first picture of an image file at its own size: uint8 (H, W, 3)."""
    path = Path(path).resolve()
    _check_file(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", f"file:{path}", "-map", "0:v:0",
           "-frames:v", "1", "-an", "-sn", "-dn", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise MediaDecodeError(path, f"ffmpeg did not decode the image within {timeout_s}s") from None
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 or not proc.stdout:
        if _NO_VIDEO.search(stderr):
            raise NoFramesError(path, "the file holds no image stream")
        raise MediaDecodeError(path, f"ffmpeg cannot decode the image: {_stderr_tail(stderr, path)}")
    size = _OUTPUT_SIZE.search(stderr)
    if not size:
        raise MediaDecodeError(path, "ffmpeg did not report the decoded image size")
    w, h = int(size.group(1)), int(size.group(2))
    if len(proc.stdout) != w * h * 3:
        raise MediaDecodeError(path, f"ffmpeg returned {len(proc.stdout)} bytes for a {w}x{h} rgb24 image")
    return np.frombuffer(proc.stdout, dtype=np.uint8).reshape(h, w, 3)


def video_filter(height: int, width: int, sampling_rate: int, frame_rate: float | None) -> str:
    """`fps=` (optional resampling to a fixed rate), keep every `sampling_rate`-th frame (0, N, 2N, ...),
    scale to cover width x height keeping the aspect ratio, then the centre crop."""
    parts = [f"fps={frame_rate:g}"] if frame_rate else []
    if sampling_rate > 1:
        parts.append(rf"select=not(mod(n\,{sampling_rate}))")
    parts.append(f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=bilinear")
    parts.append(f"crop={width}:{height}")
    return ",".join(parts)


@dataclass
class FrameReader:
    """Sampled frames of one video as uint8 (n <= chunk_frames, height, width, 3) chunks, decoded lazily.

    Iterating raises NoFramesError when the file has no video stream (audio only, cover art only) or decodes
    to no frame, MediaDecodeError when ffmpeg fails. After a full pass, `frames_read` and `source_fps` (the
    input stream's rate as ffmpeg reports it, None if it does not) are set.
    """

    path: Path
    height: int
    width: int
    sampling_rate: int = 1
    frame_rate: float | None = None
    chunk_frames: int = 16
    max_seconds: float | None = None
    frames_read: int = 0
    source_fps: float | None = None

    def command(self) -> list[str]:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", f"file:{self.path}", "-map", "0:v:0",
               "-an", "-sn", "-dn", "-vf", video_filter(self.height, self.width, self.sampling_rate, self.frame_rate),
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        if self.max_seconds:
            cmd += ["-t", f"{self.max_seconds:g}"]
        return cmd + ["pipe:1"]

    def __iter__(self) -> Iterator[np.ndarray]:
        path = self.path = Path(self.path).resolve()
        _check_file(path)
        frame_bytes = self.height * self.width * 3
        want = frame_bytes * self.chunk_frames
        self.frames_read = 0
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
            try:
                while True:
                    buf = proc.stdout.read(want)
                    n = len(buf) // frame_bytes
                    if n:
                        self.frames_read += n
                        yield np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, self.height, self.width, 3)
                    if len(buf) < want:
                        break
                rc = proc.wait()
            finally:
                if proc.poll() is None:  # the consumer stopped early (an error downstream): do not leave ffmpeg
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
            err.seek(0)
            stderr = err.read().decode("utf-8", "replace")
        stream = _first_video_stream(stderr)
        self.source_fps = source_fps(stderr)
        if rc != 0 and not self.frames_read:
            if _NO_VIDEO.search(stderr) or ("Input #0" in stderr and stream is None):
                raise NoFramesError(path, "the file holds no video stream")
            raise MediaDecodeError(path, f"ffmpeg cannot decode the video: {_stderr_tail(stderr, path)}")
        if stream is not None and "attached pic" in stream:
            raise NoFramesError(path, "the only picture is attached cover art, not a video stream")
        if rc != 0:
            raise MediaDecodeError(path, f"ffmpeg failed after {self.frames_read} frames: "
                                         f"{_stderr_tail(stderr, path)}")
        if not self.frames_read:
            raise NoFramesError(path, "the video stream decoded to zero frames")


def source_fps(stderr: str) -> float | None:
    """The input video stream's frame rate as ffmpeg reports it ("24 fps", "29.97 fps")."""
    stream = _first_video_stream(stderr)
    m = _FPS.search(stream) if stream else None
    return float(m.group(1)) if m else None


def to_float_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (H, W, 3) in [0, 255] or float in [0, 1] -> float32 (3, H, W) in [0, 1]."""
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))  # copy: may be read-only
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"an image must be (H, W, 3) RGB, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif t.is_floating_point():
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
        t = t.float().clamp(0, 1)
    else:
        raise ValueError(f"images must be uint8 or float, got {t.dtype}")
    return t.permute(2, 0, 1)


def resize_center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, H, W) -> (C, size, size): shorter side to `size` (bilinear, antialiased), then the centre crop."""
    _, h, w = image.shape
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        image = F.interpolate(image[None], size=(nh, nw), mode="bilinear", antialias=True,
                              align_corners=False)[0]
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[:, top: top + size, left: left + size]
    return image


def load_lightning_state_dict(path: Path, *, what: str) -> dict[str, torch.Tensor]:
    """A Lightning checkpoint's "state_dict" (or a plain state_dict), loaded tensors-only on the CPU."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated files, or pickled objects weights_only refuses
        raise InvalidWeightsError(
            f"{what} weights: cannot load {path} tensors-only ({type(exc).__name__}: {str(exc)[:200]}). If it is "
            f"a trusted Lightning checkpoint holding other pickled objects, torch.save its "
            f"torch.load(..., weights_only=False)['state_dict'] once and configure that file") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvalidWeightsError(f"{what} weights: {path} holds no state_dict of tensors")
    return obj
