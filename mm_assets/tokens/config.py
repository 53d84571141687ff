"""Typed config sections of every tokenizer (the `tokenizers:` part of configs/pipeline.yaml), in one place.

The values follow the reference's §B.3 templates; what the reference states as a free number but is really a
consequence of other values (EnCodec's codebook count, the latent grid, video tokens per second) is derived
here, and a value given anyway must agree with the derivation. Paths are strings, relative to the project root
unless absolute (the caller resolves them). No torch import: loading the pipeline config stays cheap.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from mm_assets.config.base import Section

# EnCodec 24 kHz (the `encodec` package's causal model): what its code fixes, not what a user may choose.
ENCODEC_24KHZ = "encodec_24khz"
ENCODEC_SAMPLE_RATE = 24_000
ENCODEC_HOP = 320  # encoder strides 8·5·4·2: one frame per 320 samples
ENCODEC_FRAME_RATE = ENCODEC_SAMPLE_RATE // ENCODEC_HOP  # 75 Hz
ENCODEC_CODEBOOK_SIZE = 1024  # 10 bits per code
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps the 24 kHz model was trained for

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
# A tuple field that YAML gives as a list: the list is taken (strict off for the field), its items stay strict.
YAML_LIST = Field(strict=False)


class _ModelSection(Section):
    """What every neural tokenizer shares: where it runs and how many items go through one forward pass."""

    batch_size: Annotated[int, Field(ge=1, le=1024)] = 4
    device: str = "auto"  # auto = CUDA when available, else CPU

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not _DEVICE.match(device):
            raise ValueError(f"device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        return device


class AudioTokenizerConfig(_ModelSection):
    """EnCodec 24 kHz (reference §B.3 audio template). 6 kbps → 8 codebooks of 1024 codes at 75 Hz."""

    model: str = ENCODEC_24KHZ
    weights_path: str | None = "models/encodec_24khz-d7cc33bc.th"  # the official plain state_dict
    target_bandwidth: float = 6.0  # kbps
    sample_rate: int = ENCODEC_SAMPLE_RATE  # must match the model; inputs are resampled to it
    frame_rate: int = ENCODEC_FRAME_RATE
    # Derived from the bandwidth (kbps·1000 / (75 Hz · 10 bits)); may be stated, then it must agree.
    num_quantizers: Annotated[int | None, Field(validate_default=True)] = None
    # Audio is encoded in independent chunks of this length (None: each file whole, in one pass). Codes near
    # chunk edges differ from a whole-file encode (~1.4%), so the length is recorded with the tokens. The
    # reference uses 30 s; 10 s is as fast on the CPU and needs a third of the memory.
    chunk_seconds: float | None = 10.0
    silence_threshold_dbfs: float = -60.0  # RMS below this flags an item `silent` (it is still encoded)

    @field_validator("model")
    @classmethod
    def _supported_model(cls, model: str) -> str:
        if model != ENCODEC_24KHZ:
            raise ValueError(
                f"model {model!r}: only {ENCODEC_24KHZ!r} (the encodec package's causal 24 kHz model) is supported"
            )
        return model

    @field_validator("target_bandwidth")
    @classmethod
    def _trained_bandwidth(cls, bw: float) -> float:
        if bw not in ENCODEC_BANDWIDTHS:
            raise ValueError(f"target_bandwidth {bw} kbps: encodec_24khz supports {list(ENCODEC_BANDWIDTHS)}")
        return bw

    @field_validator("sample_rate")
    @classmethod
    def _model_rate(cls, sr: int) -> int:
        if sr != ENCODEC_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate {sr} Hz does not match encodec_24khz ({ENCODEC_SAMPLE_RATE} Hz); inputs are "
                f"resampled to the model's rate, so set it to {ENCODEC_SAMPLE_RATE}"
            )
        return sr

    @field_validator("frame_rate")
    @classmethod
    def _model_frame_rate(cls, fr: int) -> int:
        if fr != ENCODEC_FRAME_RATE:
            raise ValueError(
                f"frame_rate {fr} Hz: encodec_24khz emits {ENCODEC_FRAME_RATE} frames/s "
                f"({ENCODEC_SAMPLE_RATE} Hz / hop {ENCODEC_HOP})"
            )
        return fr

    @field_validator("num_quantizers")
    @classmethod
    def _derived_quantizers(cls, n_q: int | None, info: ValidationInfo) -> int | None:
        bw = info.data.get("target_bandwidth")
        if bw is None:  # the bandwidth itself failed; its own error says why
            return n_q
        derived = encodec_quantizers(bw)
        if n_q is not None and n_q != derived:
            raise ValueError(
                f"num_quantizers {n_q} disagrees with target_bandwidth {bw} kbps, which gives {derived} codebooks "
                f"({bw} kbps / ({ENCODEC_FRAME_RATE} Hz × 10 bits)); drop the key or fix one of them"
            )
        return derived

    @field_validator("chunk_seconds")
    @classmethod
    def _whole_frames(cls, seconds: float | None) -> float | None:
        if seconds is None:
            return None
        if not 0 < seconds <= 600:
            raise ValueError(f"chunk_seconds {seconds}: use a length in (0, 600] s, or null for whole files")
        frames = seconds * ENCODEC_FRAME_RATE
        if abs(frames - round(frames)) > 1e-6:
            raise ValueError(
                f"chunk_seconds {seconds} is not a whole number of {ENCODEC_FRAME_RATE} Hz frames "
                f"({frames:g}); chunks must end on a frame boundary (e.g. 1, 10 or 30)"
            )
        return seconds

    @property
    def codebook_size(self) -> int:
        return ENCODEC_CODEBOOK_SIZE

    @property
    def n_q(self) -> int:
        """Codebooks per frame (num_quantizers, always filled in by validation)."""
        assert self.num_quantizers is not None
        return self.num_quantizers

    @property
    def chunk_samples(self) -> int | None:
        return None if self.chunk_seconds is None else round(self.chunk_seconds * self.sample_rate)

    @property
    def tokens_per_second(self) -> int:
        return self.frame_rate * self.n_q


def encodec_quantizers(bandwidth_kbps: float) -> int:
    """Codebooks EnCodec 24 kHz uses at a bandwidth: each one costs 75 Hz × 10 bits = 0.75 kbps."""
    per_codebook = ENCODEC_FRAME_RATE * math.log2(ENCODEC_CODEBOOK_SIZE) / 1000
    return max(1, math.floor(bandwidth_kbps / per_codebook + 1e-9))


class ImageTokenizerConfig(_ModelSection):
    """VQGAN f16 with a 16384-code book (reference §B.3 image template): a 256² image → 16×16 = 256 tokens."""

    checkpoint: str | None = "models/vqgan_f16_16384.ckpt"  # taming-transformers checkpoint
    resolution: Annotated[int, Field(ge=16, le=4096)] = 256  # images are resized/cropped to this square
    patch_size: Annotated[int, Field(ge=1, le=256)] = 16  # the encoder's downsampling factor (f16)
    # Derived (resolution / patch_size per side); may be stated, then it must agree.
    latent_shape: Annotated[tuple[int, int] | None, YAML_LIST, Field(validate_default=True)] = None
    codebook_size: Annotated[int, Field(ge=2, le=1 << 20)] = 16384
    embed_dim: Annotated[int, Field(ge=1, le=8192)] = 256

    @field_validator("latent_shape")
    @classmethod
    def _derived_grid(cls, shape: tuple[int, int] | None, info: ValidationInfo) -> tuple[int, int] | None:
        res, patch = info.data.get("resolution"), info.data.get("patch_size")
        if res is None or patch is None:
            return shape
        if res % patch:
            raise ValueError(f"resolution {res} is not divisible by patch_size {patch}")
        derived = (res // patch, res // patch)
        if shape is not None and tuple(shape) != derived:
            raise ValueError(
                f"latent_shape {list(shape)} disagrees with resolution {res} / patch_size {patch} = {list(derived)}"
            )
        return derived

    @property
    def tokens_per_image(self) -> int:
        assert self.latent_shape is not None
        return self.latent_shape[0] * self.latent_shape[1]


class VideoTokenizerConfig(_ModelSection):
    """A tubelet VQ-VAE with RVQ (reference §B.3 video template); its token rate is derived, not stated.

    tokens/s = fps / sampling_rate / tubelet T × (H/tubelet H × W/tubelet W) × num_quantizers. The reference's
    "~18.75 tokens/s (75 Hz audio / 4)" mixes in the audio frame rate and is wrong (DESIGN §11).
    """

    checkpoint: str | None = "models/video_vqvae.pt"
    input_resolution: Annotated[tuple[int, int], YAML_LIST] = (256, 256)  # (H, W) frames are resized to
    fps: Annotated[float, Field(gt=0, le=240)] = 24.0  # frame rate videos are decoded at
    sampling_rate: Annotated[int, Field(ge=1, le=120)] = 4  # keep every Nth decoded frame
    tubelet_size: Annotated[tuple[int, int, int], YAML_LIST] = (2, 16, 16)  # (T, H, W) of one spatio-temporal patch
    codebook_size: Annotated[int, Field(ge=2, le=1 << 20)] = 4096
    num_quantizers: Annotated[int, Field(ge=1, le=64)] = 4  # RVQ depth; 1 = plain VQ
    embed_dim: Annotated[int, Field(ge=1, le=8192)] = 256

    @model_validator(mode="before")
    @classmethod
    def _no_stated_rate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "output_tokens_per_second" in data:
            raise ValueError(
                "output_tokens_per_second is derived (fps / sampling_rate / tubelet T × latent grid × "
                "num_quantizers), not set; remove it (the reference's ~18.75 is wrong, DESIGN §11)"
            )
        return data

    @field_validator("input_resolution", "tubelet_size")
    @classmethod
    def _positive(cls, dims: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if any(d < 1 for d in dims):
            raise ValueError(f"{info.field_name} {list(dims)}: every size must be >= 1")
        return dims

    @model_validator(mode="after")
    def _grid_divides(self) -> VideoTokenizerConfig:
        (h, w), (_, th, tw) = self.input_resolution, self.tubelet_size
        if h % th or w % tw:
            raise ValueError(
                f"input_resolution {list(self.input_resolution)} is not divisible by the tubelet's spatial size "
                f"{[th, tw]}"
            )
        return self

    @property
    def latent_grid(self) -> tuple[int, int]:
        (h, w), (_, th, tw) = self.input_resolution, self.tubelet_size
        return h // th, w // tw

    @property
    def tokens_per_tubelet_step(self) -> int:
        """Tokens for one temporal step of tubelets: the latent grid times the RVQ depth."""
        gh, gw = self.latent_grid
        return gh * gw * self.num_quantizers

    def tokens_per_second_at(self, fps: float) -> float:
        """Token rate for a source decoded at `fps` (sampled every `sampling_rate` frames, T per tubelet)."""
        return fps / self.sampling_rate / self.tubelet_size[0] * self.tokens_per_tubelet_step

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_per_second_at(self.fps)


class TextTokenizerConfig(Section):
    """A `tokenizers` tokenizer.json; the demo may train a small byte-level BPE when none is there."""

    tokenizer_json: str | None = "models/tokenizer.json"
    # Ids [0, reserved_vocab_size) of the unified vocabulary are text's in every shard, whether or not a batch has
    # text and whichever tokenizer.json exists yet, so every batch's shard has the same layout (blends refuse
    # mixed layouts). The tokenizer's vocabulary must fit; set it once, for the tokenizer you train with.
    reserved_vocab_size: Annotated[int, Field(ge=256, le=1 << 24)] = 2048
    # Demo only: when tokenizer_json is missing, train a byte-level BPE on the crawled texts and save it there.
    allow_train_demo: bool = False
    demo_vocab_size: Annotated[int, Field(ge=300, le=1 << 20)] = 2048

    @model_validator(mode="after")
    def _demo_fits(self) -> TextTokenizerConfig:
        if self.allow_train_demo and self.demo_vocab_size > self.reserved_vocab_size:
            raise ValueError(
                f"demo_vocab_size {self.demo_vocab_size} does not fit reserved_vocab_size "
                f"{self.reserved_vocab_size} (the text range of the vocabulary layout): lower one or raise the other"
            )
        return self


class TokenizersConfig(Section):
    """All tokenizers. `allow_random_weights` lets tests and the demo run without weight files: the tokens are
    then marked `weights: random` and a release built on them is refused (DESIGN §10)."""

    allow_random_weights: bool = False
    audio: AudioTokenizerConfig = AudioTokenizerConfig()
    image: ImageTokenizerConfig = ImageTokenizerConfig()
    video: VideoTokenizerConfig = VideoTokenizerConfig()
    text: TextTokenizerConfig = TextTokenizerConfig()
