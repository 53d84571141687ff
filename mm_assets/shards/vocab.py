"""The unified vocabulary layout: one id space for text, every modality's codebooks and special tokens.

Text ids come first ([0, text_size)), then each modality's RVQ levels, each level its own range of
`codebook_size` ids, then the special tokens. The layout is written as a versioned JSON manifest that travels
with the shards; readers trust the offsets recorded there, never a re-derivation from today's config.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from mm_assets.storage.paths import atomic_write_text

MANIFEST_FORMAT = "mm-pretrain.vocab-layout"
MANIFEST_VERSION = 1

EOD = "<eod>"
PAD = "<pad>"
# Megatron's GPTDataset pads short samples with the tokenizer's pad id: it must differ from EOD.
DEFAULT_SPECIAL_TOKENS = (EOD, PAD, "<aud>", "</aud>", "<img>", "</img>", "<vid>", "</vid>")
TEXT = "text"
_RESERVED_NAMES = {TEXT, "special"}


class VocabLayoutError(ValueError):
    """A layout (or its manifest) is invalid: overlapping ranges, bad sizes, unknown version, missing keys."""


@dataclass(frozen=True)
class TokenRange:
    """Half-open id range [start, stop)."""

    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def __contains__(self, token_id: object) -> bool:
        return isinstance(token_id, (int, np.integer)) and self.start <= token_id < self.stop


@dataclass(frozen=True)
class Codebook:
    """A modality's tokenizer output: `levels` RVQ codebooks of `size` codes each (levels=1 for plain VQ)."""

    modality: str
    size: int
    levels: int = 1


@dataclass(frozen=True)
class ModalityRange:
    """Where a modality's codebooks sit in the unified vocabulary: level q owns [offset + q*size, +size)."""

    codebook: Codebook
    offset: int

    @property
    def name(self) -> str:
        return self.codebook.modality

    @property
    def range(self) -> TokenRange:
        return TokenRange(self.offset, self.offset + self.codebook.size * self.codebook.levels)

    def level(self, q: int) -> TokenRange:
        if not 0 <= q < self.codebook.levels:
            raise IndexError(f"{self.name}: RVQ level {q} outside 0..{self.codebook.levels - 1}")
        start = self.offset + q * self.codebook.size
        return TokenRange(start, start + self.codebook.size)

    @property
    def level_offsets(self) -> np.ndarray:
        """Offset of each level, shape (levels,), int64: add to raw codes of shape (levels, T)."""
        return self.offset + self.codebook.size * np.arange(self.codebook.levels, dtype=np.int64)


@dataclass(frozen=True)
class VocabLayout:
    """Explicit id ranges for text, each modality and each special token; validated on construction."""

    text_size: int
    modalities: tuple[ModalityRange, ...]
    special_tokens: Mapping[str, int]
    vocab_size: int
    _by_name: dict[str, ModalityRange] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modalities", tuple(self.modalities))
        object.__setattr__(self, "special_tokens", MappingProxyType(dict(self.special_tokens)))
        object.__setattr__(self, "_by_name", {m.name: m for m in self.modalities})
        _validate(self)

    def __hash__(self) -> int:
        return hash(self.sha256)

    @classmethod
    def build(
        cls,
        text_size: int,
        codebooks: Iterable[Codebook],
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
    ) -> VocabLayout:
        """Pack text, then the codebooks in the order given, then the special tokens, without gaps."""
        offset, modalities = int(text_size), []
        for cb in codebooks:
            if not all(isinstance(x, (int, np.integer)) for x in (cb.size, cb.levels)):
                raise VocabLayoutError(f"{cb.modality}: codebook size and levels must be integers, got {cb}")
            cb = Codebook(cb.modality, int(cb.size), int(cb.levels))
            modalities.append(ModalityRange(cb, offset))
            offset += cb.size * cb.levels
        specials = {}
        for name in special_tokens:
            if name in specials:
                raise VocabLayoutError(f"special token {name!r} listed twice")
            specials[name] = offset + len(specials)
        return cls(int(text_size), tuple(modalities), specials, offset + len(specials))

    # -- lookups ---------------------------------------------------------------------------------------

    @property
    def text(self) -> TokenRange:
        return TokenRange(0, self.text_size)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def modality(self, name: str) -> ModalityRange:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"modality {name!r} not in the vocab layout (has: {sorted(self._by_name)})") from None

    def level_offset(self, modality: str, level: int) -> int:
        return self.modality(modality).level(level).start

    def token_id(self, token: str) -> int:
        try:
            return self.special_tokens[token]
        except KeyError:
            known = list(self.special_tokens)
            raise KeyError(f"special token {token!r} not in the vocab layout (has: {known})") from None

    @property
    def eod_id(self) -> int:
        return self.special_tokens[EOD]

    @property
    def pad_id(self) -> int | None:
        return self.special_tokens.get(PAD)

    @property
    def special_ids(self) -> np.ndarray:
        return np.array(sorted(self.special_tokens.values()), dtype=np.int64)

    def ranges(self) -> dict[str, TokenRange]:
        """Name -> range for text and every modality (special tokens excluded)."""
        return {TEXT: self.text, **{m.name: m.range for m in self.modalities}}

    # -- manifest --------------------------------------------------------------------------------------

    def to_manifest(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "vocab_size": self.vocab_size,
            "text": {"start": 0, "stop": self.text_size},
            "modalities": [
                {
                    "name": m.name,
                    "codebook_size": m.codebook.size,
                    "levels": m.codebook.levels,
                    "start": m.range.start,
                    "stop": m.range.stop,
                }
                for m in self.modalities
            ],
            "special_tokens": dict(sorted(self.special_tokens.items(), key=lambda kv: kv[1])),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_manifest(), indent=2) + "\n"

    @property
    def sha256(self) -> str:
        """Fingerprint of the manifest: the identity shards, blends and tokenizers refer to."""
        return hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> VocabLayout:
        if not isinstance(manifest, Mapping):
            raise VocabLayoutError(f"manifest must be a JSON object, got {type(manifest).__name__}")
        fmt, version = manifest.get("format"), manifest.get("version")
        if fmt != MANIFEST_FORMAT:
            raise VocabLayoutError(f"format: expected {MANIFEST_FORMAT!r}, got {fmt!r}")
        if version != MANIFEST_VERSION:
            raise VocabLayoutError(f"version: this code reads version {MANIFEST_VERSION}, got {version!r}")
        text = _get(manifest, "text", dict, "")
        if _get(text, "start", int, "text.") != 0:
            raise VocabLayoutError(f"text.start: text ids must start at 0, got {text['start']}")
        modalities = []
        for i, entry in enumerate(_get(manifest, "modalities", list, "")):
            where = f"modalities[{i}]."
            cb = Codebook(_get(entry, "name", str, where), _get(entry, "codebook_size", int, where),
                          _get(entry, "levels", int, where))
            m = ModalityRange(cb, _get(entry, "start", int, where))
            stop = _get(entry, "stop", int, where)
            if stop != m.range.stop:
                raise VocabLayoutError(
                    f"{where}stop: {stop} != start + codebook_size*levels = {m.range.stop} ({cb.modality})"
                )
            modalities.append(m)
        specials = _get(manifest, "special_tokens", dict, "")
        for name, token_id in specials.items():
            if isinstance(token_id, bool) or not isinstance(token_id, int):
                raise VocabLayoutError(f"special_tokens.{name}: expected an int id, got {token_id!r}")
        return cls(_get(text, "stop", int, "text."), tuple(modalities), specials, _get(manifest, "vocab_size", int, ""))

    @classmethod
    def from_json(cls, text: str) -> VocabLayout:
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as e:
            raise VocabLayoutError(f"vocab layout manifest is not valid JSON: {e}") from None
        return cls.from_manifest(manifest)

    def write(self, path: Path) -> str:
        """Write the manifest atomically; returns its sha256."""
        atomic_write_text(Path(path), self.to_json())
        return self.sha256

    @classmethod
    def read(cls, path: Path) -> VocabLayout:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def _get(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise VocabLayoutError(f"{where}{key}: missing from the vocab layout manifest")
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VocabLayoutError(f"{where}{key}: expected {kind.__name__}, got {value!r}")
    return value


def _validate(layout: VocabLayout) -> None:
    if layout.text_size <= 0:
        raise VocabLayoutError(f"text_size must be positive, got {layout.text_size}")
    spans: list[tuple[int, int, str]] = [(0, layout.text_size, f"text [0, {layout.text_size})")]
    seen: set[str] = set()
    for m in layout.modalities:
        cb = m.codebook
        if not cb.modality or cb.modality in _RESERVED_NAMES or cb.modality in seen:
            raise VocabLayoutError(f"modality name {cb.modality!r} is empty, reserved or duplicated")
        seen.add(cb.modality)
        if cb.size <= 0 or cb.levels <= 0:
            raise VocabLayoutError(
                f"{cb.modality}: codebook_size and levels must be positive, got {cb.size} and {cb.levels}"
            )
        if m.offset < 0:
            raise VocabLayoutError(f"{cb.modality}: negative offset {m.offset}")
        spans.append((m.range.start, m.range.stop, f"{cb.modality} [{m.range.start}, {m.range.stop})"))
    ids = list(layout.special_tokens.values())
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise VocabLayoutError(f"special tokens share ids {dupes}: every special token needs its own id")
    for name, token_id in layout.special_tokens.items():
        if not name or token_id < 0:
            raise VocabLayoutError(f"special token {name!r} has an empty name or a negative id {token_id}")
        spans.append((token_id, token_id + 1, f"special {name!r} ({token_id})"))
    if EOD not in layout.special_tokens:
        raise VocabLayoutError(f"the layout needs an end-of-document token {EOD!r}: every document ends with it")
    spans.sort()
    for (a0, a1, a), (b0, b1, b) in zip(spans, spans[1:]):
        if b0 < a1:
            raise VocabLayoutError(f"overlapping vocab ranges: {a} and {b}")
    top = max(stop for _, stop, _ in spans)
    if layout.vocab_size < top:
        raise VocabLayoutError(f"vocab_size {layout.vocab_size} is smaller than the highest id in use + 1 ({top})")


@dataclass(frozen=True)
class ShardVocab:
    """The vocabulary that training reads shards with: its size, end-of-document and pad ids, and the layout's
    sha256 ("" when it is stated, not read from a vocab.json).

    The launch renders it (--vocab-size, --null-tokenizer-eod-id / -pad-id), the CPU trainer checks its data
    against it, and megatron-core 0.16.1's GPTDataset takes it as its `tokenizer`: it reads `eod` (masks), `pad`
    (short samples; equal to eod, Megatron warns and pads with -1), `vocab_size` (its fast-cache path, which
    skips the .idx header, assumes uint16 tokens up to 65536) and `unique_identifiers` (hashed into the index
    cache's file names).
    """

    vocab_size: int
    eod_id: int
    pad_id: int
    layout_sha256: str = ""

    @classmethod
    def from_layout(cls, layout: VocabLayout) -> ShardVocab:
        if layout.pad_id is None:
            raise ValueError("the vocab layout has no <pad> token: Megatron's GPTDataset needs one distinct from <eod>")
        return cls(int(layout.vocab_size), int(layout.eod_id), int(layout.pad_id), layout.sha256)

    @property
    def eod(self) -> int:
        return self.eod_id

    @property
    def pad(self) -> int:
        return self.pad_id

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "vocab_size": self.vocab_size, "layout_sha256": self.layout_sha256}
