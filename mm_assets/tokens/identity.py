"""Tokenizer identity and weight loading: what made a set of tokens, recorded with them (DESIGN §10).

Every tokenizer loads its weights from a configured local path (nothing is downloaded) and records the file's
sha256. When the file is missing, tests and the demo may opt into random weights; the identity then says
`weights: random` and a release built on it must be refused.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mm_assets.storage.paths import sha256_file

if TYPE_CHECKING:
    import torch

WeightsKind = Literal["pretrained", "random"]
RANDOM = "random"


class WeightsError(RuntimeError):
    """Weights that cannot be used: missing without permission for random ones, unreadable, or the wrong model."""


class MissingWeightsError(WeightsError):
    """The configured weights file does not exist (and random weights were not allowed)."""

    def __init__(self, what: str, path: Path | None, config_key: str):
        self.path = path
        where = f"{path} does not exist" if path is not None else "no path is configured"
        super().__init__(
            f"{what} weights: {where}. Put the weights file there (or point {config_key} at it); "
            f"for tests and the demo only, set tokenizers.allow_random_weights: true to use random weights "
            f"(the tokens are then marked `weights: random` and cannot be released)"
        )


class InvalidWeightsError(WeightsError):
    """The weights file exists but is not a state_dict of the expected model."""


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (plus Python); 'absent' for one that is not installed."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


@dataclass(frozen=True)
class TokenizerIdentity:
    """What made a set of tokens: tokenizer, weights (sha256 or 'random'), library versions, config.

    `fingerprint` hashes everything except the weights' location, so the same weights at another path give the
    same fingerprint, and any change of weights, versions or config gives another.
    """

    name: str
    modality: str
    weights: WeightsKind
    weights_sha256: str  # hex digest, or "random"
    weights_path: str | None
    versions: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights not in ("pretrained", "random"):
            raise ValueError(f"weights {self.weights!r}: use 'pretrained' or 'random'")
        if (self.weights == RANDOM) != (self.weights_sha256 == RANDOM):
            raise ValueError(f"weights {self.weights!r} with weights_sha256 {self.weights_sha256!r}: inconsistent")
        object.__setattr__(self, "versions", dict(self.versions))
        object.__setattr__(self, "config", dict(self.config))

    @property
    def is_random(self) -> bool:
        return self.weights == RANDOM

    def weights_source(self) -> WeightsSource:
        """The weights this identity names, to build the model it describes."""
        path = None if self.weights_path is None else Path(self.weights_path)
        return WeightsSource(self.weights, path, self.weights_sha256)

    @property
    def fingerprint(self) -> str:
        body = {k: v for k, v in self.to_dict().items() if k != "weights_path"}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenizer": self.name,
            "modality": self.modality,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "weights_path": self.weights_path,
            "versions": dict(self.versions),
            "config": dict(self.config),
        }

    def to_metadata(self) -> dict[str, Any]:
        """JSON-safe dict for Dagster asset metadata (and for the token files' sidecar)."""
        return json.loads(json.dumps({**self.to_dict(), "identity_sha256": self.fingerprint}, default=str))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenizerIdentity:
        """Read back `to_dict()`/`to_metadata()` output (the fingerprint, if present, is checked)."""
        ident = cls(
            name=data["tokenizer"],
            modality=data["modality"],
            weights=data["weights"],
            weights_sha256=data["weights_sha256"],
            weights_path=data.get("weights_path"),
            versions=data.get("versions", {}),
            config=data.get("config", {}),
        )
        stated = data.get("identity_sha256")
        if stated is not None and stated != ident.fingerprint:
            raise ValueError(f"identity_sha256 {stated} does not match its fields ({ident.fingerprint})")
        return ident


@dataclass(frozen=True)
class WeightsSource:
    """Where a tokenizer's weights come from: a file with its sha256, or random initialisation."""

    kind: WeightsKind
    path: Path | None  # the configured path (kept for the record even when random)
    sha256: str  # hex digest, or "random"

    @property
    def is_random(self) -> bool:
        return self.kind == RANDOM


def resolve_weights(
    path: str | Path | None,
    *,
    allow_random: bool,
    what: str,
    config_key: str,
    base_dir: Path | None = None,
) -> WeightsSource:
    """Locate configured weights and hash them; without a file, random weights if allowed, else a clear error.

    `what` names the tokenizer in messages; `config_key` is the key path a user edits (e.g.
    `tokenizers.audio.weights_path`). A relative path resolves against `base_dir` when given.
    """
    resolved = None
    if path not in (None, ""):
        resolved = Path(path)
        if base_dir is not None and not resolved.is_absolute():
            resolved = Path(base_dir) / resolved
    if resolved is not None and resolved.exists():
        if not resolved.is_file():
            raise InvalidWeightsError(f"{what} weights: {resolved} is not a file ({config_key})")
        return WeightsSource("pretrained", resolved, sha256_file(resolved))
    if allow_random:
        return WeightsSource("random", resolved, RANDOM)
    raise MissingWeightsError(what, resolved, config_key)


def load_state_dict_file(path: Path, *, what: str) -> dict[str, torch.Tensor]:
    """A plain state_dict (name → tensor) from a torch file, loaded on the CPU without unpickling code."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not a usable checkpoint"
        raise InvalidWeightsError(
            f"{what} weights: cannot load {path} as a torch state_dict ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); is it the right file?"
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__
        raise InvalidWeightsError(f"{what} weights: {path} holds a {kind}, not a plain state_dict of tensors")
    return dict(state)


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA when available, else CPU; an explicit CUDA device on a machine without one is an error."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: CUDA is not available here (torch {torch.__version__}); use 'auto'")
    return torch.device(device)


def _some(keys: Iterable[str], n: int = 3) -> str:
    keys = sorted(keys)
    more = f", … ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load `state` into `module` strictly; the error lists missing, unexpected and wrong-shape keys."""
    own = module.state_dict()
    missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
    wrong = {f"{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
             for k in own.keys() & state.keys() if tuple(own[k].shape) != tuple(state[k].shape)}
    problems = [f"{label} {_some(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise InvalidWeightsError(f"{source} does not fit the model: {'; '.join(problems)} "
                                  "(check the tokenizer config against the checkpoint)")
    module.load_state_dict(state, strict=True)


def load_module_weights(module: torch.nn.Module, path: Path, *, what: str) -> None:
    """Load a state_dict file into `module` strictly: every key present, none extra, every shape equal."""
    load_state_into(module, load_state_dict_file(path, what=what), f"{what} weights {path}")
