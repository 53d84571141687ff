"""Shard statistics: id ranges per modality (by markers), special-token ratio, lengths, empty documents."""

import numpy as np
import pytest

from mm_assets.shards.documents import DocumentAssembler
from mm_assets.shards.indexed import write_shard
from mm_assets.shards.stats import document_stats, length_distribution, shard_stats, special_token_ratio
from mm_assets.shards.vocab import Codebook, VocabLayout


@pytest.fixture
def layout():
    return VocabLayout.build(100, [Codebook("audio", 10, 2), Codebook("image", 50)])


def tok(layout, name):
    return layout.token_id(name)


def test_clean_shard(layout, tmp_path):
    assemble = DocumentAssembler(layout)
    documents = [assemble({"text": [1, 2, 3], "audio": [[0, 9], [4, 5]]}), assemble({"image": [0, 49]}),
                 assemble({"text": [99]})]
    write_shard(tmp_path / "s", documents, eod_id=layout.eod_id)
    stats = shard_stats(tmp_path / "s", layout)
    assert (stats.documents, stats.tokens, stats.empty_documents, stats.documents_without_eod) == (3, 17, 0, 0)
    assert stats.unbalanced_documents == 0 and stats.out_of_range == 0
    assert stats.special_tokens == 7 and stats.special_token_ratio == pytest.approx(7 / 17)
    text, audio, image = (stats.modalities[n] for n in ("text", "audio", "image"))
    assert (text.tokens, text.min_id, text.max_id) == (4, 1, 99)
    assert (audio.tokens, audio.min_id, audio.max_id, audio.start, audio.stop) == (4, 100, 115, 100, 120)
    assert (image.tokens, image.min_id, image.max_id) == (2, 120, 169)
    assert (stats.lengths.min, stats.lengths.max, stats.lengths.p50) == (2, 10, 5.0)
    meta = stats.as_metadata()
    assert meta["audio_out_of_range"] == 0 and meta["length_p95"] == stats.lengths.p95 and meta["documents"] == 3


def test_ids_outside_their_modality_are_counted(layout):
    eod, aud, end_aud, img, end_img = (tok(layout, t) for t in ("<eod>", "<aud>", "</aud>", "<img>", "</img>"))
    documents = [
        [5, 110, eod],                   # an audio code outside markers: text out of range
        [aud, 100, 3, 150, end_aud, eod],  # text id and image code inside audio
        [img, 125, eod, end_img, eod],   # EOD inside image markers
    ]
    stats = document_stats(np.concatenate(documents), [len(d) for d in documents], layout)
    assert stats.modalities["text"].out_of_range == 1 and stats.modalities["text"].max_id == 110
    assert stats.modalities["audio"].out_of_range == 2 and stats.modalities["audio"].min_id == 3
    assert stats.modalities["image"].out_of_range == 1
    assert stats.out_of_range == 4 and stats.unbalanced_documents == 0


def test_unbalanced_markers_empty_documents_and_missing_eod(layout):
    eod, aud, end_aud, img, end_img = (tok(layout, t) for t in ("<eod>", "<aud>", "</aud>", "<img>", "</img>"))
    documents = [
        [aud, 100, eod],                    # never closed
        [],                                 # empty
        [end_aud, 1, eod],                  # closed without opening
        [aud, aud, 100, end_aud, end_aud, eod],  # nested
        [aud, img, 100, end_aud, end_img, eod],  # interleaved markers of two modalities
        [1, 2, 3],                          # no EOD
        [aud, 101, end_aud, eod],           # fine, and not polluted by the documents before it
    ]
    stats = document_stats(np.concatenate([np.array(d, dtype=np.int64) for d in documents]),
                           [len(d) for d in documents], layout)
    assert stats.unbalanced_documents == 4
    assert stats.empty_documents == 1 and stats.documents_without_eod == 1 and stats.documents == 7


def test_chunked_reading_matches_one_pass(layout, tmp_path):
    assemble = DocumentAssembler(layout)
    rng = np.random.default_rng(0)
    items = [{"text": rng.integers(0, 100, rng.integers(0, 30)), "audio": rng.integers(0, 10, (2, rng.integers(1, 9)))}
             for _ in range(50)]
    documents = [assemble(item) for item in items]
    write_shard(tmp_path / "s", documents)
    whole = document_stats(np.concatenate(documents), [len(d) for d in documents], layout)
    assert shard_stats(tmp_path / "s", layout, chunk_tokens=7) == whole == shard_stats(tmp_path / "s", layout)


def test_small_helpers(layout, tmp_path):
    assert length_distribution([]).documents == 0
    lengths = length_distribution(np.arange(1, 101))
    assert (lengths.min, lengths.p50, lengths.p95, lengths.max) == (1, 50.5, pytest.approx(95.05), 100)
    assert special_token_ratio([1, layout.eod_id], layout) == 0.5 and special_token_ratio([], layout) == 0.0
    write_shard(tmp_path / "empty", [])
    assert shard_stats(tmp_path / "empty", layout).documents == 0
