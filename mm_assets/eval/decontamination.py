"""Decontamination: which eval samples share a word n-gram with the text the model was trained on.

The training side is every shard of the experiment's blend except the canary shards (those are injected on
purpose). Each document's text ids (runs of ids in the layout's text range; a code between two runs ends an
n-gram) are decoded with the project's text tokenizer, lower-cased and cut into words (`\\w+`). A sample (its
question and references, its captions, or its text) is contaminated when one of its word n-grams occurs in a
training document; a sample shorter than n words is matched whole (the GPT-3 paper's rule).

It scales with the training text, not with its square: eval n-grams are few and held in memory as hashed tuples
of word ids (words numbered over the eval vocabulary); training documents stream one batch at a time from the
memory-mapped shard, a word that no eval sample contains breaks the run (no n-gram through it can match), and
only the remaining runs are hashed. Memory holds the eval side only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mm_assets.shards.indexed import iter_documents, read_index
from mm_assets.shards.vocab import VocabLayout
from mm_assets.storage.layout import ArtifactLayout

WORD = re.compile(r"\w+")
BATCH_DOCUMENTS = 256  # documents decoded per tokenizer call


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class Hit:
    ngrams: int = 0
    example: str = ""  # the first matching n-gram
    shard: str = ""
    document: int = -1


@dataclass
class NgramIndex:
    """Hashed word n-grams of the eval samples, keyed back to (task, sample id)."""

    n: int
    vocab: dict[str, int] = field(default_factory=dict)
    grams: dict[int, set[tuple[str, str]]] = field(default_factory=dict)
    sizes: set[int] = field(default_factory=set)

    def add(self, key: tuple[str, str], text: str) -> None:
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in words(text)]
        size = min(self.n, len(ids))
        if not size:
            return
        self.sizes.add(size)
        for i in range(len(ids) - size + 1):
            self.grams.setdefault(hash(tuple(ids[i:i + size])), set()).add(key)

    def runs(self, text: str) -> Iterator[list[int]]:
        """Maximal runs of words that occur in the eval vocabulary, as word ids."""
        run: list[int] = []
        for w in words(text):
            wid = self.vocab.get(w)
            if wid is None:
                if run:
                    yield run
                run = []
            else:
                run.append(wid)
        if run:
            yield run

    def matches(self, text: str) -> Iterator[tuple[tuple[str, str], tuple[int, ...]]]:
        """(sample key, n-gram) for every eval n-gram found in `text`."""
        for run in self.runs(text):
            for size in self.sizes:
                for i in range(len(run) - size + 1):
                    gram = tuple(run[i:i + size])
                    for key in self.grams.get(hash(gram), ()):
                        yield key, gram

    def spell(self, gram: tuple[int, ...]) -> str:
        names = {i: w for w, i in self.vocab.items()}
        return " ".join(names[i] for i in gram)


def text_runs(doc: np.ndarray, text_size: int) -> list[np.ndarray]:
    """The document's runs of text ids (ids in [0, text_size)), in order."""
    is_text = np.asarray(doc) < text_size
    if not is_text.any():
        return []
    edges = np.flatnonzero(np.diff(is_text.astype(np.int8))) + 1
    return [part for part in np.split(np.asarray(doc), edges) if part.size and part[0] < text_size]


def _batches(prefix: str, text_size: int) -> Iterator[list[tuple[int, np.ndarray]]]:
    batch: list[tuple[int, np.ndarray]] = []
    for index, doc in enumerate(iter_documents(prefix)):
        batch += [(index, run) for run in text_runs(doc, text_size)]
        if len(batch) >= BATCH_DOCUMENTS:
            yield batch
            batch = []
    if batch:
        yield batch


def scan_shards(index: NgramIndex, shards: Iterable[tuple[str, int]],
                decode_batch: Callable[[list[list[int]]], list[str]]) -> tuple[dict[tuple[str, str], Hit], int]:
    """(hits by sample key, documents scanned) over `(prefix, text_size)` shards."""
    hits: dict[tuple[str, str], Hit] = {}
    documents = 0
    for prefix, text_size in shards:
        for batch in _batches(prefix, text_size):
            texts = decode_batch([run.tolist() for _, run in batch])
            for (doc_index, _), text in zip(batch, texts):
                for key, gram in index.matches(text):
                    hit = hits.setdefault(key, Hit())
                    if not hit.ngrams:
                        hit.example, hit.shard, hit.document = index.spell(gram), str(prefix), doc_index
                    hit.ngrams += 1
        documents += read_index(prefix).documents
    return hits, documents


def shard_text_size(prefix: str) -> int:
    return VocabLayout.read(Path(prefix).parent / ArtifactLayout.SHARD_VOCAB).text_size
