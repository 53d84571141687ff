"""Video tokenizer: predicted code counts, tokens/s, no-frame and short clips, checkpoints, determinism."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from mm_assets.storage.paths import sha256_file
from mm_assets.tokens.config import VideoTokenizerConfig
from mm_assets.tokens.identity import InvalidWeightsError, MissingWeightsError
from mm_assets.tokens.video import VideoTokenizer
from mm_assets.tokens.vq import ClipTooShortError, MediaDecodeError, NoFramesError, ffmpeg_exe, video_filter


def config(**kw) -> VideoTokenizerConfig:
    """The reference's video template (24 fps, every 4th frame, 2x16x16, 4096 codes), narrow latents."""
    return VideoTokenizerConfig(**{"checkpoint": None, "device": "cpu", "embed_dim": 16, "num_quantizers": 2, **kw})


def tokenizer(seed: int = 0, **kw) -> VideoTokenizer:
    return VideoTokenizer.from_config(config(**kw), allow_random_weights=True, seed=seed)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    files = {name: d / name for name in ("clip.mp4", "audio.m4a", "one_frame.mp4", "broken.mp4", "empty.mp4")}
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-t", "2", "-pix_fmt", "yuv420p",
           str(files["clip.mp4"]))  # 48 frames
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(files["audio.m4a"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=320x240:rate=24", "-frames:v", "1", "-pix_fmt", "yuv420p",
           str(files["one_frame.mp4"]))
    files["broken.mp4"].write_bytes(files["clip.mp4"].read_bytes()[:200] + b"\x00garbage" * 64)
    files["empty.mp4"].write_bytes(b"")
    return files


@pytest.fixture(scope="module")
def rvq() -> VideoTokenizer:
    return tokenizer()


def test_clip_code_count_equals_the_prediction(media, rvq):
    out = rvq.encode_file(media["clip.mp4"])
    assert out.frames_sampled == rvq.frames_sampled(48) == 12 and out.frames_dropped == 0
    assert out.codes.shape == (2, 6 * 16 * 16) and out.codes.dtype == np.int32
    assert out.codes.size == rvq.expected_codes(out.frames_sampled) == 6 * 256 * 2
    assert out.codes.min() >= 0 and out.codes.max() < 4096
    assert out.grid == (6, 16, 16) and out.as_grid().shape == (6, 16, 16, 2)
    assert np.array_equal(out.as_grid()[1, 3, 5], out.codes[:, 256 + 3 * 16 + 5])
    assert out.source_fps == 24.0
    # fps / sampling_rate / T * grid * n_q, not the reference's "75 Hz audio / 4" (DESIGN.md §11)
    assert rvq.config.tokens_per_second == 24 / 4 / 2 * 256 * 2 == out.codes.size / 2.0
    assert rvq.identity.to_metadata()["config"]["tokens_per_second"] == 1536


@pytest.mark.parametrize(("kwargs", "sampled", "grid"), [
    (dict(sampling_rate=5, tubelet_size=(4, 16, 16)), 10, (2, 16, 16)),  # ceil(48 / 5) = 10; 2 frames dropped
    (dict(sampling_rate=2, fps=12.0), 12, (6, 16, 16)),  # resampled to 12 fps: 24 frames, every 2nd kept
    (dict(sampling_rate=3, input_resolution=(128, 192), tubelet_size=(2, 32, 32)), 16, (8, 4, 6)),
])
def test_sampling_tubelet_floor_and_grid(media, kwargs, sampled, grid):
    tok = tokenizer(num_quantizers=1, **kwargs)
    out = tok.encode_file(media["clip.mp4"])
    assert out.frames_sampled == sampled and out.grid == grid
    assert out.codes.shape == (1, grid[0] * grid[1] * grid[2]) == (1, tok.expected_codes(sampled))
    assert out.frames_dropped == sampled - grid[0] * tok.tubelet_t
    cfg = tok.config
    assert cfg.tokens_per_second == pytest.approx(cfg.fps / cfg.sampling_rate / tok.tubelet_t * grid[1] * grid[2])


def test_filter_selects_every_nth_frame_then_scales_and_crops():
    assert video_filter(256, 256, 4, None) == r"select=not(mod(n\,4)),scale=256:256:force_original_aspect_" \
                                              r"ratio=increase:flags=bilinear,crop=256:256"
    assert video_filter(128, 192, 1, 12.5) == "fps=12.5,scale=192:128:force_original_aspect_ratio=increase:" \
                                              "flags=bilinear,crop=192:128"


def test_no_frames_too_short_and_corrupt_are_per_item_errors(media, rvq):
    with pytest.raises(NoFramesError, match="no video stream") as exc:
        rvq.encode_file(media["audio.m4a"])
    assert exc.value.reason == "no_frames" and str(media["audio.m4a"]) in str(exc.value)
    with pytest.raises(NoFramesError, match="empty"):
        rvq.encode_file(media["empty.mp4"])
    with pytest.raises(ClipTooShortError, match="1 sampled frame") as exc:
        rvq.encode_file(media["one_frame.mp4"])
    assert exc.value.reason == "too_short"
    with pytest.raises(MediaDecodeError) as exc:
        rvq.encode_file(media["broken.mp4"])
    assert exc.value.reason == "corrupt_media" and not isinstance(exc.value, NoFramesError)
    results = rvq.encode_files([media["audio.m4a"], media["clip.mp4"], media["one_frame.mp4"]])
    assert [getattr(r, "reason", "ok") for r in results] == ["no_frames", "ok", "too_short"]


def test_single_quantizer_codes_are_nearest_codebook_entries():
    tok = tokenizer(num_quantizers=1)
    frames = np.random.default_rng(0).integers(0, 256, (4, 256, 256, 3), dtype=np.uint8)
    out = tok.encode_frames(frames)
    assert out.codes.shape == (1, 2 * 256)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    z = tok.model.embed(x).permute(0, 2, 3, 4, 1).reshape(-1, 16)
    embed = tok.model.quantizer._codebook.embed[0]
    assert np.array_equal(out.codes[0], torch.cdist(z, embed).argmin(1).numpy())
    assert len(np.unique(out.codes)) > 1


def test_codes_are_deterministic_and_codebooks_stay_frozen(media, rvq):
    before = {k: v.clone() for k, v in rvq.model.state_dict().items()}
    a = rvq.encode_file(media["clip.mp4"]).codes
    assert np.array_equal(a, rvq.encode_file(media["clip.mp4"]).codes)
    assert all(torch.equal(v, rvq.model.state_dict()[k]) for k, v in before.items())  # no EMA update
    twin = VideoTokenizer.from_config(config(), allow_random_weights=True, chunk_tubelets=1)
    assert np.array_equal(a, twin.encode_file(media["clip.mp4"]).codes)  # chunking does not change codes
    other = tokenizer(seed=1)
    assert not np.array_equal(a, other.encode_file(media["clip.mp4"]).codes)


def test_checkpoint_round_trip_and_clear_failures(tmp_path, rvq):
    path = tmp_path / "video_vq.pt"
    source = tokenizer(seed=5)
    torch.save(source.model.state_dict(), path)
    loaded = VideoTokenizer.from_config(config(checkpoint="video_vq.pt"), base_dir=tmp_path)
    assert loaded.identity.weights_sha256 == sha256_file(path) and rvq.identity.weights_sha256 == "random"
    assert loaded.identity.versions["vector-quantize-pytorch"] == "1.32.0"
    frames = np.random.default_rng(1).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    assert np.array_equal(loaded.encode_frames(frames).codes, source.encode_frames(frames).codes)
    assert not np.array_equal(rvq.encode_frames(frames).codes, source.encode_frames(frames).codes)

    with pytest.raises(InvalidWeightsError, match=r"missing keys quantizer\.layers\.2\._codebook"):
        VideoTokenizer.from_config(config(checkpoint=str(path), num_quantizers=3))
    with pytest.raises(InvalidWeightsError, match=r"wrong shape .*embed\.weight"):
        VideoTokenizer.from_config(config(checkpoint=str(path), embed_dim=32))
    state = source.model.state_dict()
    state["quantizer.layers.1._codebook.initted"] = torch.tensor(False)
    torch.save(state, tmp_path / "uninit.pt")
    with pytest.raises(InvalidWeightsError, match="uninitialised"):
        VideoTokenizer.from_config(config(checkpoint=str(tmp_path / "uninit.pt")))
    with pytest.raises(MissingWeightsError, match="tokenizers.video.checkpoint"):
        VideoTokenizer.from_config(config(checkpoint="models/none.pt"), base_dir=tmp_path)


def test_bad_arguments_are_refused(rvq):
    with pytest.raises(ValueError, match=r"frames must be uint8 \(F, 256, 256, 3\)"):
        rvq.encode_frames(np.zeros((4, 128, 128, 3), np.uint8))
    with pytest.raises(ClipTooShortError, match="<frames>"):
        rvq.encode_frames(np.zeros((1, 256, 256, 3), np.uint8))
    with pytest.raises(ValueError, match="chunk_tubelets"):
        VideoTokenizer.from_config(config(), allow_random_weights=True, chunk_tubelets=0)
