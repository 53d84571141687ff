"""The token assets' per-item handling with the real tokenizers: bad items are recorded, never fatal."""

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf

from mm_assets.config.pipeline import parse_config
from mm_assets.tokens.assets import tokenize_items, tokenizer_plan
from mm_assets.tokens.identity import MissingWeightsError
from mm_assets.tokens.store import read_identity, read_tokens, write_tokens


@pytest.fixture
def cfg(tmp_path):
    return parse_config({"tokenizers": {"allow_random_weights": True, "audio": {"batch_size": 1}}}, base_dir=tmp_path)


def _wav(path, seconds, silent=False, sr=24000):
    n = int(seconds * sr)
    t = np.arange(n) / sr
    sf.write(path, np.zeros(n) if silent else 0.3 * np.sin(2 * np.pi * 440 * t), sr)
    return path


def _ffmpeg(*args):
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


def test_audio_items_silent_short_and_corrupt_are_recorded(cfg, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wav" * 10)
    items = [("a_ok", _wav(tmp_path / "ok.wav", 1.0)), ("b_silent", _wav(tmp_path / "silent.wav", 1.0, silent=True)),
             ("c_short", _wav(tmp_path / "short.wav", 0.2)), ("d_tiny", _wav(tmp_path / "tiny.wav", 0.005)),
             ("e_corrupt", corrupt)]
    plan = tokenizer_plan(cfg, "audio", items)
    encode, identity = plan.build(), plan.identity.to_metadata()
    rows = {r.unique_id: r for r in tokenize_items(items, encode, lambda _: None)}
    assert rows["a_ok"].codes.shape == (8, 75)
    assert rows["b_silent"].status == "ok" and rows["b_silent"].notes == "silent"
    assert rows["c_short"].codes.shape == (8, 15)  # 0.2 s at 75 Hz
    assert (rows["d_tiny"].status, rows["d_tiny"].reason) == ("failed", "too_short")
    assert (rows["e_corrupt"].status, rows["e_corrupt"].reason) == ("failed", "unreadable_audio")
    assert "corrupt.wav" in rows["e_corrupt"].message
    assert identity["weights"] == "random"

    out = tmp_path / "audio.parquet"
    write_tokens(out, list(rows.values()), identity)
    codes, failed = read_tokens(out)
    assert set(codes) == {"a_ok", "b_silent", "c_short"} and len(failed) == 2
    assert np.array_equal(codes["a_ok"], rows["a_ok"].codes)
    assert read_identity(out)["weights"] == "random"


def test_corrupt_image_and_video_without_frames_are_recorded(cfg, tmp_path):
    image = tmp_path / "frame.png"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=300x200", "-frames:v", "1", str(image))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(bytes(range(256)) * 8)
    encode = tokenizer_plan(cfg, "image", []).build()
    rows = {r.unique_id: r for r in tokenize_items([("img", image), ("bad", corrupt)], encode, lambda _: None)}
    assert rows["img"].codes.shape == (1, 256) and rows["img"].codes.max() < 16384
    assert (rows["bad"].status, rows["bad"].reason) == ("failed", "corrupt_media")

    audio_only = tmp_path / "audio_only.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(audio_only))
    encode = tokenizer_plan(cfg, "video", []).build()
    (row,) = tokenize_items([("novideo", audio_only)], encode, lambda _: None)
    assert (row.status, row.reason) == ("failed", "no_frames")


def test_missing_weights_without_the_flag_name_the_path(tmp_path):
    strict = parse_config({"tokenizers": {"allow_random_weights": False}}, base_dir=tmp_path)
    with pytest.raises(MissingWeightsError, match="encodec_24khz-d7cc33bc.th"):
        tokenizer_plan(strict, "audio", [])
