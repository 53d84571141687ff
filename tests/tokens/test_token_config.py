"""Tokenizer config sections (derived values, messages naming the bad value) and the identity/weights helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from mm_assets.storage.paths import sha256_file
from mm_assets.tokens.config import (
    AudioTokenizerConfig,
    ImageTokenizerConfig,
    TokenizersConfig,
    VideoTokenizerConfig,
    encodec_quantizers,
)
from mm_assets.tokens.identity import (
    MissingWeightsError,
    TokenizerIdentity,
    library_versions,
    resolve_weights,
)

# -- audio


def test_audio_defaults_follow_the_reference_with_derived_codebooks():
    cfg = AudioTokenizerConfig()
    assert (cfg.model, cfg.sample_rate, cfg.frame_rate, cfg.target_bandwidth) == ("encodec_24khz", 24000, 75, 6.0)
    assert cfg.num_quantizers == 8 and cfg.codebook_size == 1024
    assert cfg.tokens_per_second == 600
    assert cfg.chunk_seconds == 10.0 and cfg.chunk_samples == 240_000
    assert cfg.device == "auto"


@pytest.mark.parametrize("bw,n_q", [(1.5, 2), (3.0, 4), (6.0, 8), (12.0, 16), (24.0, 32)])
def test_quantizers_derive_from_bandwidth(bw, n_q):
    assert encodec_quantizers(bw) == n_q
    assert AudioTokenizerConfig(target_bandwidth=bw).num_quantizers == n_q


def test_stated_quantizers_must_agree():
    assert AudioTokenizerConfig(num_quantizers=8).num_quantizers == 8
    with pytest.raises(ValidationError, match="num_quantizers 4 disagrees with target_bandwidth 6.0 kbps.*8"):
        AudioTokenizerConfig(num_quantizers=4)


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("target_bandwidth", 5.0, r"5.0 kbps: encodec_24khz supports \[1.5, 3.0, 6.0, 12.0, 24.0\]"),
        ("sample_rate", 44100, "sample_rate 44100 Hz does not match encodec_24khz"),
        ("frame_rate", 50, "frame_rate 50 Hz: encodec_24khz emits 75"),
        ("model", "facebook/encodec_24khz", "only 'encodec_24khz'"),
        ("chunk_seconds", 0.5, "not a whole number of 75 Hz frames"),
        ("chunk_seconds", 0, r"use a length in \(0, 600\]"),
        ("device", "gpu", "device 'gpu': use 'auto', 'cpu', 'cuda'"),
        ("batch_size", 0, "greater than or equal to 1"),
    ],
)
def test_audio_rejects_values_the_model_cannot_honour(field, value, message):
    with pytest.raises(ValidationError, match=message):
        AudioTokenizerConfig(**{field: value})


def test_whole_file_mode_and_unknown_keys():
    assert AudioTokenizerConfig(chunk_seconds=None).chunk_samples is None
    assert AudioTokenizerConfig(chunk_seconds=30).chunk_samples == 720_000
    with pytest.raises(ValidationError, match="audio_chunk_duration_sec"):
        AudioTokenizerConfig(audio_chunk_duration_sec=30.0)


# -- image and video


def test_image_grid_is_derived_and_checked():
    cfg = ImageTokenizerConfig()
    assert cfg.latent_shape == (16, 16) and cfg.tokens_per_image == 256
    assert (cfg.codebook_size, cfg.embed_dim, cfg.patch_size) == (16384, 256, 16)
    assert ImageTokenizerConfig(resolution=512, latent_shape=[32, 32]).tokens_per_image == 1024
    with pytest.raises(ValidationError, match=r"latent_shape \[8, 8\] disagrees with resolution 256 / patch_size 16"):
        ImageTokenizerConfig(latent_shape=[8, 8])
    with pytest.raises(ValidationError, match="resolution 250 is not divisible by patch_size 16"):
        ImageTokenizerConfig(resolution=250)


def test_video_tokens_per_second_from_fps_sampling_tubelet_and_grid():
    cfg = VideoTokenizerConfig()  # fps 24, every 4th frame, tubelet (2,16,16), 256², RVQ 4
    assert cfg.latent_grid == (16, 16)
    assert cfg.tokens_per_tubelet_step == 16 * 16 * 4
    assert cfg.tokens_per_second == pytest.approx(24 / 4 / 2 * 256 * 4) == 3072
    assert cfg.tokens_per_second_at(30) == pytest.approx(30 / 4 / 2 * 256 * 4)
    plain = VideoTokenizerConfig(num_quantizers=1, fps=25, sampling_rate=1, tubelet_size=[1, 16, 16],
                                 input_resolution=[128, 256])
    assert plain.tokens_per_second == pytest.approx(25 * 8 * 16)


def test_video_refuses_the_references_stated_rate_and_bad_grids():
    with pytest.raises(ValidationError, match="output_tokens_per_second is derived.*18.75 is wrong"):
        VideoTokenizerConfig(output_tokens_per_second=18.75)
    with pytest.raises(ValidationError, match=r"input_resolution \[250, 256\] is not divisible"):
        VideoTokenizerConfig(input_resolution=[250, 256])
    with pytest.raises(ValidationError, match="every size must be >= 1"):
        VideoTokenizerConfig(tubelet_size=[0, 16, 16])


def test_tokenizers_section_from_yaml_like_mapping():
    cfg = TokenizersConfig(
        allow_random_weights=True,
        audio={"chunk_seconds": 30, "batch_size": 8, "device": "cpu"},
        video={"input_resolution": [256, 256], "tubelet_size": [2, 16, 16]},
        text={"tokenizer_json": "models/tok.json", "allow_train_demo": True},
    )
    assert cfg.audio.chunk_seconds == 30 and cfg.video.tubelet_size == (2, 16, 16)
    assert cfg.text.allow_train_demo and cfg.image.latent_shape == (16, 16)
    with pytest.raises(ValidationError, match="audio.weights"):
        TokenizersConfig(audio={"weights": "x.th"})
    with pytest.raises(ValidationError):
        cfg.audio.batch_size = 2  # frozen


def test_config_and_package_import_no_torch():
    code = "import sys, mm_assets.tokens, mm_assets.tokens.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


# -- identity and weights


def _identity(**over) -> TokenizerIdentity:
    fields = dict(name="encodec_24khz", modality="audio", weights="pretrained", weights_sha256="ab" * 32,
                  weights_path="/models/a.th", versions={"torch": "2.13.0"}, config={"chunk_seconds": 10.0})
    return TokenizerIdentity(**{**fields, **over})


def test_identity_metadata_roundtrip_and_fingerprint():
    ident = _identity()
    meta = ident.to_metadata()
    assert meta["weights"] == "pretrained" and meta["config"]["chunk_seconds"] == 10.0
    assert TokenizerIdentity.from_dict(meta) == ident
    assert _identity(weights_path="/elsewhere/a.th").fingerprint == ident.fingerprint  # location is not content
    assert _identity(config={"chunk_seconds": 30.0}).fingerprint != ident.fingerprint
    with pytest.raises(ValueError, match="identity_sha256"):
        TokenizerIdentity.from_dict({**meta, "config": {"chunk_seconds": 30.0}})
    with pytest.raises(ValueError, match="inconsistent"):
        _identity(weights="random")
    assert _identity(weights="random", weights_sha256="random").is_random


def test_resolve_weights_hashes_the_file(tmp_path):
    f = tmp_path / "w.th"
    f.write_bytes(b"weights")
    src = resolve_weights("w.th", allow_random=False, what="X", config_key="tokenizers.x.path", base_dir=tmp_path)
    assert (src.kind, src.path, src.sha256) == ("pretrained", f, sha256_file(f))
    # a file that is there is used even when random weights are allowed
    assert resolve_weights(f, allow_random=True, what="X", config_key="k").kind == "pretrained"


def test_missing_weights_error_names_path_and_way_out(tmp_path):
    missing = tmp_path / "nope.th"
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights(missing, allow_random=False, what="EnCodec 24 kHz", config_key="tokenizers.audio.weights_path")
    msg = str(err.value)
    assert str(missing) in msg and "tokenizers.audio.weights_path" in msg and "allow_random_weights" in msg
    with pytest.raises(MissingWeightsError, match="no path is configured"):
        resolve_weights(None, allow_random=False, what="X", config_key="k")
    src = resolve_weights(missing, allow_random=True, what="X", config_key="k")
    assert (src.kind, src.sha256, src.path) == ("random", "random", missing)


def test_library_versions_marks_absent_packages():
    v = library_versions("numpy", "surely-not-installed-pkg")
    assert v["numpy"] and v["surely-not-installed-pkg"] == "absent" and "python" in v
