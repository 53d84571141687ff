"""Decontamination scan: the streamed, eval-side index (mm_assets.eval.decontamination) vs a named baseline,
"corpus n-gram set": decode every training document, put every word 13-gram of the corpus in one Python set,
then look the eval n-grams up in it (memory grows with the training text).

Both must find the same planted samples. Prints documents/s and the peak Python memory of each, and the ratios.

    .venv/bin/python benchmarks/bench_decontamination.py [--documents 20000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from mm_assets.eval.decontamination import NgramIndex, scan_shards, text_runs, words
from mm_assets.shards.indexed import iter_documents, write_shard
from mm_assets.shards.vocab import VocabLayout
from mm_assets.tokens.text import TextTokenizer, train_demo_bpe

N = 13


def corpus(documents: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(training documents of ~120 words from a 3000-word vocabulary, 50 eval samples of 20 words); every
    tenth eval sample is planted verbatim in one document."""
    rng = random.Random(seed)
    vocab = [f"w{rng.randrange(10**6)}" for _ in range(3000)]
    docs = [" ".join(rng.choices(vocab, k=120)) for _ in range(documents)]
    samples = [" ".join(rng.choices(vocab, k=20)) for _ in range(50)]
    for i in range(0, len(samples), 10):
        j = rng.randrange(documents)
        docs[j] = f"{docs[j]} {samples[i]} {docs[j]}"
    return docs, samples


def streamed(index_samples: list[str], prefix: Path, layout: VocabLayout, tok: TextTokenizer) -> set[int]:
    index = NgramIndex(N)
    for i, text in enumerate(index_samples):
        index.add(("bench", str(i)), text)
    hits, _ = scan_shards(index, [(str(prefix), layout.text_size)], lambda runs: tok.tokenizer.decode_batch(runs))
    return {int(sample) for _, sample in hits}


def corpus_set(index_samples: list[str], prefix: Path, layout: VocabLayout, tok: TextTokenizer) -> set[int]:
    grams: set[tuple[str, ...]] = set()
    for doc in iter_documents(prefix):
        for run in text_runs(doc, layout.text_size):
            ws = words(tok.decode(run.tolist()))
            grams.update(tuple(ws[i:i + N]) for i in range(len(ws) - N + 1))
    found = set()
    for i, text in enumerate(index_samples):
        ws = words(text)
        if any(tuple(ws[k:k + N]) in grams for k in range(len(ws) - N + 1)):
            found.add(i)
    return found


def measure(fn, *args) -> tuple[set[int], float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    found = fn(*args)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return found, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20000)
    args = parser.parse_args()
    docs, samples = corpus(args.documents)
    with tempfile.TemporaryDirectory(prefix="bench-decon-") as tmp:
        tok_path = Path(tmp) / "tokenizer.json"
        train_demo_bpe(docs[:2000], 2048, tok_path)
        tok = TextTokenizer.from_file(tok_path)
        layout = VocabLayout.build(2048, [])
        ids = tok.encode_batch(docs)
        prefix = Path(tmp) / "tokens"
        write_shard(prefix, (np.concatenate([d, [layout.eod_id]]) for d in ids), eod_id=layout.eod_id)
        tokens = sum(len(d) + 1 for d in ids)
        ours, t_ours, m_ours = measure(streamed, samples, prefix, layout, tok)
        base, t_base, m_base = measure(corpus_set, samples, prefix, layout, tok)
    assert ours == base == set(range(0, 50, 10)), (ours, base)
    print(f"{args.documents} documents, {tokens:,} tokens, {len(samples)} eval samples, 5 planted")
    print(f"baseline corpus n-gram set: {args.documents / t_base:10,.0f} documents/s, peak {m_base:8.1f} MiB")
    print(f"streamed eval-side index:   {args.documents / t_ours:10,.0f} documents/s, peak {m_ours:8.1f} MiB")
    print(f"ratio: {t_base / t_ours:.2f}x the baseline's speed, {m_ours / m_base:.3f}x its memory")


if __name__ == "__main__":
    main()
