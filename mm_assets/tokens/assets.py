"""The token assets: discrete codes per item for each modality of a crawl batch, with the tokenizer identity.

Each asset reads its batch's unified metadata, tokenizes every item that has the modality (one bad item is
recorded with its reason, never fatal) and publishes the batch's token file of that modality. Items whose input,
tokenizer identity and code are unchanged come from the token cache (cache.py): a rerun loads no model.
"""

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.etl.assets import media_metadata
from mm_assets.etl.subtitles import vtt_text
from mm_assets.monitor.data_counts import publish_counts, token_counts
from mm_assets.partitions import crawl_batches
from mm_assets.storage.paths import sha256_file
from mm_assets.storage.store import Storage
from mm_assets.tokens.cache import CacheStats, TokenCache
from mm_assets.tokens.identity import TokenizerIdentity
from mm_assets.tokens.store import TokenRow, write_tokens
from resources.config import PipelineConfigResource
from resources.storage import StorageResource

MODALITIES = ("text", "audio", "image", "video")
GROUP = 16  # items per encode call: bounds memory (audio chunks of one call are pooled)
# A tokenizer's `encode_files`: paths -> one result per path, codes or the per-item exception.
Encoder = Callable[[Sequence[Path]], list[Any]]


def batch_items(storage: Storage, batch: str, modality: str) -> list[tuple[str, Path]]:
    """(unique_id, local file) of the batch's accepted items that have `modality`, sorted by unique_id."""
    key = storage.layout.metadata_file(batch)
    if not storage.store.exists(key):
        raise dg.Failure(f"batch {batch} has no metadata at {storage.store.url(key)}: "
                         "materialize media_metadata for it first")
    df = pl.read_parquet(storage.store.local_path(key), columns=["unique_id", "data_paths"])
    df = df.select("unique_id", pl.col("data_paths").struct.field(modality).alias("file"))
    local = storage.store.local_path
    return [(uid, local(storage.store.key_of(url))) for uid, url in df.drop_nulls("file").sort("unique_id").iter_rows()]


def _reason(err: Exception) -> str:
    """A short class for a per-item failure; tokenizer errors carry one, others are named by type."""
    reason = getattr(err, "reason", None)
    if isinstance(reason, str) and reason.isidentifier():
        return reason
    return {"AudioReadError": "unreadable_audio", "AudioTooShortError": "too_short",
            "InvalidAudioError": "invalid_audio"}.get(type(err).__name__, "tokenize_error")


def _codes_of(result: Any) -> tuple[np.ndarray, str | None]:
    """Codes (levels, frames) and notes from whatever a tokenizer returned for one item."""
    if isinstance(result, np.ndarray):
        return (result if result.ndim == 2 else result[None, :]), None
    notes = "silent" if getattr(result, "silent", False) else None
    return np.asarray(result.codes), notes


def _groups(items: list[tuple[str, Path]]) -> Iterator[list[tuple[str, Path]]]:
    for i in range(0, len(items), GROUP):
        yield items[i : i + GROUP]


def tokenize_items(items: list[tuple[str, Path]], encode: Encoder, log: Callable[[str], None]) -> list[TokenRow]:
    """Encode in groups; an exception returned (or raised) for one item becomes that item's failed row."""
    rows: list[TokenRow] = []
    for group in _groups(items):
        try:
            results = encode([path for _, path in group])
        except Exception:  # noqa: BLE001 - fall back to one item at a time to isolate the bad one
            results = []
            for _, path in group:
                try:
                    results.append(encode([path])[0])
                except Exception as err:  # noqa: BLE001 - recorded per item
                    results.append(err)
        for (uid, _), result in zip(group, results):
            if isinstance(result, Exception):
                rows.append(TokenRow(uid, "failed", _reason(result), str(result)[:2000]))
            else:
                codes, notes = _codes_of(result)
                rows.append(TokenRow(uid, "ok", codes=codes, notes=notes))
        log(f"{len(rows)}/{len(items)} items tokenized")
    return rows


@dataclass(frozen=True)
class TokenizerPlan:
    """A tokenizer's identity, known without loading its model, and how to build its encoder (only on a miss)."""

    identity: TokenizerIdentity
    build: Callable[[], Encoder]
    metadata: dict[str, Any] = field(default_factory=dict)  # what this run did beside tokenizing


def tokenize_cached(items: list[tuple[str, Path]], plan: TokenizerPlan, cache: TokenCache,
                    log: Callable[[str], None]) -> list[TokenRow]:
    """Rows of unchanged items from the cache; the others through the tokenizer, which is built only for them."""
    rows, misses, keys = [], [], {}
    for uid, path in items:
        try:
            key = cache.key(sha256_file(path))
        except OSError:  # missing or unreadable: the tokenizer records why, per item
            cache.stats.misses += 1
            misses.append((uid, path))
            continue
        hit = cache.get(key)
        if hit is None:
            keys[uid] = key
            misses.append((uid, path))
        else:
            rows.append(TokenRow(uid, "ok", codes=hit.codes, notes=hit.notes))
    log(f"cache: {cache.stats.hits} of {len(items)} items unchanged, {len(misses)} to tokenize")
    if misses:
        fresh = tokenize_items(misses, plan.build(), log)
        for row in fresh:
            if row.status == "ok" and row.unique_id in keys:
                cache.put(keys[row.unique_id], row.codes, row.notes)
        rows += fresh
    return rows


def _text_plan(cfg: PipelineConfig, items: list[tuple[str, Path]]) -> TokenizerPlan:
    from mm_assets.tokens.text import TextTokenizer, check_text_range

    texts = lambda: (vtt_text(p.read_text(encoding="utf-8-sig")) for _, p in items)  # noqa: E731
    tok = TextTokenizer.from_config(cfg.tokenizers.text, base_dir=cfg.base_dir, demo_texts=texts())
    check_text_range(tok.vocab_size, cfg.tokenizers.text.reserved_vocab_size, tok.identity.weights_path)
    encode = lambda paths: [tok.encode(vtt_text(p.read_text(encoding="utf-8-sig"))) for p in paths]  # noqa: E731
    trained = {"trained_demo_tokenizer": dg.MetadataValue.path(str(tok.identity.weights_path))}
    return TokenizerPlan(tok.identity, lambda: encode, trained if tok.trained_demo else {})


def _model_plan(cfg: PipelineConfig, modality: str) -> TokenizerPlan:
    from mm_assets.tokens.audio import AudioTokenizer
    from mm_assets.tokens.video import VideoTokenizer
    from mm_assets.tokens.vqgan import ImageTokenizer

    cls = {"audio": AudioTokenizer, "image": ImageTokenizer, "video": VideoTokenizer}[modality]
    section = getattr(cfg.tokenizers, modality)
    identity = cls.identity_for(section, allow_random_weights=cfg.tokenizers.allow_random_weights,
                                base_dir=cfg.base_dir)
    return TokenizerPlan(identity, lambda: cls.from_identity(section, identity).encode_files)


def tokenizer_plan(cfg: PipelineConfig, modality: str, items: list[tuple[str, Path]]) -> TokenizerPlan:
    """The plan for `modality`; a text tokenizer that cannot be used fails the asset with its reason."""
    if modality != "text":
        return _model_plan(cfg, modality)
    from mm_assets.tokens.text import TextTokenizerError

    try:
        return _text_plan(cfg, items)
    except TextTokenizerError as err:
        raise dg.Failure(str(err)) from None


def materialize_tokens(context: dg.AssetExecutionContext, cfg: PipelineConfig, storage: Storage,
                       modality: str) -> dg.MaterializeResult:
    batch = context.partition_key
    items = batch_items(storage, batch, modality)
    started = time.monotonic()
    stats, extra = CacheStats(), {}
    if items:
        plan = tokenizer_plan(cfg, modality, items)
        cache = TokenCache(storage, modality, plan.identity.fingerprint)
        rows = tokenize_cached(items, plan, cache, lambda msg: context.log.info(f"{modality} tokens {batch}: {msg}"))
        identity, stats, extra = plan.identity.to_metadata(), cache.stats, plan.metadata
    else:
        identity, rows = {"tokenizer": None, "weights": "none", "note": f"no item of batch {batch} has {modality}"}, []
    out = storage.layout.token_file(batch, modality)
    with storage.store.publish(out) as staged:
        write_tokens(staged, rows, identity)
    ok = [r for r in rows if r.status == "ok"]
    for r in rows:
        if r.status == "failed":
            context.log.warning(f"{modality} tokens {batch}: {r.unique_id} failed ({r.reason}): {r.message}")
    counts = token_counts(batch, modality, rows)
    publish_counts(cfg.monitoring, counts, context.log.warning)
    return dg.MaterializeResult(
        metadata={
            "items": len(rows),
            "ok": len(ok),
            "failed": len(rows) - len(ok),
            **{f"reason.{k}": v for k, v in sorted(Counter(r.reason for r in rows if r.reason).items())},
            "tokens": int(sum(r.codes.size for r in ok)),
            **stats.metadata(),
            **extra,
            f"bytes.{modality}": counts.bytes[modality],
            "weights": identity.get("weights", "none"),
            "tokenizer": dg.MetadataValue.json(identity),
            "path": dg.MetadataValue.path(storage.store.url(out)),
            "wall_s": round(time.monotonic() - started, 2),
        }
    )


def _token_asset(modality: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(name=f"{modality}_tokens", partitions_def=crawl_batches, deps=[media_metadata], group_name="tokens",
              kinds={"pytorch"} if modality != "text" else {"python"}, description=description)
    def _asset(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
               storage: StorageResource) -> dg.MaterializeResult:
        return materialize_tokens(context, pipeline.load(), storage, modality)

    return _asset


audio_tokens = _token_asset("audio", "EnCodec 24 kHz codes per item: (8, 75 x seconds), codebook 1024.")
image_tokens = _token_asset("image", "VQGAN f16 codes per image: 16 x 16 = 256, codebook 16384.")
video_tokens = _token_asset("video", "Tubelet RVQ codes per clip (levels, tubelets), codebook 4096.")
text_tokens = _token_asset("text", "Text tokenizer ids of each item's subtitles.")
TOKEN_ASSETS = [text_tokens, audio_tokens, image_tokens, video_tokens]
