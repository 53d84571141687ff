"""Image tokenizer: a VQGAN f16 encoder + vector quantizer whose state_dict keys are taming-transformers'.

Only the encoding half is built (`encoder.*`, `quant_conv.*`, `quantize.embedding.weight`): a taming Lightning
checkpoint also holds `decoder.*`, `post_quant_conv.*` and the discriminator/perceptual loss (`loss.*`); those
are dropped on load (DESIGN.md §8). A 256x256 image becomes 16x16 = 256 codes in [0, n_embed), row-major.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mm_assets.tokens.config import ImageTokenizerConfig
from mm_assets.tokens.identity import (
    TokenizerIdentity,
    library_versions,
    load_state_into,
    resolve_device,
    resolve_weights,
)
from mm_assets.tokens.vq import (
    MediaDecodeError,
    decode_image,
    load_lightning_state_dict,
    resize_center_crop,
    to_float_images,
)

DROPPED_PREFIXES = ("decoder.", "post_quant_conv.", "loss.")
RANDOM_SEED = 0  # random weights are deterministic: same seed, same model


@dataclass(frozen=True)
class VQGANArch:
    """taming's `ddconfig` + `embed_dim` / `n_embed`; defaults are `vqgan_imagenet_f16_16384`.

    `resolution` is the ddconfig's: it only decides which levels get attention (taming builds an AttnBlock
    where the running resolution is in `attn_resolutions`). The encoder is convolutional, so inputs may have
    another size (the tokenizer config's `resolution`) without changing the module tree or its keys.
    """

    embed_dim: int = 256
    n_embed: int = 16384
    z_channels: int = 256
    resolution: int = 256
    in_channels: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)

    def __post_init__(self) -> None:
        widths = [self.ch * m for m in (1, *self.ch_mult)]
        if any(w % 32 for w in widths):
            raise ValueError(f"ch * ch_mult {widths} must be multiples of 32 (taming's GroupNorm has 32 groups)")
        if self.resolution % self.downsample_factor:
            raise ValueError(f"resolution {self.resolution} is not divisible by f{self.downsample_factor}")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm-swish-conv twice, plus a 1x1 `nin_shortcut` when the width changes (taming has no temb here)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))  # dropout 0 in every released f16 config
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions, 1x1 convs for q, k, v and the output."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = _norm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (m(y).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v, as taming's bmm version
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))


class Downsample(nn.Module):
    """taming pads right/bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Encoder(nn.Module):
    def __init__(self, arch: VQGANArch):
        super().__init__()
        self.conv_in = nn.Conv2d(arch.in_channels, arch.ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, c_in = arch.resolution, arch.ch
        for level, mult in enumerate(arch.ch_mult):
            stage, c_out = nn.Module(), arch.ch * mult
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(arch.num_res_blocks):
                stage.block.append(ResnetBlock(c_in, c_out))
                c_in = c_out
                if res in arch.attn_resolutions:
                    stage.attn.append(AttnBlock(c_in))
            if level != len(arch.ch_mult) - 1:
                stage.downsample = Downsample(c_in)
                res //= 2
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = ResnetBlock(c_in, c_in), AttnBlock(c_in), \
            ResnetBlock(c_in, c_in)
        self.norm_out = _norm(c_in)
        self.conv_out = nn.Conv2d(c_in, arch.z_channels, 3, padding=1)  # double_z is False for VQGAN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """taming's quantizer, lookup only: the nearest `embedding` row by L2 distance."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> int64 (B, h*w), row-major; argmin of |z|^2 + |e|^2 - 2 z.e, ties to the lowest id."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        e = self.embedding.weight
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * flat @ e.t()
        return d.argmin(1).reshape(b, h * w)


class VQGANEncoder(nn.Module):
    """The encoding half of taming's VQModel, with its module names."""

    def __init__(self, arch: VQGANArch = VQGANArch()):
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch)
        self.quant_conv = nn.Conv2d(arch.z_channels, arch.embed_dim, 1)
        self.quantize = VectorQuantizer(arch.n_embed, arch.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) in [-1, 1], R a multiple of the factor f -> int64 codes (B, (R/f)^2)."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def load_taming_state_dict(self, state: dict[str, torch.Tensor], source: str = "checkpoint") -> list[str]:
        """Load a taming VQModel state_dict; returns the dropped keys (decoder, post_quant_conv, loss)."""
        dropped = sorted(k for k in state if k.startswith(DROPPED_PREFIXES))
        load_state_into(self, {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}, source)
        return dropped


def arch_for(config: ImageTokenizerConfig) -> VQGANArch:
    """taming's f16 ddconfig (vqgan_imagenet_f16_*) with the config's codebook size and embedding width."""
    if config.patch_size != VQGANArch().downsample_factor:
        raise ValueError(f"tokenizers.image.patch_size {config.patch_size}: only taming's f16 VQGAN (patch_size 16) "
                         f"is built in; pass a VQGANArch for another layout")
    return VQGANArch(embed_dim=config.embed_dim, n_embed=config.codebook_size)


class ImageTokenizer:
    """Images -> VQGAN codes; `from_config` loads the taming checkpoint named in the config (sha256 recorded)."""

    name = "vqgan_f16"
    what = "VQGAN image tokenizer"  # names it in error messages

    def __init__(self, model: VQGANEncoder, config: ImageTokenizerConfig, identity: TokenizerIdentity,
                 device: torch.device, dropped_keys: Sequence[str] = ()):
        self.model = model.to(device).eval().requires_grad_(False)
        self.arch, self.config, self.identity, self.device = model.arch, config, identity, device
        self.dropped_keys = list(dropped_keys)  # decoder / post_quant_conv / loss keys the checkpoint also held

    @classmethod
    def from_config(cls, config: ImageTokenizerConfig, *, allow_random_weights: bool = False,
                    base_dir: Path | None = None, arch: VQGANArch | None = None,
                    seed: int = RANDOM_SEED) -> ImageTokenizer:
        """Load `config.checkpoint` (relative to `base_dir` when given); random weights (seeded) only if allowed.
        `arch` overrides the f16 layout's widths (tests use a narrow one); it must agree with the config."""
        identity = cls.identity_for(config, allow_random_weights=allow_random_weights, base_dir=base_dir, arch=arch,
                                    seed=seed)
        return cls.from_identity(config, identity)

    @classmethod
    def identity_for(cls, config: ImageTokenizerConfig, *, allow_random_weights: bool = False,
                     base_dir: Path | None = None, arch: VQGANArch | None = None,
                     seed: int = RANDOM_SEED) -> TokenizerIdentity:
        """What `from_config` records, without building the model: the checkpoint is hashed, not loaded."""
        arch = arch or arch_for(config)
        ours = (arch.downsample_factor, arch.n_embed, arch.embed_dim)
        theirs = (config.patch_size, config.codebook_size, config.embed_dim)
        if ours != theirs:
            raise ValueError(f"VQGAN arch (factor, n_embed, embed_dim) {ours} disagrees with tokenizers.image "
                             f"(patch_size, codebook_size, embed_dim) {theirs}")
        source = resolve_weights(config.checkpoint, allow_random=allow_random_weights, what=cls.what,
                                 config_key="tokenizers.image.checkpoint", base_dir=base_dir)
        settings: dict[str, Any] = {
            "arch": asdict(arch),
            "resolution": config.resolution,
            "latent_shape": list(config.latent_shape or ()),
            "preprocess": "shorter side to resolution (bilinear, antialiased), centre crop, scaled to [-1, 1]",
            "code_order": "row-major over the latent grid",
            "batch_size": config.batch_size,
            "device": resolve_device(config.device).type,
        }
        if source.is_random:
            settings["random_seed"] = seed
        return TokenizerIdentity(
            name=cls.name, modality="image", weights=source.kind, weights_sha256=source.sha256,
            weights_path=None if source.path is None else str(source.path),
            versions={**library_versions("torch", "numpy", "imageio-ffmpeg"),
                      "ffmpeg": imageio_ffmpeg.get_ffmpeg_version()},
            config=settings)

    @classmethod
    def from_identity(cls, config: ImageTokenizerConfig, identity: TokenizerIdentity) -> ImageTokenizer:
        """Build the encoder `identity` describes: its arch, then its checkpoint (or seeded random weights)."""
        arch = VQGANArch(**{k: tuple(v) if isinstance(v, list) else v for k, v in identity.config["arch"].items()})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(identity.config.get("random_seed", RANDOM_SEED))
            model = VQGANEncoder(arch)
        dropped: list[str] = []
        source = identity.weights_source()
        if not source.is_random:
            dropped = model.load_taming_state_dict(load_lightning_state_dict(source.path, what=cls.what),
                                                   f"{cls.what} weights {source.path}")
        return cls(model, config, identity, resolve_device(config.device), dropped)

    @property
    def codebook_size(self) -> int:
        return self.arch.n_embed

    @property
    def codes_per_image(self) -> int:
        return (self.config.resolution // self.arch.downsample_factor) ** 2

    def preprocess(self, images: np.ndarray | torch.Tensor | Sequence) -> torch.Tensor:
        """A batch (B, H, W, 3) or a list of (H, W, 3) images, uint8 or float in [0, 1] -> (B, 3, R, R) in
        [-1, 1]: the shorter side resized to R (antialiased bilinear), then the centre crop."""
        if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim != 4:
            raise ValueError(f"a batch of images must be (B, H, W, 3), got shape {tuple(images.shape)}")
        items = [resize_center_crop(to_float_images(im), self.config.resolution) for im in images]
        if not items:
            raise ValueError("no images to encode")
        return torch.stack(items) * 2 - 1

    @torch.inference_mode()
    def encode_images(self, images: np.ndarray | torch.Tensor | Sequence) -> np.ndarray:
        """Images -> int32 codes (B, codes_per_image), each in [0, codebook_size)."""
        x, step = self.preprocess(images), self.config.batch_size
        out = [self.model(x[i: i + step].to(self.device)).cpu() for i in range(0, len(x), step)]
        return torch.cat(out).to(torch.int32).numpy()

    def encode_file(self, path: str | Path) -> np.ndarray:
        """One image file -> int32 codes (codes_per_image,). An unreadable file raises MediaDecodeError naming
        it, with a `reason` (corrupt_media, no_frames, missing_file) for the caller's per-item record."""
        return self.encode_images(decode_image(path)[None])[0]

    def encode_files(self, paths: Iterable[str | Path]) -> list[np.ndarray | MediaDecodeError]:
        """Codes of each file, or the MediaDecodeError that file raised, in order. Files are decoded and encoded
        `batch_size` at a time, so memory stays bounded however many paths are given."""
        results: list[np.ndarray | MediaDecodeError | None] = []
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            for (slot, _), codes in zip(pending, self.encode_images([im for _, im in pending]), strict=True):
                results[slot] = codes
            pending.clear()

        for path in paths:
            try:
                pending.append((len(results), decode_image(path)))
                results.append(None)
            except MediaDecodeError as exc:
                results.append(exc)
            if len(pending) == self.config.batch_size:
                flush()
        if pending:
            flush()
        return results  # type: ignore[return-value]  # every None was filled by flush()
