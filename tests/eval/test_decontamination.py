"""Decontamination finds an eval sample planted in a training shard's text, and nothing else."""

import numpy as np
import pytest

from mm_assets.eval.decontamination import NgramIndex, scan_shards, text_runs, words
from mm_assets.shards.documents import DocumentAssembler
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.vocab import Codebook, VocabLayout
from mm_assets.tokens.text import TextTokenizer, train_demo_bpe

PLANTED = "Which instrument plays the slow theme in the second movement of the symphony heard here"
FILLER = ["The weather was mild and the market was busy all morning.",
          "A small boat crossed the river before the storm arrived.",
          "Engineers measured the bridge twice and wrote down every number."]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> TextTokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_demo_bpe([PLANTED, *FILLER] * 10, 400, path)
    return TextTokenizer.from_file(path)


def test_words_and_text_runs():
    assert words("Clip 1, first LINE.") == ["clip", "1", "first", "line"]
    doc = np.array([1, 2, 600, 601, 3, 4, 5, 700])
    assert [r.tolist() for r in text_runs(doc, 512)] == [[1, 2], [3, 4, 5]]
    assert text_runs(np.array([600, 700]), 512) == []


def test_a_planted_sample_is_found(tmp_path, tokenizer):
    layout = VocabLayout.build(512, [Codebook("audio", 16, 2)])
    assemble = DocumentAssembler(layout)
    codes = np.zeros((2, 3), dtype=np.int64)
    half = PLANTED.split()
    docs = [
        assemble([("text", tokenizer.encode(FILLER[0]))]),
        # the planted sample inside other text, after some audio codes: a contaminated document
        assemble([("audio", codes), ("text", tokenizer.encode(f"{FILLER[1]} {PLANTED.lower()}, she asked."))]),
        # the same words split by codes: no 13 words in a row, so no n-gram can match
        assemble([("text", tokenizer.encode(" ".join(half[:8]))), ("audio", codes),
                  ("text", tokenizer.encode(" ".join(half[8:])))]),
        assemble([("text", tokenizer.encode(FILLER[2]))]),
    ]
    write_shard(tmp_path / "tokens", docs, eod_id=layout.eod_id)

    index = NgramIndex(13)
    index.add(("qa", "planted"), f"{PLANTED}?\nthe flute")  # question + answer, as an eval set row holds it
    index.add(("qa", "clean"), "Which river did the small boat cross before the storm, and who was on board?")
    index.add(("qa", "short"), "market was busy")  # shorter than 13 words: matched whole
    index.add(("qa", "short-miss"), "market was quiet")
    hits, documents = scan_shards(index, [(str(tmp_path / "tokens"), layout.text_size)],
                                  lambda runs: tokenizer.tokenizer.decode_batch(runs))
    assert documents == 4
    assert set(hits) == {("qa", "planted"), ("qa", "short")}
    planted = hits[("qa", "planted")]
    assert planted.document == 1 and planted.ngrams == 3  # 15 words of the question: three 13-grams in document 1
    assert planted.example == " ".join(words(PLANTED)[:13])
    assert hits[("qa", "short")].document == 0 and hits[("qa", "short")].example == "market was busy"
