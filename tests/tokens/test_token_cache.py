"""The token cache: a rerun does no tokenizer work and writes the same bytes; exactly the changed items are
re-tokenized; a damaged entry is detected and recomputed. Real tokenizers (random weights), real Dagster."""

from __future__ import annotations

import dataclasses

import dagster as dg
import numpy as np
import pytest

from mediabatch import materialize, write_media_batch, write_wav
from mm_assets.config.pipeline import load_config
from mm_assets.tokens.assets import (
    MODALITIES,
    TOKEN_ASSETS,
    TokenizerPlan,
    batch_items,
    tokenize_cached,
    tokenizer_plan,
)
from mm_assets.tokens.audio import AudioTokenizer
from mm_assets.tokens.cache import TokenCache
from mm_assets.tokens.config import AudioTokenizerConfig, ImageTokenizerConfig, VideoTokenizerConfig
from mm_assets.tokens.store import read_identity, read_tokens
from mm_assets.tokens.video import VideoTokenizer
from mm_assets.tokens.vqgan import ImageTokenizer
from resources.storage import StorageResource

BATCH = "cache-b1"
N = 3
CONFIG = """storage: {{root: data}}
tokenizers:
  allow_random_weights: true
  audio: {{batch_size: 1, device: cpu, chunk_seconds: {chunk}}}
  image: {{device: cpu}}
  video: {{device: cpu}}
  text: {{allow_train_demo: true, demo_vocab_size: 400}}
"""


def write_config(tmp_path, chunk: float = 10.0):
    path = tmp_path / "configs" / "pipeline.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(CONFIG.format(chunk=chunk))
    return path


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def tokenized(tmp_path, instance):
    """A batch of N items tokenized once (cold cache): (config path, storage, item files, first metadata)."""
    config = write_config(tmp_path)
    storage = StorageResource(root=str(tmp_path / "data"))
    items = write_media_batch(storage, BATCH, N)
    first = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)
    return config, storage, items, first


def token_bytes(storage):
    return {m: storage.store.local_path(storage.layout.token_file(BATCH, m)).read_bytes() for m in MODALITIES}


def cache_counts(meta):
    return {name: (m["cache_hits"], m["cache_misses"], m["cache_written"]) for name, m in meta.items()}


def test_rerun_does_no_tokenizer_work_and_writes_the_same_bytes(tokenized, instance):
    config, storage, _, first = tokenized
    assert cache_counts(first) == {f"{m}_tokens": (0, N, N) for m in MODALITIES}
    assert first["text_tokens"]["trained_demo_tokenizer"]  # the demo BPE was trained by this run
    before = token_bytes(storage)

    again = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)
    assert cache_counts(again) == {f"{m}_tokens": (N, 0, 0) for m in MODALITIES}
    assert all(again[f"{m}_tokens"]["cache_corrupt"] == 0 for m in MODALITIES)
    assert token_bytes(storage) == before  # byte-identical, tokenizer identity included
    assert "trained_demo_tokenizer" not in again["text_tokens"]
    assert again["text_tokens"]["tokenizer"] == first["text_tokens"]["tokenizer"]  # the identity does not flip

    # Timing-free evidence from the inside: with every item cached, no tokenizer (model) is ever built.
    cfg = load_config(config)
    for modality in MODALITIES:
        items = batch_items(storage, BATCH, modality)
        plan = tokenizer_plan(cfg, modality, items)
        builds = []
        counting = dataclasses.replace(plan, build=lambda: builds.append(1) or plan.build())
        cache = TokenCache(storage, modality, plan.identity.fingerprint)
        rows = tokenize_cached(items, counting, cache, lambda _: None)
        assert (builds, cache.stats.hits, len(rows)) == ([], N, N), modality
    cache_files = [p for p in (storage.store.root / "cache").rglob("*") if p.is_file()]
    assert len(cache_files) == 4 * N and all(p.suffix == ".codes" for p in cache_files)  # no temp files left


def test_a_changed_item_is_retokenized_alone(tokenized, instance):
    config, storage, items, _ = tokenized
    before, _ = read_tokens(storage.store.local_path(storage.layout.token_file(BATCH, "audio")))
    changed = f"{BATCH}_1"
    write_wav(items[changed]["audio"], 1234.0)

    cfg = load_config(config)
    plan = tokenizer_plan(cfg, "audio", batch_items(storage, BATCH, "audio"))
    encoded: list[list[str]] = []

    def build():
        encode = plan.build()
        return lambda paths: encoded.append([p.name for p in paths]) or encode(paths)

    cache = TokenCache(storage, "audio", plan.identity.fingerprint)
    rows = {r.unique_id: r for r in tokenize_cached(batch_items(storage, BATCH, "audio"),
                                                    TokenizerPlan(plan.identity, build), cache, lambda _: None)}
    assert encoded == [[items[changed]["audio"].name]]  # one encoder call, for the changed file only
    assert (cache.stats.hits, cache.stats.misses, cache.stats.written) == (N - 1, 1, 1)
    assert not np.array_equal(rows[changed].codes, before[changed])
    assert all(np.array_equal(rows[u].codes, before[u]) for u in before if u != changed)

    meta = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)  # the new codes are cached now
    assert cache_counts(meta)["audio_tokens"] == (N, 0, 0)
    after, _ = read_tokens(storage.store.local_path(storage.layout.token_file(BATCH, "audio")))
    assert np.array_equal(after[changed], rows[changed].codes)


def test_a_changed_setting_retokenizes_only_its_modality(tokenized, instance, tmp_path):
    config, storage, _, _ = tokenized
    before = token_bytes(storage)
    write_config(tmp_path, chunk=0.2)  # audio chunks of 0.2 s: other codes near the chunk edges
    meta = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)
    assert cache_counts(meta) == {"audio_tokens": (0, N, N), **{f"{m}_tokens": (N, 0, 0) for m in
                                                               ("text", "image", "video")}}
    after = token_bytes(storage)
    assert after["audio"] != before["audio"] and all(after[m] == before[m] for m in ("text", "image", "video"))
    assert read_identity(storage.store.local_path(storage.layout.token_file(BATCH, "audio")))["config"]["chunk_seconds"] == 0.2

    write_config(tmp_path, chunk=10.0)  # back: the first run's entries are still there
    meta = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)
    assert cache_counts(meta)["audio_tokens"] == (N, 0, 0) and token_bytes(storage) == before


def test_damaged_entries_are_detected_and_recomputed(tokenized, instance):
    config, storage, _, _ = tokenized
    before = token_bytes(storage)
    entries = sorted(storage.store.local_dir(storage.layout.token_cache("video")).rglob("*.codes"))
    truncated, flipped, header = entries
    truncated.write_bytes(truncated.read_bytes()[:-7])
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0xFF
    flipped.write_bytes(bytes(data))
    header.write_bytes(header.read_bytes().replace(b'"format": 1', b'"format": 9'))

    meta = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)["video_tokens"]
    assert (meta["cache_hits"], meta["cache_misses"], meta["cache_corrupt"], meta["cache_written"]) == (0, N, N, N)
    assert token_bytes(storage) == before
    again = materialize(config, storage, BATCH, instance, TOKEN_ASSETS)["video_tokens"]  # rewritten whole
    assert (again["cache_hits"], again["cache_corrupt"]) == (N, 0)


def test_cache_keys_follow_weights_versions_config_and_input_not_location(tmp_path):
    ident = AudioTokenizer.identity_for(AudioTokenizerConfig(device="cpu"), allow_random_weights=True)
    key = TokenCache(StorageResource(root=str(tmp_path)), "audio", ident.fingerprint).key("a" * 64)
    assert TokenCache(StorageResource(root=str(tmp_path / "elsewhere")), "audio", ident.fingerprint).key("a" * 64) == key
    assert TokenCache(StorageResource(root=str(tmp_path)), "audio", ident.fingerprint).key("b" * 64) != key
    assert TokenCache(StorageResource(root=str(tmp_path)), "image", ident.fingerprint).key("a" * 64) != key
    variants = [
        dataclasses.replace(ident, weights="pretrained", weights_sha256="c" * 64, weights_path="/m/encodec.th"),
        dataclasses.replace(ident, versions={**ident.versions, "torch": "9.9.9"}),
        dataclasses.replace(ident, config={**ident.config, "chunk_seconds": 30.0}),
    ]
    keys = {TokenCache(StorageResource(root=str(tmp_path)), "audio", v.fingerprint).key("a" * 64) for v in variants}
    assert len(keys) == 3 and key not in keys
    moved = dataclasses.replace(variants[0], weights_path="/elsewhere/encodec.th")  # same weights, other path
    assert TokenCache(StorageResource(root=str(tmp_path)), "audio", moved.fingerprint).key("a" * 64) in keys


@pytest.mark.parametrize(("cls", "config", "changes"), [
    (AudioTokenizer, AudioTokenizerConfig, {"chunk_seconds": 30.0, "target_bandwidth": 12.0,
                                            "silence_threshold_dbfs": -50.0, "batch_size": 8}),
    (ImageTokenizer, ImageTokenizerConfig, {"resolution": 128, "codebook_size": 1024}),
    (VideoTokenizer, VideoTokenizerConfig, {"fps": 12.0, "sampling_rate": 2, "tubelet_size": (4, 16, 16),
                                            "input_resolution": (128, 128), "num_quantizers": 2, "embed_dim": 64}),
])
def test_every_setting_that_shapes_codes_is_in_the_identity(cls, config, changes):
    """The cache key relies on the identity: each of these settings must change its fingerprint."""
    base = cls.identity_for(config(device="cpu"), allow_random_weights=True).fingerprint
    for key, value in changes.items():
        changed = cls.identity_for(config(device="cpu", **{key: value}), allow_random_weights=True).fingerprint
        assert changed != base, key
