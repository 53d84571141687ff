"""`mm demo`: the main job on the embedded default, offline.

Generates a small synthetic site (clips with audio, WebVTT tracks, a JSON-LD-only page, a dead link),
serves it on 127.0.0.1, registers it as a crawl batch, materializes the graph for that batch, refreshes the
catalog and prints what it holds.
"""

from __future__ import annotations

import errno
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from mm_assets.config import load_config
from mm_assets.crawl.batch import register_batch
from mm_assets.demo.media import build_demo_site, write_manifest
from mm_assets.demo.server import LoopbackServer, serve
from mm_assets.etl.catalog import EXAMPLE_QUERIES, format_rows, run_query
from mm_assets.partitions import crawl_batches
from resources.storage import StorageResource

SUMMARY_SQL = (
    "SELECT status, coalesce(reason, '') AS reason, count(*) AS items FROM crawl_items "
    "WHERE batch = ? GROUP BY 1, 2 ORDER BY 1, 2"
)


def _serve_on(stack: ExitStack, root: Path, port: int) -> LoopbackServer:
    """Serve on `port` so reruns reuse the same URLs (and the archive); a free port if it is taken."""
    try:
        return stack.enter_context(serve(root, port=port))
    except OSError as err:
        if err.errno != errno.EADDRINUSE:
            raise
        print(f"port {port} is in use; serving on a free port (items get new URLs, so new ids)")
        return stack.enter_context(serve(root, port=0))


def print_catalog_summary(db: Path, batch: str) -> None:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(SUMMARY_SQL, [batch]).fetchall()
    finally:
        con.close()
    print(f"\ncrawl ledger of {batch}:\n" + format_rows(["status", "reason", "items"], rows))
    for title, sql in EXAMPLE_QUERIES.items():
        cols, rows = run_query(db, sql)
        print(f"\n{title}:\n{format_rows(cols, rows)}")


def print_shard_summary(folder: Path) -> None:
    """The batch's shard as megatron-core sees it: the proof that training can read it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    from mm_assets.shards import VocabLayout

    dataset = IndexedDataset(str(folder / "tokens"))
    layout = VocabLayout.read(folder / "vocab.json")
    lengths = [len(dataset[i]) for i in range(len(dataset))]
    print(f"\ntoken shard {folder}/tokens.{{bin,idx}} (vocab {layout.vocab_size}, int32):")
    print(f"  megatron-core IndexedDataset reads {len(dataset)} documents, {sum(lengths)} tokens, lengths {lengths}")
    print("  tokenizers ran on random weights (tokenizers.allow_random_weights): marked `weights: random` in the asset metadata")


def run_demo(config_path: str | Path, port: int = 8765, instance: dg.DagsterInstance | None = None) -> int:
    from mm_assets.cli import run_ingest  # the same path as `mm ingest`

    cfg = load_config(config_path)
    storage = StorageResource(root=str(cfg.storage_root))
    instance = instance or dg.DagsterInstance.get()
    print(f"building the synthetic site under {storage.path('demo_site')} ...")
    site = build_demo_site(storage.path("demo_site"))
    with ExitStack() as stack:
        server = _serve_on(stack, site.root, port)
        manifest = write_manifest(
            site, server.base_url, cfg.manifest_dir / "demo" / f"site-{server.port}.txt",
            header="mm demo: synthetic media served on 127.0.0.1 by `mm demo`",
        )
        info, _ = register_batch(storage, cfg, manifest, "demo")
        if not instance.has_dynamic_partition(crawl_batches.name, info.batch):
            instance.add_dynamic_partitions(crawl_batches.name, [info.batch])
        print(f"serving {len(site.pages)} pages at {server.base_url}; crawl batch {info.batch}")
        ok = run_ingest(Path(config_path), info.batch, instance)
    if not ok:
        print(f"\nthe demo run failed: see the run's logs (mm ui, then Runs) for batch {info.batch}")
        return 1
    print_catalog_summary(storage.catalog_path(), info.batch)
    print_shard_summary(storage.path("shards", info.batch))
    print(
        f"\ncatalog: {storage.catalog_path()}\n"
        "query it:   .venv/bin/mm query \"SELECT unique_id, metadata.title, metadata.license FROM media_metadata\"\n"
        "open the UI: .venv/bin/mm ui   (then http://127.0.0.1:3000: assets, checks, partitions, lineage)"
    )
    return 0
