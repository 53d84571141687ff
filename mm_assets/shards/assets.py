"""The `token_shards` asset: a batch's tokens assembled into documents, written as one Megatron shard.

A shard folder (ArtifactLayout.shard_dir) holds tokens.bin/.idx (int32, one sequence per document ending with
EOD), vocab.json (the versioned vocabulary layout), documents.parquet (which item each document is) and,
written last, manifest.json (sha256 and size of each file: what every consumer checks). The store publishes
the folder whole (one writer per batch), so readers see a whole shard or the previous one.
"""

from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from mm_assets.config.pipeline import PipelineConfig
from mm_assets.digests import FileDigest, file_digest
from mm_assets.partitions import crawl_batches
from mm_assets.shards.documents import AssemblyConfig, DocumentAssembler
from mm_assets.shards.indexed import ShardFiles, write_shard
from mm_assets.shards.manifest import ShardManifest
from mm_assets.shards.stats import shard_stats
from mm_assets.shards.vocab import Codebook, VocabLayout
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.paths import LockBusyError
from mm_assets.storage.store import Storage
from mm_assets.tokens.assets import MODALITIES, TOKEN_ASSETS
from mm_assets.tokens.store import read_identity, read_tokens
from resources.config import PipelineConfigResource
from resources.storage import StorageResource


class ShardInputError(ValueError):
    """The batch's tokens cannot make a shard (e.g. text ids that do not fit the reserved text range)."""


def text_vocab_size(cfg: PipelineConfig, storage: Storage, batch: str) -> int:
    """The layout's text range: `tokenizers.text.reserved_vocab_size`, the same for every batch (with text or
    without, before or after a tokenizer.json exists), so all shards share one layout and can be blended."""
    reserved = cfg.tokenizers.text.reserved_vocab_size
    text = storage.store.local_path(storage.layout.token_file(batch, "text"))
    used = read_identity(text).get("config", {}).get("vocab_size")
    if used and int(used) > reserved:
        raise ShardInputError(
            f"batch {batch}: its text tokens come from a tokenizer of {used} ids, more than the reserved text range "
            f"(tokenizers.text.reserved_vocab_size: {reserved}); raise it to at least {used} and rematerialize "
            "token_shards of every batch"
        )
    return reserved


def vocab_layout(cfg: PipelineConfig, text_size: int) -> VocabLayout:
    """Text ids first, then audio (each RVQ level its own range), image, video, then the special tokens."""
    t = cfg.tokenizers
    return VocabLayout.build(text_size, [
        Codebook("audio", t.audio.codebook_size, t.audio.n_q),
        Codebook("image", t.image.codebook_size, 1),
        Codebook("video", t.video.codebook_size, t.video.num_quantizers),
    ])


def batch_documents(storage: Storage, batch: str, order: list[str]) -> tuple[list[str], list[dict], Counter]:
    """(unique_ids, items, skipped reasons): each accepted item's ok codes by modality, in unique_id order."""
    layout, local = storage.layout, storage.store.local_path
    uids = pl.read_parquet(local(layout.metadata_file(batch)), columns=["unique_id"])["unique_id"]
    codes = {m: read_tokens(local(layout.token_file(batch, m)))[0] for m in MODALITIES}
    kept, items, skipped = [], [], Counter()
    for uid in sorted(uids.to_list()):
        item = {m: (codes[m][uid][0] if m == "text" else codes[m][uid]) for m in order if uid in codes[m]}
        if not any(np.size(v) for v in item.values()):
            skipped["no_tokens"] += 1
            continue
        kept.append(uid)
        items.append(item)
    return kept, items, skipped


def shard_manifest(folder: Path, files: ShardFiles,
                   names: tuple[str, ...] = (ArtifactLayout.SHARD_VOCAB, ArtifactLayout.SHARD_DOCUMENTS)) -> ShardManifest:
    """Digests of the shard's files; the .bin/.idx hashes are the writer's, taken as the bytes went out."""
    digests = {name: file_digest(folder / name) for name in names}
    for path, sha in ((files.bin_path, files.bin_sha256), (files.idx_path, files.idx_sha256)):
        digests[path.name] = FileDigest(sha, path.stat().st_size) if sha else file_digest(path)
    return ShardManifest(files.documents, files.tokens, digests)


def write_shard_folder(folder: Path, layout: VocabLayout, uids: list[str], docs: list) -> tuple[ShardFiles, ShardManifest, str]:
    """The shard's files in `folder`, manifest.json last; (the .bin/.idx, the manifest, the vocab sha256)."""
    folder.mkdir()
    files = write_shard(folder / ArtifactLayout.SHARD_PREFIX, docs, eod_id=layout.eod_id, copy=False)
    vocab_sha = layout.write(folder / ArtifactLayout.SHARD_VOCAB)
    table = pa.table({"document": pa.array(range(len(uids)), pa.int64()),
                      "unique_id": pa.array(uids, pa.string()),
                      "tokens": pa.array([len(d) for d in docs], pa.int64())})
    pq.write_table(table, folder / ArtifactLayout.SHARD_DOCUMENTS)
    manifest = shard_manifest(folder, files)
    manifest.write(folder)  # last: the shard is complete once it is there
    return files, manifest, vocab_sha


def build_shard(cfg: PipelineConfig, storage: Storage, batch: str) -> dict:
    """Assemble and publish the batch's shard; returns Dagster metadata."""
    layout = vocab_layout(cfg, text_vocab_size(cfg, storage, batch))
    assembler = DocumentAssembler(layout, AssemblyConfig(order=tuple(cfg.shards.order), flatten=cfg.shards.flatten))
    uids, items, skipped = batch_documents(storage, batch, cfg.shards.order)
    store, keys = storage.store, storage.layout
    with store.publish(keys.shard_dir(batch), last=ArtifactLayout.SHARD_MANIFEST, what=f"shard {batch}") as staged:
        docs = [assembler.assemble(item) for item in items]
        files, manifest, vocab_sha = write_shard_folder(staged, layout, uids, docs)
    prefix = store.url(keys.shard_prefix(batch))
    stats = shard_stats(store.local_prefix(keys.shard_prefix(batch)), layout)
    return {
        "documents": files.documents,
        "tokens": files.tokens,
        "skipped_items": sum(skipped.values()),
        "bin_sha256": files.bin_sha256,
        "bin_bytes": manifest.files[files.bin_path.name].bytes,
        "idx_sha256": files.idx_sha256,
        "idx_bytes": manifest.files[files.idx_path.name].bytes,
        "manifest": dg.MetadataValue.path(store.url(keys.shard_manifest(batch))),
        "vocab_size": layout.vocab_size,
        "vocab_sha256": vocab_sha,
        "special_token_ratio": round(stats.special_token_ratio, 6),
        "length_p50": stats.lengths.p50,
        "length_max": stats.lengths.max,
        "prefix": dg.MetadataValue.path(prefix),
        "data_path": f"1.0 {prefix}",
    }


@dg.asset(partitions_def=crawl_batches, deps=TOKEN_ASSETS, group_name="shards", kinds={"numpy"},
          description="Megatron indexed dataset (.bin/.idx, int32, one document per item ending with EOD) + vocab layout.")
def token_shards(context: dg.AssetExecutionContext, pipeline: PipelineConfigResource,
                 storage: StorageResource) -> dg.MaterializeResult:
    try:
        metadata = build_shard(pipeline.load(), storage, context.partition_key)
    except (ShardInputError, LockBusyError) as err:
        raise dg.Failure(str(err)) from None
    context.log.info(f"shard {context.partition_key}: {metadata['documents']} documents, {metadata['tokens']} tokens")
    return dg.MaterializeResult(metadata=metadata)
