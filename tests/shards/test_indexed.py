"""Indexed shards: byte-identical to megatron-core's builder, read back by Megatron, atomic and deterministic."""

import os
import warnings

import numpy as np
import pytest

from mm_assets.shards.documents import DocumentAssembler
from mm_assets.shards.indexed import (
    ShardWriter,
    bin_path,
    encode_index,
    idx_path,
    iter_documents,
    read_index,
    write_shard,
)
from mm_assets.shards.megatron import build_gpt_dataset, open_indexed_dataset
from mm_assets.shards.vocab import Codebook, VocabLayout
from mm_assets.storage.paths import sha256_file

INT32_MAX = np.iinfo(np.int32).max


@pytest.fixture(scope="module")
def megatron_builder():
    import torch

    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets import indexed_dataset as indexed

    def build(prefix, documents):
        builder = indexed.IndexedDatasetBuilder(str(bin_path(prefix)), dtype=np.int32)
        for doc in documents:
            builder.add_item(torch.from_numpy(np.asarray(doc, dtype=np.int32)))
            builder.end_document()
        builder.finalize(str(idx_path(prefix)))

    return build


def random_documents(seed, count, max_len):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, INT32_MAX, int(n), dtype=np.int64, endpoint=True) for n in rng.integers(1, max_len, count)]


CASES = {
    "no documents": [],
    "one one-token document": [np.array([0])],
    "one-token documents": [np.array([i]) for i in range(37)],
    "int32 extremes": [np.array([INT32_MAX, 0, INT32_MAX]), np.array([1])],
    "random, larger than the buffer": random_documents(0, 60, 300),
    "python lists": [[1, 2, 3], [4], [5, 6]],
}


@pytest.mark.parametrize("case", list(CASES))
def test_bytes_equal_megatron_builder(case, tmp_path, megatron_builder):
    documents = CASES[case]
    megatron_builder(tmp_path / "megatron", documents)
    files = write_shard(tmp_path / "ours", documents, buffer_tokens=128)  # small buffer: flushes and direct writes
    nocopy = write_shard(tmp_path / "nocopy", documents, buffer_tokens=128, copy=False)  # writev from the arrays
    for path in (bin_path, idx_path):
        assert path(tmp_path / "ours").read_bytes() == path(tmp_path / "megatron").read_bytes(), path.__name__
        assert path(tmp_path / "nocopy").read_bytes() == path(tmp_path / "megatron").read_bytes(), path.__name__
    assert (nocopy.documents, nocopy.tokens, nocopy.bin_sha256) == (files.documents, files.tokens, files.bin_sha256)
    for suffix in ("bin", "idx"):
        (tmp_path / f"nocopy.{suffix}").unlink()
    assert files.documents == len(documents) and files.tokens == sum(len(d) for d in documents)
    assert files.bin_sha256 == sha256_file(files.bin_path) and files.idx_sha256 == sha256_file(files.idx_path)
    assert sorted(os.listdir(tmp_path)) == ["megatron.bin", "megatron.idx", "ours.bin", "ours.idx"]


def test_megatron_reads_our_shard_back(tmp_path):
    documents = random_documents(1, 25, 50)
    write_shard(tmp_path / "s", documents)
    dataset = open_indexed_dataset(tmp_path / "s")
    assert len(dataset) == 25 and dataset.document_indices.tolist() == list(range(26))
    for i, doc in enumerate(documents):
        assert dataset[i].tolist() == doc.tolist()
    assert dataset.get(3, offset=1, length=1).tolist() == documents[3][1:2].tolist()
    index = read_index(tmp_path / "s")
    assert index.documents == 25 and index.tokens == sum(map(len, documents))
    assert [d.tolist() for d in iter_documents(tmp_path / "s")] == [d.tolist() for d in documents]


def test_gpt_dataset_builds_and_yields_samples_on_cpu(tmp_path):
    layout = VocabLayout.build(500, [Codebook("audio", 16, 4)])
    assemble = DocumentAssembler(layout)
    rng = np.random.default_rng(2)
    items = [{"text": rng.integers(0, 500, rng.integers(1, 20)), "audio": rng.integers(0, 16, (4, rng.integers(0, 10)))}
             for _ in range(40)]
    documents = [assemble(item) for item in items]
    write_shard(tmp_path / "shards" / "s", documents, eod_id=layout.eod_id)

    def build(cache):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return build_gpt_dataset(tmp_path / "shards" / "s", layout, sequence_length=16, cache_dir=cache,
                                     num_samples=30, create_attention_mask=False)

    dataset = build(tmp_path / "cache")
    assert len(dataset) >= 30
    sample = dataset[0]
    assert sample["tokens"].shape == (16,) and sample["labels"].shape == (16,)
    assert sample["tokens"][1:].tolist() == sample["labels"][:-1].tolist()
    # Every sample is a window of the documents concatenated in the dataset's (shuffled) document order.
    order = np.concatenate([documents[i] for i in dataset.document_index])
    starts = np.concatenate([[0], np.cumsum([len(documents[i]) for i in dataset.document_index])])
    for i in range(len(dataset)):
        doc_position, offset = dataset.sample_index[dataset.shuffle_index[i]]
        start = starts[doc_position] + offset
        assert dataset[i]["tokens"].tolist() == order[start : start + 16].tolist()
        assert dataset[i]["labels"].tolist() == order[start + 1 : start + 17].tolist()
    assert os.listdir(tmp_path / "shards") == ["s.bin", "s.idx"]  # the cache went to cache_dir, not beside the shard
    (cache,) = (tmp_path / "cache").iterdir()  # one folder per .idx content
    assert [name.split("-", 1)[1] for name in sorted(os.listdir(cache))] == [
        "GPTDataset-train-description.txt", "GPTDataset-train-document_index.npy",
        "GPTDataset-train-sample_index.npy", "GPTDataset-train-shuffle_index.npy"]
    again = build(tmp_path / "cache")  # cache hit: same samples
    assert all(dataset[i]["tokens"].tolist() == again[i]["tokens"].tolist() for i in range(len(dataset)))


def test_same_documents_same_bytes(tmp_path):
    documents = random_documents(3, 20, 100)
    first = write_shard(tmp_path / "a", documents, buffer_tokens=64)
    second = write_shard(tmp_path / "b", iter(documents), buffer_tokens=1 << 20)
    assert (first.bin_sha256, first.idx_sha256) == (second.bin_sha256, second.idx_sha256)
    assert encode_index([len(d) for d in documents]) == idx_path(tmp_path / "a").read_bytes()


def test_failed_write_leaves_no_visible_files(tmp_path):
    with pytest.raises(RuntimeError, match="tokenizer crashed"):
        with ShardWriter(tmp_path / "s", buffer_tokens=4) as writer:
            writer.add([1, 2, 3, 4, 5, 6])
            raise RuntimeError("tokenizer crashed")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=r"document 1: must end with EOD \(9\), ends with 3"):
        write_shard(tmp_path / "s", [[1, 9], [2, 3]], eod_id=9)
    with pytest.raises(ValueError, match="document 0: expected a non-empty 1-D array"):
        write_shard(tmp_path / "s", [[]])
    with pytest.raises(ValueError, match="do not fit int32"):
        write_shard(tmp_path / "s", [[INT32_MAX + 1]])
    assert os.listdir(tmp_path) == []


def test_failed_rewrite_keeps_the_old_shard(tmp_path):
    old = write_shard(tmp_path / "s", [[1, 2, 9]])
    with pytest.raises(ValueError):
        write_shard(tmp_path / "s", [[5, 9], [7]], eod_id=9)
    assert sha256_file(bin_path(tmp_path / "s")) == old.bin_sha256
    assert sorted(os.listdir(tmp_path)) == ["s.bin", "s.idx"]


def test_failure_between_the_renames_removes_the_pair(tmp_path, monkeypatch):
    write_shard(tmp_path / "s", [[1, 2, 9]])
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".idx"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk full"):
        write_shard(tmp_path / "s", [[5, 9]])
    assert os.listdir(tmp_path) == []  # never a new .bin beside the old .idx


def test_corrupt_index_is_refused(tmp_path):
    write_shard(tmp_path / "s", [[1, 2]])
    data = idx_path(tmp_path / "s").read_bytes()
    idx_path(tmp_path / "s").write_bytes(data[:-1])
    with pytest.raises(ValueError, match="expected"):
        read_index(tmp_path / "s")
    idx_path(tmp_path / "s").write_bytes(b"NOTANIDX" + data[8:])
    with pytest.raises(ValueError, match="not a Megatron index"):
        read_index(tmp_path / "s")


def test_rewritten_shard_never_meets_a_stale_gpt_cache(tmp_path):
    layout = VocabLayout.build(100, [Codebook("audio", 4, 2)])
    options = dict(sequence_length=8, cache_dir=tmp_path / "cache", create_attention_mask=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_shard(tmp_path / "s", [np.r_[np.arange(1, 30), layout.eod_id]] * 10)
        assert len(build_gpt_dataset(tmp_path / "s", layout, **options)) == (10 * 30 - 1) // 8
        write_shard(tmp_path / "s", [np.r_[np.arange(1, 5), layout.eod_id]] * 10)
        rebuilt = build_gpt_dataset(tmp_path / "s", layout, **options)
    assert len(rebuilt) == (10 * 5 - 1) // 8
    assert rebuilt[len(rebuilt) - 1]["tokens"].shape == (8,)
