"""The text range of the vocabulary layout comes from config: a batch without text shards before any
tokenizer.json exists, and every batch's shard has the same layout, so blends accept them together."""

from __future__ import annotations

import dagster as dg
import pytest

from mediabatch import materialize, write_media_batch
from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import parse_config
from mm_assets.shards.vocab import VocabLayout
from mm_assets.tokens.assets import TOKEN_ASSETS
from mm_assets.tokens.text import train_demo_bpe
from mm_assets.train.launch.blend import Blend, BlendItem
from mm_assets.train.launch.preflight import blend_layout
from resources.storage import StorageResource

CONFIG = """storage: {{root: data}}
tokenizers:
  allow_random_weights: true
  audio: {{batch_size: 1, device: cpu}}
  text: {{allow_train_demo: {demo}, demo_vocab_size: 400, reserved_vocab_size: {reserved}}}
"""


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def project(tmp_path, reserved: int = 1024, demo: bool = True):
    path = tmp_path / "configs" / "pipeline.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CONFIG.format(reserved=reserved, demo=str(demo).lower()))
    return path, StorageResource(root=str(tmp_path / "data"))


def layout(storage, batch) -> VocabLayout:
    return VocabLayout.read(storage.store.local_path(storage.layout.shard_vocab(batch)))


def test_a_batch_without_text_shards_first_and_shares_the_text_batch_layout(tmp_path, instance):
    config, storage = project(tmp_path)
    write_media_batch(storage, "nosubs", 2, subtitles=False)
    meta = materialize(config, storage, "nosubs", instance)  # fresh project: no models/tokenizer.json
    assert not (tmp_path / "models" / "tokenizer.json").exists()
    assert meta["text_tokens"]["items"] == 0 and meta["token_shards"]["documents"] == 2
    assert layout(storage, "nosubs").text_size == 1024

    write_media_batch(storage, "subs", 2)
    meta = materialize(config, storage, "subs", instance)  # trains the demo BPE (<= 400 ids) on its subtitles
    assert (tmp_path / "models" / "tokenizer.json").is_file() and meta["text_tokens"]["ok"] == 2
    assert meta["text_tokens"]["tokenizer"]["config"]["vocab_size"] <= 400
    assert layout(storage, "subs") == layout(storage, "nosubs")
    assert layout(storage, "subs").sha256 == layout(storage, "nosubs").sha256

    prefixes = [storage.store.url(storage.layout.shard_prefix(b)) for b in ("nosubs", "subs")]
    blend = Blend(tuple(BlendItem(p, 1.0, 0.5, f"data.blend.{i}") for i, p in enumerate(prefixes)))
    shared, problems = blend_layout(blend)
    assert problems == [] and shared.text_size == 1024


def test_a_tokenizer_larger_than_the_reserved_range_is_refused_with_the_key_to_change(tmp_path, instance):
    config, storage = project(tmp_path, reserved=300, demo=False)
    texts = [f"sentence number {i} with some words" for i in range(300)]
    train_demo_bpe(texts, 400, tmp_path / "models" / "tokenizer.json")
    write_media_batch(storage, "subs", 1)
    with pytest.raises(dg.Failure, match=r"reserved_vocab_size: 300\). Set reserved_vocab_size to at least 3\d\d"):
        materialize(config, storage, "subs", instance, TOKEN_ASSETS)


def test_the_demo_bpe_must_fit_the_reserved_range():
    with pytest.raises(ConfigError, match="demo_vocab_size 4096 does not fit reserved_vocab_size 2048"):
        parse_config({"tokenizers": {"text": {"allow_train_demo": True, "demo_vocab_size": 4096}}})
