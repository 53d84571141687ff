"""EnCodec 24 kHz audio tokenizer: frame arithmetic, per-item errors, resampling, chunking, weights.

Random weights throughout (nothing can be downloaded); `_randomise_codebooks` makes their codes vary.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import importlib.util  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import soxr  # noqa: E402
import torch  # noqa: E402

from mm_assets.storage.paths import sha256_file  # noqa: E402
from mm_assets.tokens.audio import (  # noqa: E402
    AudioReadError,
    AudioTokenizer,
    AudioTooShortError,
    InvalidAudioError,
    frames_for,
)
from mm_assets.tokens.config import AudioTokenizerConfig  # noqa: E402
from mm_assets.tokens.encodec_model import import_encodec  # noqa: E402
from mm_assets.tokens.identity import InvalidWeightsError, MissingWeightsError  # noqa: E402

torch.set_num_threads(1)
SR = 24_000


def signal(seconds: float, sr: int = SR, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A gliding, amplitude-modulated tone plus a little noise: (samples,) or (samples, channels) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sr)) / sr
    tone = 0.3 * np.sin(2 * np.pi * (220 + 50 * np.sin(t)) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    x = np.stack([tone * (1 - 0.3 * c) + 0.05 * rng.standard_normal(len(t)) for c in range(channels)], axis=1)
    return (x[:, 0] if channels == 1 else x).astype(np.float32)


def random_tokenizer(**cfg) -> AudioTokenizer:
    cfg.setdefault("weights_path", None)
    return AudioTokenizer.from_config(AudioTokenizerConfig(device="cpu", **cfg), allow_random_weights=True)


@pytest.fixture(scope="module")
def tok() -> AudioTokenizer:
    return random_tokenizer(chunk_seconds=10, batch_size=4)


def test_ten_seconds_give_750_frames_of_8_codebooks(tok):
    out = tok.encode_waveform(signal(10), SR)
    assert out.codes.shape == (8, 750) and out.codes.dtype == np.int32
    assert out.codes.min() >= 0 and out.codes.max() < 1024
    assert all(len(np.unique(level)) > 10 for level in out.codes)  # random codebooks are not all zero
    assert not out.silent and out.notes == () and out.duration_s == 10.0


def test_frame_count_of_short_and_uneven_lengths(tok):
    assert tok.encode_waveform(signal(0.2), SR).codes.shape == (8, 15)
    assert tok.encode_waveform(np.zeros(320, np.float32), SR).n_frames == 1  # exactly one frame
    # 12.5 s with 10 s chunks: 750 frames, then the 2.5 s tail at its own length (187.5 → 188 frames)
    assert tok.encode_waveform(signal(12.5), SR).n_frames == frames_for(300_000) == 750 + 188


def test_shorter_than_one_frame_is_a_clear_error(tok):
    with pytest.raises(AudioTooShortError, match=r"clip.wav: too short: 240 samples.*less than one EnCodec frame"):
        tok.encode_waveform(np.zeros(240, np.float32), SR, source="clip.wav")
    with pytest.raises(AudioTooShortError, match="too short: 0 samples"):
        tok.encode_waveform(np.zeros((0, 2), np.float32), 44_100)


def test_silence_is_encoded_and_flagged(tok):
    out = tok.encode_waveform(np.zeros(2 * SR, np.float32), SR, source="quiet.wav")
    assert out.codes.shape == (8, 150) and out.silent
    assert out.rms_dbfs == -200.0 and any(n.startswith("silent") for n in out.notes)
    meta = out.metadata()
    assert meta["silent"] is True and meta["n_frames"] == 150


def test_unreadable_files_name_the_file(tok, tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt " + os.urandom(64))
    with pytest.raises(AudioReadError, match=f"{corrupt}: cannot decode audio"):
        tok.encode_file(corrupt)
    with pytest.raises(AudioReadError, match="missing.wav: no such file"):
        tok.encode_file(tmp_path / "missing.wav")


def test_encode_files_keeps_per_item_errors_in_order(tok, tmp_path):
    good, short, bad = tmp_path / "good.flac", tmp_path / "short.wav", tmp_path / "bad.wav"
    sf.write(good, signal(3), SR)
    sf.write(short, np.zeros(100, np.float32), SR)
    bad.write_bytes(b"not audio at all")
    results = tok.encode_files([good, short, bad, good])
    assert [type(r).__name__ for r in results] == ["AudioCodes", "AudioTooShortError", "AudioReadError", "AudioCodes"]
    assert results[0].codes.shape == (8, 225) and np.array_equal(results[0].codes, results[3].codes)
    assert str(short) in str(results[1])


def test_stereo_44k_is_downmixed_and_resampled(tok, tmp_path):
    stereo = signal(2, sr=44_100, channels=2)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 44_100, subtype="FLOAT")
    out = tok.encode_file(path)
    assert out.codes.shape == (8, 150)
    assert (out.source_sample_rate, out.source_channels) == (44_100, 2)
    assert out.notes == ("downmixed 2 channels to mono", "resampled 44100 Hz to 24000 Hz")
    by_hand = soxr.resample(stereo.mean(axis=1), 44_100, SR, quality="HQ").astype(np.float32)
    assert np.array_equal(out.codes, tok.encode_waveform(by_hand, SR).codes)


def test_integer_pcm_and_invalid_waveforms(tok):
    x = signal(1)
    pcm = np.round(x * 32767).astype(np.int16)
    a, b = tok.encode_waveform(x, SR).codes, tok.encode_waveform(pcm, SR).codes
    assert a.shape == b.shape == (8, 75) and (a != b).mean() < 0.05
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        tok.encode_waveform(np.full(SR, np.nan, np.float32), SR)
    with pytest.raises(InvalidAudioError, match=r"pass \(samples, channels\)"):
        tok.encode_waveform(np.zeros((2, SR), np.float32), SR)  # channels-first
    with pytest.raises(InvalidAudioError, match="sample rate 0"):
        tok.encode_waveform(x, 0)


def test_chunk_length_changes_codes_only_at_edges_and_is_recorded(tok):
    x = signal(30)
    whole = random_tokenizer(chunk_seconds=30, batch_size=1)
    a, b = tok.encode_waveform(x, SR).codes, whole.encode_waveform(x, SR).codes
    assert a.shape == b.shape == (8, 2250)
    differ = a != b
    assert 0 < differ.mean() < 0.1  # ~1% here, at the starts of the 2nd and 3rd chunks
    # the encoder is causal: the first chunk's codes cannot see the edge
    assert differ[:, :740].mean() < 0.005
    assert tok.identity.config["chunk_seconds"] == 10.0 and whole.identity.config["chunk_seconds"] == 30.0
    assert tok.identity.fingerprint != whole.identity.fingerprint


def test_batching_pools_chunks_without_changing_shapes():
    pooled_tok = random_tokenizer(chunk_seconds=1, batch_size=4)
    one = random_tokenizer(chunk_seconds=1, batch_size=1)
    items = [(signal(2.4, seed=i), SR) for i in range(3)]  # 6 one-second chunks in 2 batches, 3 tails of 0.4 s
    pooled, single = pooled_tok.encode_waveforms(items), one.encode_waveforms(items)
    for p, s in zip(pooled, single):
        assert p.codes.shape == s.codes.shape == (8, 180)
        assert (p.codes != s.codes).mean() < 0.01  # batched kernels may round differently, rarely flipping a code


def test_random_weights_are_marked_and_deterministic(tok, tmp_path):
    ident = tok.identity.to_metadata()
    assert ident["weights"] == "random" and ident["weights_sha256"] == "random" and ident["weights_path"] is None
    assert ident["config"]["random_seed"] == 0 and ident["versions"]["encodec"] == "0.1.1"
    # a configured but missing file with the flag set: random weights, same seed, same codes
    other = random_tokenizer(weights_path=str(tmp_path / "encodec_24khz-d7cc33bc.th"))
    assert other.identity.weights == "random" and other.identity.fingerprint == tok.identity.fingerprint
    x = signal(1, seed=3)
    assert np.array_equal(other.encode_waveform(x, SR).codes, tok.encode_waveform(x, SR).codes)


def test_missing_weights_without_the_flag_name_the_path(tmp_path):
    path = tmp_path / "models" / "encodec_24khz-d7cc33bc.th"
    with pytest.raises(MissingWeightsError) as err:
        AudioTokenizer.from_config(AudioTokenizerConfig(weights_path=str(path)))
    assert str(path) in str(err.value) and "allow_random_weights" in str(err.value)
    rel = AudioTokenizerConfig(weights_path="models/encodec_24khz-d7cc33bc.th")
    with pytest.raises(MissingWeightsError, match=str(tmp_path / "models")):
        AudioTokenizer.from_config(rel, base_dir=tmp_path)


def test_saved_state_dict_loads_strictly_and_gives_identical_codes(tok, tmp_path):
    path = tmp_path / "encodec_24khz-d7cc33bc.th"
    torch.save(tok.model.state_dict(), path)
    loaded = AudioTokenizer.from_config(AudioTokenizerConfig(weights_path=str(path), device="cpu"))
    meta = loaded.identity.to_metadata()
    assert meta["weights"] == "pretrained" and meta["weights_sha256"] == sha256_file(path)
    assert "random_seed" not in meta["config"] and meta["weights_path"] == str(path)
    assert meta["config"]["official_checkpoint"] is False  # right name, but not Meta's bytes
    x = signal(4, seed=5)
    assert np.array_equal(loaded.encode_waveform(x, SR).codes, tok.encode_waveform(x, SR).codes)


def test_wrong_weight_files_are_refused(tok, tmp_path):
    state = tok.model.state_dict()
    cases = {
        "garbage.th": None,
        "partial.th": {k: v for i, (k, v) in enumerate(state.items()) if i},
        "extra.th": {**state, "decoder.extra.weight": torch.zeros(1)},
        "shape.th": {**state, "quantizer.vq.layers.0._codebook.embed": torch.zeros(512, 128)},
        "tensor.th": torch.zeros(3),
    }
    expect = {"garbage.th": "cannot load", "partial.th": "missing keys encoder.model.0.conv.conv.bias",
              "extra.th": "unexpected keys decoder.extra.weight", "shape.th": "wrong shape quantizer",
              "tensor.th": "holds a Tensor, not a plain state_dict"}
    for name, content in cases.items():
        path = tmp_path / name
        if content is None:
            path.write_bytes(os.urandom(256))
        else:
            torch.save(content, path)
        with pytest.raises(InvalidWeightsError, match=expect[name]) as err:
            AudioTokenizer.from_config(AudioTokenizerConfig(weights_path=str(path), device="cpu"))
        assert str(path) in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("torchaudio") is not None, reason="torchaudio is installed")
def test_encodec_imports_without_torchaudio():
    encodec = import_encodec()
    assert "torchaudio" not in sys.modules  # the stand-in was only there during the import
    with pytest.raises(AttributeError, match="never calls torchaudio"):
        encodec.utils.torchaudio.transforms  # noqa: B018
