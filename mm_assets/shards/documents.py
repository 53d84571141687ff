"""The document assembler: one item's text and codes become one sequence of unified ids ending with EOD.

Codes of a modality are wrapped in its markers (`<aud>` ... `</aud>`) and shifted into the modality's ranges;
RVQ codes of shape (levels, T) are flattened frame-major by default (t0q0, t0q1, ..., t0q(n-1), t1q0, ...),
each level offset into its own range, so a model reads every frame's levels together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

import numpy as np
from numpy.typing import ArrayLike

from mm_assets.shards.vocab import TEXT, ModalityRange, VocabLayout

FRAME_MAJOR = "frame_major"  # t0q0, t0q1, ..., t1q0, ...
LEVEL_MAJOR = "level_major"  # q0t0, q0t1, ..., q1t0, ...
FLATTENINGS = (FRAME_MAJOR, LEVEL_MAJOR)
DEFAULT_MARKERS = {"audio": ("<aud>", "</aud>"), "image": ("<img>", "</img>"), "video": ("<vid>", "</vid>")}

# An item: modality -> ids/codes (emitted in the config's order), or explicit (modality, ids) segments in order.
Item = Union[Mapping[str, ArrayLike], Sequence[tuple[str, ArrayLike]]]


class DocumentError(ValueError):
    """An item cannot become a document; the message names the modality and the offending value."""


@dataclass(frozen=True)
class AssemblyConfig:
    """Which modalities go first, how RVQ levels are flattened, and which markers wrap each modality."""

    order: tuple[str, ...] = (TEXT, "audio", "image", "video")
    flatten: str = FRAME_MAJOR
    markers: Mapping[str, tuple[str, str]] = field(default_factory=lambda: dict(DEFAULT_MARKERS))

    def __post_init__(self) -> None:
        if self.flatten not in FLATTENINGS:
            raise ValueError(f"flatten must be one of {FLATTENINGS}, got {self.flatten!r}")
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order lists a modality twice: {self.order}")


def flatten_codes(codes: ArrayLike, modality: ModalityRange, flatten: str = FRAME_MAJOR) -> np.ndarray:
    """Raw codes (levels, T) (or (T,) when levels == 1) -> unified ids (int64), each level in its own range."""
    name, size, levels = modality.name, modality.codebook.size, modality.codebook.levels
    arr = np.asarray(codes)
    if arr.ndim == 1 and levels == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != levels:
        raise DocumentError(f"{name}: codes must have shape ({levels}, T), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DocumentError(f"{name}: codes must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)].flat[0]
        raise DocumentError(f"{name}: code {bad} outside the codebook [0, {size})")
    shifted = arr.astype(np.int64) + modality.level_offsets[:, None]
    if flatten == FRAME_MAJOR:
        return shifted.T.reshape(-1)
    if flatten == LEVEL_MAJOR:
        return shifted.reshape(-1)
    raise ValueError(f"flatten must be one of {FLATTENINGS}, got {flatten!r}")


class DocumentAssembler:
    """Turns items into documents (int32 ids, one EOD at the end) under one vocab layout."""

    def __init__(self, layout: VocabLayout, config: AssemblyConfig | None = None) -> None:
        self.layout = layout
        self.config = config or AssemblyConfig()
        if layout.vocab_size > np.iinfo(np.int32).max:
            raise ValueError(f"vocab_size {layout.vocab_size} does not fit the int32 shard format")
        self._markers: dict[str, tuple[int, int]] = {}
        for name in layout.modality_names:
            if name not in self.config.markers:
                raise ValueError(f"no markers configured for modality {name!r} (have {sorted(self.config.markers)})")
            opening, closing = self.config.markers[name]
            self._markers[name] = (layout.token_id(opening), layout.token_id(closing))

    def assemble(self, item: Item) -> np.ndarray:
        """One document: segments in order, each modality's codes inside its markers, then EOD."""
        parts: list[np.ndarray] = []
        for name, values in self._segments(item):
            if name == TEXT:
                ids = self._text_ids(values)
                if ids.size:
                    parts.append(ids)
                continue
            if name not in self._markers:
                raise DocumentError(f"modality {name!r} is not in the vocab layout (has {list(self._markers)})")
            ids = flatten_codes(values, self.layout.modality(name), self.config.flatten)
            if ids.size:
                opening, closing = self._markers[name]
                parts += [np.array([opening]), ids, np.array([closing])]
        if not parts:
            raise DocumentError("empty document: the item has no text ids and no codes")
        parts.append(np.array([self.layout.eod_id]))
        return np.concatenate(parts).astype(np.int32)

    __call__ = assemble


    def _segments(self, item: Item) -> list[tuple[str, ArrayLike]]:
        if not isinstance(item, Mapping):
            return list(item)
        unknown = sorted(set(item) - set(self.config.order))
        if unknown:
            raise DocumentError(f"item has modalities {unknown} missing from the assembly order {self.config.order}")
        return [(name, item[name]) for name in self.config.order if name in item]

    def _text_ids(self, values: ArrayLike) -> np.ndarray:
        ids = np.asarray(values)
        if ids.size == 0:
            return ids.astype(np.int64).reshape(-1)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise DocumentError(f"text: ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
        if ids.min() < 0 or ids.max() >= self.layout.text_size:
            bad = ids[(ids < 0) | (ids >= self.layout.text_size)][0]
            raise DocumentError(f"text: id {bad} outside the text range [0, {self.layout.text_size})")
        return ids.astype(np.int64)
