"""EnCodec 24 kHz, built offline: the guarded `encodec` import (its PyPI dependency torchaudio is CUDA-linked
and absent here) and the model with loaded, or seeded random, weights."""

from __future__ import annotations

import importlib.util
import math
import sys
import types
import warnings
from typing import Any

import torch

from mm_assets.tokens.identity import WeightsSource, load_module_weights

RANDOM_SEED = 0  # random weights are deterministic: same seed, same model


class _TorchaudioStandIn(types.ModuleType):
    """Bound as `torchaudio` inside encodec's modules only; any use of it fails with this explanation."""

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"torchaudio.{name}: torchaudio is not installed. mm_assets registers this stand-in only so that "
            "`import encodec` succeeds (DESIGN §8) and never calls torchaudio; read audio with soundfile and "
            "resample with soxr instead"
        )


def import_encodec() -> types.ModuleType:
    """`import encodec` without torchaudio (absent on purpose: its PyPI build is CUDA-linked, DESIGN §8).

    encodec's utils imports torchaudio at module level but the model never uses it. When torchaudio is absent,
    a stand-in is put in sys.modules for the duration of the import and removed afterwards, so every other
    library still sees torchaudio as absent. An installed torchaudio that fails to import is reported, not
    papered over.
    """
    if "encodec" in sys.modules:
        return sys.modules["encodec"]
    stand_in = None
    if "torchaudio" not in sys.modules and importlib.util.find_spec("torchaudio") is None:
        stand_in = _TorchaudioStandIn("torchaudio", "absent; stand-in registered by mm_assets.tokens.audio")
        sys.modules["torchaudio"] = stand_in
    try:
        import encodec
    except (ImportError, OSError) as err:
        raise ImportError(
            f"cannot import encodec ({type(err).__name__}: {err}). Install encodec==0.1.1 with --no-deps plus "
            "einops; if torchaudio is installed but broken on this torch build, uninstall it (DESIGN §8)"
        ) from err
    finally:
        if stand_in is not None and sys.modules.get("torchaudio") is stand_in:
            del sys.modules["torchaudio"]
    return encodec


def build_encodec_24khz(source: WeightsSource, *, bandwidth: float, seed: int = RANDOM_SEED) -> torch.nn.Module:
    """The causal 24 kHz EnCodec on the CPU, with the weights of `source` (a state_dict file, or random)."""
    encodec = import_encodec()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # encodec 0.1.1 uses the old weight_norm API; its parameter names are what the official checkpoint holds.
        warnings.filterwarnings("ignore", message=r"`torch\.nn\.utils\.weight_norm` is deprecated")
        torch.manual_seed(seed)  # random weights are reproducible; the caller's RNG is left untouched
        model = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    if source.is_random:
        _randomise_codebooks(model, seed)
    else:
        assert source.path is not None
        load_module_weights(model, source.path, what="EnCodec 24 kHz")
    model.set_target_bandwidth(bandwidth)
    return model.eval()


def _randomise_codebooks(model: torch.nn.Module, seed: int, seconds: float = 4.0) -> None:
    """Give a randomly initialised EnCodec usable codebooks (untrained, they are all zero: every code 0).

    A random encoder's output is a near-constant vector plus a small input-dependent part, so each RVQ level's
    codebook is drawn from a Gaussian matching the mean and spread of that level's residuals on a seeded
    calibration signal; codes then vary with the input like a real model's do, which tests and the demo need.
    """
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * model.sample_rate)
    t = torch.arange(n) / model.sample_rate
    envelope = torch.rand(int(seconds * 4) + 1, generator=g).repeat_interleave(model.sample_rate // 4)[:n]
    tone = torch.sin(2 * math.pi * (200 + 2000 * torch.rand(1, generator=g) + 500 * t) * t)
    signal = 0.5 * torch.randn(n, generator=g) * envelope + 0.3 * tone
    with torch.no_grad():
        residual = model.encoder(signal.view(1, 1, -1))[0].T  # (frames, dim)
        for layer in model.quantizer.vq.layers:
            book = layer._codebook
            embed = residual.mean(0) + residual.std(0) * torch.randn(book.embed.shape, generator=g)
            book.embed.copy_(embed)
            book.embed_avg.copy_(embed)
            book.inited.fill_(1)
            residual = residual - embed[book.quantize(residual)]


