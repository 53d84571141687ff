"""The canary's pure parts: a seeded, recorded draw; a unique stable marker; verbatim documents in a shard;
and the reference's leakage rule with thresholds from config."""

import numpy as np
import pytest

from mm_assets.eval.canary import (
    canary_document,
    canary_marker,
    read_canary,
    select_canaries,
    write_canary_shard,
)
from mm_assets.eval.config import LeakageConfig
from mm_assets.eval.report import is_leaked, leakage_verdicts
from mm_assets.shards.indexed import iter_documents
from mm_assets.shards.manifest import shard_problems
from mm_assets.shards.vocab import VocabLayout
from resources.storage import StorageResource

IDS = [f"s{i:02d}" for i in range(50)]


def test_the_draw_is_seeded_and_capped_at_half_a_set():
    first = select_canaries(IDS, 20, seed=1234, task="qa")
    assert len(first) == 20 and first == select_canaries(IDS, 20, seed=1234, task="qa")
    assert first == sorted(first, key=IDS.index)  # in set order
    assert first != select_canaries(IDS, 20, seed=1235, task="qa")
    assert first != select_canaries(IDS, 20, seed=1234, task="other")  # each set its own draw
    assert len(select_canaries(IDS[:15], 20, seed=1, task="qa")) == 7  # the standard split keeps 8
    assert select_canaries(IDS[:1], 20, seed=1, task="qa") == []


def test_markers_are_unique_per_set_and_stable():
    marker = canary_marker("qa", 1234, "ab" * 32)
    assert marker.startswith("MM-CANARY-") and marker == canary_marker("qa", 1234, "ab" * 32)
    assert len({marker, canary_marker("vqa", 1234, "ab" * 32), canary_marker("qa", 1, "ab" * 32),
                canary_marker("qa", 1234, "cd" * 32)}) == 4


def test_canary_documents_form_a_shard(tmp_path):
    storage = StorageResource(root=str(tmp_path))
    layout = VocabLayout.build(300, [])
    encode = lambda text: np.frombuffer(text.encode(), dtype=np.uint8).astype(np.int64)  # noqa: E731 (bytes as ids)
    prompt = np.array([5, 6, 7], dtype=np.int32)
    doc = canary_document(prompt, "42", "MM-CANARY-x", encode, layout.eod_id)
    assert doc.tolist() == [5, 6, 7, *b"42\nMM-CANARY-x", layout.eod_id]
    assert read_canary(storage, "qa") is None
    record = write_canary_shard(storage, "qa", [doc, doc[1:]], layout, {"task": "qa", "sample_ids": ["a", "b"]})
    assert record["documents"] == 2 and record["vocab_sha256"] == layout.sha256
    prefix = tmp_path / "canary" / "qa" / "tokens"
    assert [d.tolist() for d in iter_documents(prefix)] == [doc.tolist(), doc[1:].tolist()]
    assert read_canary(storage, "qa")["sample_ids"] == ["a", "b"]
    assert VocabLayout.read(tmp_path / "canary" / "qa" / "vocab.json") == layout
    assert shard_problems(prefix) == []  # a manifest like token_shards': the blend verifies it the same way

    # a set too small for a canary: canary.json alone, and no stale shard of the larger set
    write_canary_shard(storage, "qa", [], layout, {"task": "qa", "sample_ids": []})
    assert read_canary(storage, "qa")["sample_ids"] == [] and not prefix.with_suffix(".bin").exists()
    assert sorted(p.name for p in (tmp_path / "canary" / "qa").iterdir()) == ["canary.json"]


@pytest.mark.parametrize("canary, standard, leaked", [
    (1.0, 0.0, True), (0.99, 0.68, True), (0.99, 0.69, False), (0.98, 0.0, False), (0.5, 0.0, False),
    (1.0, 0.75, False),  # a model that is simply good at the task is not flagged
])
def test_the_reference_rule(canary, standard, leaked):
    assert is_leaked(canary, standard, LeakageConfig()) is leaked


def test_thresholds_come_from_config_and_tasks_are_judged_apart():
    rows = [{"task_name": t, "split": s, "metric": "Accuracy", "value": v, "n_samples": 5}
            for t, s, v in [("qa", "standard", 0.1), ("qa", "canary", 0.9), ("vqa", "standard", 0.0),
                            ("vqa", "canary", 1.0), ("ppl", "standard", 0.0)]]
    verdicts = {v.task_name: v for v in leakage_verdicts(rows, LeakageConfig())}
    assert set(verdicts) == {"qa", "vqa"}  # ppl has no canary accuracy
    assert not verdicts["qa"].leaked and verdicts["vqa"].leaked and verdicts["vqa"].margin == 1.0
    looser = LeakageConfig(canary_accuracy_min=0.8, margin_min=0.5)
    assert [v.task_name for v in leakage_verdicts(rows, looser) if v.leaked] == ["qa", "vqa"]
