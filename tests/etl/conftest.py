"""Fixtures for the ETL tests: real short media made with the bundled ffmpeg, and a default config."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import pytest

from mm_assets.config.pipeline import PipelineConfig


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> list[bytes]:
    """Three short, different mp4 files (mpeg4 + aac) made by the bundled static ffmpeg."""
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    folder = tmp_path_factory.mktemp("videos")
    out = []
    for i, (color, freq) in enumerate([("red", 440), ("green", 550), ("blue", 660)]):
        path = folder / f"v{i}.mp4"
        subprocess.run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             f"color=c={color}:s=64x48:d=0.5:r=10", "-f", "lavfi", "-i", f"sine=frequency={freq}:duration=0.5",
             "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(path)],
            check=True, capture_output=True, timeout=60,
        )
        out.append(path.read_bytes())
    return out


@pytest.fixture
def cfg(tmp_path) -> PipelineConfig:
    return PipelineConfig(base_dir=tmp_path)
