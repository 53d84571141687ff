"""Video tokenizer: sampled frames -> 2x16x16 tubelets -> a linear (Conv3d) tubelet embedding -> VQ / RVQ codes.

Frames are decoded with the bundled ffmpeg (resampled to the config's `fps`, then every `sampling_rate`-th
frame kept, scaled to cover the input resolution and centre-cropped). Sampled frames are grouped
`tubelet_size[0]` at a time; trailing frames that do not fill a tubelet are dropped, so

    codes per clip  = floor(frames_sampled / T) * (H / tH) * (W / tW) * num_quantizers
    tokens / second = fps / sampling_rate / T * (H / tH) * (W / tW) * num_quantizers

(the reference's "~18.75 tokens/s (75 Hz audio / 4)" mixes in the audio frame rate: DESIGN.md §11). A clip
shorter than one tubelet raises ClipTooShortError rather than returning zero codes (an empty item).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import torch
from torch import nn
from vector_quantize_pytorch import ResidualVQ, VectorQuantize

from mm_assets.tokens.config import VideoTokenizerConfig
from mm_assets.tokens.identity import (
    InvalidWeightsError,
    TokenizerIdentity,
    library_versions,
    load_module_weights,
    resolve_device,
    resolve_weights,
)
from mm_assets.tokens.vq import ClipTooShortError, FrameReader, MediaDecodeError

RANDOM_SEED = 0  # random weights are deterministic: same seed, same model
CHUNK_TUBELETS = 8  # tubelet steps per forward pass; codes do not depend on it (tubelets are independent)


@dataclass(frozen=True)
class VideoCodes:
    """One clip's codes, (num_quantizers, N) with N = n_tubelets_t * grid_h * grid_w in (t, h, w) order:
    the (levels, T) layout the shard assembler takes."""

    codes: np.ndarray
    grid: tuple[int, int, int]
    frames_sampled: int
    frames_dropped: int
    source_fps: float | None = None

    def as_grid(self) -> np.ndarray:
        """(n_tubelets_t, grid_h, grid_w, num_quantizers)."""
        return self.codes.T.reshape(*self.grid, self.codes.shape[0])


class TubeletVQ(nn.Module):
    """Conv3d with kernel = stride = tubelet (one linear map per tubelet), then vector-quantize-pytorch."""

    def __init__(self, tubelet: tuple[int, int, int], latent_dim: int, codebook_size: int, num_quantizers: int):
        super().__init__()
        self.embed = nn.Conv3d(3, latent_dim, kernel_size=tubelet, stride=tubelet)
        # kmeans_init stays off: with it, the first forward pass fits the codebook to whatever it is given,
        # even in eval(), so codes would depend on the first clip. EMA updates only run in train().
        if num_quantizers > 1:
            self.quantizer = ResidualVQ(dim=latent_dim, codebook_size=codebook_size, num_quantizers=num_quantizers,
                                        kmeans_init=False, quantize_dropout=False)
        else:
            self.quantizer = VectorQuantize(dim=latent_dim, codebook_size=codebook_size, kmeans_init=False)
        self.num_quantizers = num_quantizers

    def codebooks(self) -> list:
        layers = self.quantizer.layers if self.num_quantizers > 1 else [self.quantizer]
        return [layer._codebook for layer in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, R, R) in [-1, 1] -> int64 (B, t, h, w, num_quantizers)."""
        z = self.embed(x)
        b, d, t, h, w = z.shape
        tokens = z.permute(0, 2, 3, 4, 1).reshape(b, t * h * w, d)
        _, idx, _ = self.quantizer(tokens, freeze_codebook=True)  # (b, n) for VQ, (b, n, q) for RVQ
        return idx.reshape(b, t, h, w, self.num_quantizers)


class VideoTokenizer:
    """Video files or frame arrays -> tubelet codes; `from_config` loads the state_dict (`embed.*`,
    `quantizer.*`) named in the config and records its sha256."""

    name = "tubelet_vq"
    what = "video tubelet tokenizer"  # names it in error messages

    def __init__(self, model: TubeletVQ, config: VideoTokenizerConfig, identity: TokenizerIdentity,
                 device: torch.device, *, chunk_tubelets: int = CHUNK_TUBELETS, max_seconds: float | None = None):
        if chunk_tubelets < 1:
            raise ValueError(f"chunk_tubelets must be >= 1, got {chunk_tubelets}")
        self.model = model.to(device).eval().requires_grad_(False)
        self.config, self.identity, self.device = config, identity, device
        self.chunk_tubelets, self.max_seconds = chunk_tubelets, max_seconds

    @classmethod
    def from_config(cls, config: VideoTokenizerConfig, *, allow_random_weights: bool = False,
                    base_dir: Path | None = None, seed: int = RANDOM_SEED, chunk_tubelets: int = CHUNK_TUBELETS,
                    max_seconds: float | None = None) -> VideoTokenizer:
        """Load `config.checkpoint` (relative to `base_dir` when given); random weights (seeded) only if allowed.
        `max_seconds` bounds how much of each video is decoded (None: all of it)."""
        identity = cls.identity_for(config, allow_random_weights=allow_random_weights, base_dir=base_dir, seed=seed,
                                    max_seconds=max_seconds)
        return cls.from_identity(config, identity, chunk_tubelets=chunk_tubelets)

    @classmethod
    def identity_for(cls, config: VideoTokenizerConfig, *, allow_random_weights: bool = False,
                     base_dir: Path | None = None, seed: int = RANDOM_SEED,
                     max_seconds: float | None = None) -> TokenizerIdentity:
        """What `from_config` records, without building the model: the checkpoint is hashed, not loaded."""
        source = resolve_weights(config.checkpoint, allow_random=allow_random_weights, what=cls.what,
                                 config_key="tokenizers.video.checkpoint", base_dir=base_dir)
        settings: dict[str, Any] = {
            "input_resolution": list(config.input_resolution), "fps": config.fps,
            "sampling_rate": config.sampling_rate, "tubelet_size": list(config.tubelet_size),
            "codebook_size": config.codebook_size, "num_quantizers": config.num_quantizers,
            "embed_dim": config.embed_dim, "tokens_per_second": config.tokens_per_second,
            "frames": "ffmpeg fps, every Nth frame, bilinear scale to cover, centre crop; partial tubelet dropped",
            "code_order": "(t, h, w) per quantizer level", "max_seconds": max_seconds,
            "device": resolve_device(config.device).type,
        }
        if source.is_random:
            settings["random_seed"] = seed
        return TokenizerIdentity(
            name=cls.name, modality="video", weights=source.kind, weights_sha256=source.sha256,
            weights_path=None if source.path is None else str(source.path),
            versions={**library_versions("torch", "vector-quantize-pytorch", "numpy", "imageio-ffmpeg"),
                      "ffmpeg": imageio_ffmpeg.get_ffmpeg_version()},
            config=settings)

    @classmethod
    def from_identity(cls, config: VideoTokenizerConfig, identity: TokenizerIdentity, *,
                      chunk_tubelets: int = CHUNK_TUBELETS) -> VideoTokenizer:
        """Build the model `identity` describes (its checkpoint, or seeded random weights); `chunk_tubelets`
        only bounds memory, codes do not depend on it."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(identity.config.get("random_seed", RANDOM_SEED))
            model = TubeletVQ(config.tubelet_size, config.embed_dim, config.codebook_size, config.num_quantizers)
        source = identity.weights_source()
        if not source.is_random:
            load_module_weights(model, source.path, what=cls.what)
            if not all(bool(cb.initted) for cb in model.codebooks()):
                raise InvalidWeightsError(f"{cls.what} weights {source.path}: a codebook is marked uninitialised "
                                          f"(k-means init never ran), so codes would depend on the first clip")
        return cls(model, config, identity, resolve_device(config.device), chunk_tubelets=chunk_tubelets,
                   max_seconds=identity.config["max_seconds"])

    @property
    def tubelet_t(self) -> int:
        return self.config.tubelet_size[0]

    def frames_sampled(self, decoded_frames: int) -> int:
        """Frames kept from `decoded_frames` frames at the config's fps: 0, N, 2N, ... (N = sampling_rate)."""
        return math.ceil(decoded_frames / self.config.sampling_rate)

    def expected_codes(self, frames_sampled: int) -> int:
        return frames_sampled // self.tubelet_t * self.config.tokens_per_tubelet_step

    @torch.inference_mode()
    def _encode_chunk(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 (F, H, W, 3) with F a multiple of T -> int64 (F/T * h * w, n_q)."""
        x = torch.from_numpy(np.array(frames)).to(self.device)  # a copy: frames from a pipe are read-only
        x = x.permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, F, H, W)
        return self.model(x).reshape(-1, self.config.num_quantizers).cpu()

    def encode_frames(self, frames: np.ndarray, *, source: str = "<frames>") -> VideoCodes:
        """Already sampled uint8 frames (F, H, W, 3) at the input resolution -> codes."""
        frames = np.asarray(frames)
        h, w = self.config.input_resolution
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise ValueError(f"frames must be uint8 (F, {h}, {w}, 3), got {frames.dtype} {frames.shape}")
        return self._collect([frames], source)

    def encode_file(self, path: str | Path) -> VideoCodes:
        """One video file -> codes. Raises NoFramesError (no video stream, no frame), ClipTooShortError (fewer
        sampled frames than one tubelet) or MediaDecodeError: each names the file and carries a `reason`."""
        (h, w), cfg = self.config.input_resolution, self.config
        reader = FrameReader(Path(path), h, w, cfg.sampling_rate, cfg.fps,
                             chunk_frames=self.chunk_tubelets * self.tubelet_t, max_seconds=self.max_seconds)
        codes = self._collect(reader, str(path))
        return VideoCodes(codes.codes, codes.grid, codes.frames_sampled, codes.frames_dropped, reader.source_fps)

    def encode_files(self, paths: Iterable[str | Path]) -> list[VideoCodes | MediaDecodeError]:
        """Codes of each file, or the MediaDecodeError that file raised, in order."""
        results: list[VideoCodes | MediaDecodeError] = []
        for path in paths:
            try:
                results.append(self.encode_file(path))
            except MediaDecodeError as exc:
                results.append(exc)
        return results

    def _collect(self, chunks: Iterable[np.ndarray], source: str) -> VideoCodes:
        t, step = self.tubelet_t, self.chunk_tubelets * self.tubelet_t
        pending: np.ndarray | None = None
        out, total = [], 0
        for chunk in chunks:
            total += len(chunk)
            pending = chunk if pending is None or not len(pending) else np.concatenate([pending, chunk])
            while len(pending) >= step:
                out.append(self._encode_chunk(pending[:step]))
                pending = pending[step:]
        usable = 0 if pending is None else len(pending) // t * t
        if usable:
            out.append(self._encode_chunk(pending[:usable]))
        if total < t:
            raise ClipTooShortError(source, f"{total} sampled frame(s) (sampling_rate {self.config.sampling_rate}) "
                                            f"do not fill one tubelet of {t} frames")
        codes = torch.cat(out).T.contiguous().to(torch.int32).numpy()  # (n_q, N)
        grid = (total // t, *self.config.latent_grid)
        return VideoCodes(codes, grid, frames_sampled=total, frames_dropped=total % t)
