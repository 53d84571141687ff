"""Audio → EnCodec 24 kHz codes: (num_quantizers, frames) ids in [0, 1024), 75 frames per second.

Audio is read with soundfile, downmixed to mono (mean of channels), resampled to 24 kHz with soxr and encoded in
independent chunks of `chunk_seconds`; chunks of equal length, pooled across the items of one call, go through
the model `batch_size` at a time. A file's last chunk is encoded at its own (shorter) length, never padded, so
N samples always give ceil(N / 320) frames: 10 s → exactly 750. Codes near chunk edges differ from a whole-file
encode (the encoder restarts its padding and LSTM state), which is why the chunk length is part of the identity.

Per-item problems raise an `AudioTokenizerError` subclass naming the item; silence is not one of them: a silent
item is encoded and flagged `silent`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch

from mm_assets.tokens.config import ENCODEC_24KHZ, ENCODEC_HOP, AudioTokenizerConfig
from mm_assets.tokens.encodec_model import RANDOM_SEED, build_encodec_24khz
from mm_assets.tokens.identity import (
    TokenizerIdentity,
    library_versions,
    resolve_device,
    resolve_weights,
)

RESAMPLER = "soxr HQ"
# torch.hub names checkpoints <name>-<first 8 hex of sha256>; a file with this prefix is Meta's release
OFFICIAL_SHA256_PREFIX = "d7cc33bc"  # encodec_24khz-d7cc33bc.th
DBFS_FLOOR = -200.0  # reported for digital silence instead of -inf (JSON has no infinity)
MAX_CHANNELS = 16  # more than this is taken for a (channels, samples) array passed the wrong way round


class AudioTokenizerError(ValueError):
    """One item cannot be tokenized; the message names the item (file path or given name) and the reason."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class AudioReadError(AudioTokenizerError):
    """The file is missing, unreadable or not audio soundfile can decode."""


class AudioTooShortError(AudioTokenizerError):
    """Less audio than one EnCodec frame (1/75 s = 320 samples at 24 kHz)."""


class InvalidAudioError(AudioTokenizerError):
    """A waveform that is not audio: wrong shape, NaN/inf samples, a non-positive sample rate."""


# ---------------------------------------------------------------------------------------------- audio input


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples, channels) float32 and the sample rate; any failure is an AudioReadError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(str(path), "no such file" if not path.exists() else "not a regular file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError, EOFError) as err:
        raise AudioReadError(
            str(path),
            f"cannot decode audio ({type(err).__name__}: {err}); soundfile reads WAV, FLAC, OGG and MP3, so "
            "extract other formats to WAV first",
        ) from None
    return data, int(sr)


@dataclass(frozen=True)
class _Prepared:
    source: str
    mono: np.ndarray  # float32 at the model's rate
    source_sample_rate: int
    source_channels: int
    notes: tuple[str, ...]


def _as_float(wav: np.ndarray, source: str) -> np.ndarray:
    if np.issubdtype(wav.dtype, np.floating):
        return wav.astype(np.float32, copy=False)
    if np.issubdtype(wav.dtype, np.signedinteger):
        return (wav / float(np.iinfo(wav.dtype).max + 1)).astype(np.float32)
    if wav.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return ((wav.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    raise InvalidAudioError(source, f"samples of dtype {wav.dtype} are not audio (use float or integer PCM)")


def prepare_waveform(wav: np.ndarray, sr: int, *, source: str, target_sr: int) -> _Prepared:
    """Mono float32 at `target_sr` from (samples,) or (samples, channels) audio, as soundfile returns it."""
    wav = np.asarray(wav)
    if wav.ndim == 1:
        wav = wav[:, None]
    if wav.ndim != 2 or wav.shape[1] < 1:
        raise InvalidAudioError(source, f"waveform shape {wav.shape}: expected (samples,) or (samples, channels)")
    if wav.shape[1] > MAX_CHANNELS:
        raise InvalidAudioError(
            source, f"waveform shape {wav.shape} has {wav.shape[1]} channels: pass (samples, channels)"
        )
    if not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise InvalidAudioError(source, f"sample rate {sr!r}: must be a positive integer")
    wav = _as_float(wav, source)
    if not np.isfinite(wav).all():
        raise InvalidAudioError(source, "the waveform has NaN or infinite samples")
    notes, channels = [], wav.shape[1]
    mono = wav[:, 0] if channels == 1 else wav.mean(axis=1, dtype=np.float32)
    if channels > 1:
        notes.append(f"downmixed {channels} channels to mono")
    if sr != target_sr and len(mono):
        mono = soxr.resample(mono, int(sr), target_sr, quality="HQ")
        notes.append(f"resampled {sr} Hz to {target_sr} Hz")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if len(mono) < ENCODEC_HOP:
        raise AudioTooShortError(
            source,
            f"too short: {len(wav)} samples at {sr} Hz ({len(wav) / sr * 1000:.2f} ms) is less than one EnCodec "
            f"frame (1/75 s, {ENCODEC_HOP} samples at {target_sr} Hz)",
        )
    return _Prepared(source, mono, int(sr), channels, tuple(notes))


# ---------------------------------------------------------------------------------------------- output


@dataclass(frozen=True)
class AudioCodes:
    """One item's codes and what was noticed on the way (silence, downmix, resampling)."""

    source: str
    codes: np.ndarray  # (num_quantizers, frames) int32 in [0, codebook_size)
    n_samples: int  # mono samples at `sample_rate` that were encoded
    sample_rate: int
    source_sample_rate: int
    source_channels: int
    rms_dbfs: float
    silent: bool
    notes: tuple[str, ...] = ()

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate

    def metadata(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_frames": self.n_frames,
            "duration_s": round(self.duration_s, 6),
            "source_sample_rate": self.source_sample_rate,
            "source_channels": self.source_channels,
            "rms_dbfs": round(self.rms_dbfs, 2),
            "silent": self.silent,
            "notes": list(self.notes),
        }


def rms_dbfs(mono: np.ndarray) -> float:
    rms = math.sqrt(float(np.mean(np.square(mono, dtype=np.float64)))) if len(mono) else 0.0
    return max(20 * math.log10(rms), DBFS_FLOOR) if rms > 0 else DBFS_FLOOR


def frames_for(n_samples: int) -> int:
    """EnCodec frames for `n_samples` at 24 kHz: a partial last frame counts (the encoder pads it)."""
    return -(-n_samples // ENCODEC_HOP)


# ---------------------------------------------------------------------------------------------- tokenizer


class AudioTokenizer:
    """EnCodec 24 kHz at a fixed bandwidth; `from_config` loads the weights named in the config."""

    def __init__(self, model: torch.nn.Module, config: AudioTokenizerConfig, identity: TokenizerIdentity,
                 device: torch.device):
        self.model = model.to(device).eval()
        self.config = config
        self.identity = identity
        self.device = device

    @classmethod
    def from_config(
        cls,
        config: AudioTokenizerConfig,
        *,
        allow_random_weights: bool = False,
        base_dir: Path | None = None,
    ) -> AudioTokenizer:
        """Load `config.weights_path` (relative to `base_dir` when given); random weights only if allowed."""
        identity = cls.identity_for(config, allow_random_weights=allow_random_weights, base_dir=base_dir)
        return cls.from_identity(config, identity)

    @classmethod
    def identity_for(
        cls,
        config: AudioTokenizerConfig,
        *,
        allow_random_weights: bool = False,
        base_dir: Path | None = None,
    ) -> TokenizerIdentity:
        """What `from_config` records, without building the model: the weights file is hashed, not loaded."""
        source = resolve_weights(
            config.weights_path,
            allow_random=allow_random_weights,
            what="EnCodec 24 kHz",
            config_key="tokenizers.audio.weights_path",
            base_dir=base_dir,
        )
        settings: dict[str, Any] = {
            "model": config.model,
            "target_bandwidth": config.target_bandwidth,
            "sample_rate": config.sample_rate,
            "frame_rate": config.frame_rate,
            "num_quantizers": config.n_q,
            "codebook_size": config.codebook_size,
            "chunk_seconds": config.chunk_seconds,
            "chunk_tail": "encoded at its own length, not padded",
            "downmix": "mean of channels",
            "resampler": RESAMPLER,
            "silence_threshold_dbfs": config.silence_threshold_dbfs,
            "batch_size": config.batch_size,
            "device": resolve_device(config.device).type,
        }
        if source.is_random:
            settings["random_seed"] = RANDOM_SEED
        else:
            settings["official_checkpoint"] = source.sha256.startswith(OFFICIAL_SHA256_PREFIX)
        return TokenizerIdentity(
            name=ENCODEC_24KHZ,
            modality="audio",
            weights=source.kind,
            weights_sha256=source.sha256,
            weights_path=None if source.is_random else str(source.path),
            versions=library_versions("torch", "encodec", "numpy", "soundfile", "soxr"),
            config=settings,
        )

    @classmethod
    def from_identity(cls, config: AudioTokenizerConfig, identity: TokenizerIdentity) -> AudioTokenizer:
        """Build the model `identity` describes (its weights file, or seeded random weights)."""
        model = build_encodec_24khz(identity.weights_source(), bandwidth=config.target_bandwidth)
        return cls(model, config, identity, resolve_device(config.device))

    @property
    def n_q(self) -> int:
        return self.config.n_q

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def frame_rate(self) -> int:
        return self.config.frame_rate

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    # -- public encoders

    def encode_waveform(self, wav: np.ndarray, sr: int, *, source: str = "<waveform>") -> AudioCodes:
        """Codes of one waveform, (samples,) or (samples, channels) at `sr` Hz."""
        return self._encode([prepare_waveform(wav, sr, source=source, target_sr=self.sample_rate)])[0]

    def encode_waveforms(self, items: Sequence[tuple[np.ndarray, int]],
                         sources: Sequence[str] | None = None) -> list[AudioCodes]:
        """Codes of several waveforms, their chunks pooled into shared batches; the first bad one raises."""
        names = list(sources) if sources is not None else [f"<waveform {i}>" for i in range(len(items))]
        if len(names) != len(items):
            raise ValueError(f"{len(items)} waveforms but {len(names)} source names")
        prepared = [prepare_waveform(w, sr, source=n, target_sr=self.sample_rate) for (w, sr), n in zip(items, names)]
        return self._encode(prepared)

    def encode_file(self, path: str | Path) -> AudioCodes:
        """Codes of one audio file; AudioReadError / AudioTooShortError / InvalidAudioError name the file."""
        wav, sr = read_audio(path)
        return self.encode_waveform(wav, sr, source=str(path))

    def encode_files(self, paths: Iterable[str | Path]) -> list[AudioCodes | AudioTokenizerError]:
        """Codes of each file, or the error that file raised, in order. All files' chunks share batches, so
        the decoded audio of every file is held at once: call it on groups of files, not a whole crawl."""
        results: list[AudioCodes | AudioTokenizerError | None] = []
        prepared, slots = [], []
        for path in paths:
            try:
                wav, sr = read_audio(path)
                prepared.append(prepare_waveform(wav, sr, source=str(path), target_sr=self.sample_rate))
                slots.append(len(results))
                results.append(None)
            except AudioTokenizerError as err:
                results.append(err)
        for slot, codes in zip(slots, self._encode(prepared)):
            results[slot] = codes
        return results  # type: ignore[return-value]

    # -- internals

    def _encode(self, items: list[_Prepared]) -> list[AudioCodes]:
        parts = self._encode_chunks([p.mono for p in items])
        out = []
        for item, codes in zip(items, parts):
            expected = (self.n_q, frames_for(len(item.mono)))
            if codes.shape != expected:  # the frame arithmetic everything downstream relies on
                raise RuntimeError(f"{item.source}: EnCodec gave codes of shape {codes.shape}, expected {expected}")
            level = rms_dbfs(item.mono)
            silent = level < self.config.silence_threshold_dbfs
            notes = item.notes
            if silent:
                notes += (f"silent: RMS {level:.1f} dBFS is below {self.config.silence_threshold_dbfs} dBFS; "
                          "encoded anyway",)
            out.append(AudioCodes(item.source, codes, len(item.mono), self.sample_rate, item.source_sample_rate,
                                  item.source_channels, level, silent, notes))
        return out

    def _encode_chunks(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        """Cut every wave into chunks, batch equal-length chunks across waves, and stitch codes back in order."""
        chunk = self.config.chunk_samples
        by_length: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        pieces: list[list[np.ndarray | None]] = []
        for i, wave in enumerate(waves):
            step = chunk or len(wave)
            starts = range(0, len(wave), step)
            pieces.append([None] * len(starts))
            for j, start in enumerate(starts):
                piece = wave[start:start + step]
                by_length.setdefault(len(piece), []).append((i, j, piece))
        bs = self.config.batch_size
        for group in by_length.values():
            for b in range(0, len(group), bs):
                batch = group[b:b + bs]
                codes = self._forward(np.stack([piece for _, _, piece in batch]))
                for (i, j, _), c in zip(batch, codes):
                    pieces[i][j] = c
        return [np.concatenate(p, axis=1) for p in pieces]  # type: ignore[arg-type]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, samples) float32 → (B, n_q, frames) int32."""
        x = torch.from_numpy(batch).unsqueeze(1).to(self.device)
        with torch.inference_mode():
            frames = self.model.encode(x)  # no segmenting configured: one (codes, scale) frame
            codes = frames[0][0]
        return codes.to("cpu", torch.int32).numpy()
