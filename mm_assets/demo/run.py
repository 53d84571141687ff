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

from mm_assets.config.pipeline import PipelineConfig, load_config
from mm_assets.crawl.batch import register_batch
from mm_assets.demo.media import build_demo_site, write_manifest
from mm_assets.demo.server import LoopbackServer, serve
from mm_assets.etl.catalog import EXAMPLE_QUERIES, format_rows, run_query
from mm_assets.partitions import crawl_batches
from mm_assets.storage.store import Storage
from resources.storage import StorageResource

DEMO_BATCH = "demo-site"
DEMO_EXPERIMENT = "exp-tiny-cpu"  # configs/experiments/exp-tiny-cpu.yaml: a tiny GPT on the CPU, blend demo-site
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


def _demo_manifest(cfg: PipelineConfig, storage: Storage, site, server: LoopbackServer) -> Path:
    """sources/demo/site.txt (batch demo-site, which exp-tiny-cpu trains on); a batch is immutable, so when
    demo-site was registered with other URLs (another port), the manifest is named after the port instead."""
    header = "mm demo: synthetic media served on 127.0.0.1 by `mm demo`"
    lines = [f"# {header}", *site.urls(server.base_url)]
    snapshot = storage.layout.batch_manifest(DEMO_BATCH)
    same = not storage.store.exists(snapshot) or storage.store.read_text(snapshot).splitlines() == lines
    name = "site" if same else f"site-{server.port}"
    return write_manifest(site, server.base_url, cfg.manifest_dir / "demo" / f"{name}.txt", header=header)


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


RECORDS_SQL = "SELECT experiment_id, date, git_commit, result_summary FROM experiment_records"


def train_demo(cfg: PipelineConfig, config_path: Path, batch: str, instance: dg.DagsterInstance) -> bool | None:
    """Train exp-tiny-cpu (a tiny GPT built with megatron-core, on the CPU) on the demo shard."""
    from mm_assets.cli import run_experiment
    from mm_assets.train.launch.experiment import experiment_file

    if batch != DEMO_BATCH or cfg.training is None or not experiment_file(cfg, DEMO_EXPERIMENT).is_file():
        print(f"\ntraining skipped: {DEMO_EXPERIMENT} trains on batch {DEMO_BATCH} "
              f"(this run crawled {batch}; see configs/experiments/)")
        return None
    print(f"\ntraining {DEMO_EXPERIMENT} on {batch} (compute backend: {cfg.compute.backend}) ...")
    if not run_experiment(config_path, DEMO_EXPERIMENT, instance):
        print(f"training {DEMO_EXPERIMENT} failed: see the run's logs (mm ui, then Runs)")
        return False
    return True


def print_shard_summary(storage: Storage, batch: str) -> None:
    """The batch's shard as megatron-core sees it: the proof that training can read it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    from mm_assets.shards.vocab import VocabLayout

    prefix = storage.store.local_path(storage.layout.shard_prefix(batch))
    dataset = IndexedDataset(str(prefix))
    layout = VocabLayout.read(storage.store.local_path(storage.layout.shard_vocab(batch)))
    lengths = [len(dataset[i]) for i in range(len(dataset))]
    print(f"\ntoken shard {prefix}.{{bin,idx}} (vocab {layout.vocab_size}, int32):")
    print(f"  megatron-core IndexedDataset reads {len(dataset)} documents, {sum(lengths)} tokens, lengths {lengths}")
    print("  tokenizers ran on random weights (tokenizers.allow_random_weights): marked `weights: random` in the asset metadata")


def run_demo(config_path: str | Path, port: int = 8765, instance: dg.DagsterInstance | None = None) -> int:
    from mm_assets.cli import run_ingest  # the same path as `mm ingest`

    cfg = load_config(config_path)
    storage = StorageResource(root=cfg.storage_root, scratch=cfg.storage_scratch)
    catalog = storage.store.local_path(storage.layout.catalog())
    instance = instance or dg.DagsterInstance.get()
    site_dir = storage.store.local_dir(storage.layout.demo_site())
    print(f"building the synthetic site under {site_dir} ...")
    site = build_demo_site(site_dir)
    with ExitStack() as stack:
        server = _serve_on(stack, site.root, port)
        manifest = _demo_manifest(cfg, storage, site, server)
        info, _ = register_batch(storage, cfg, manifest, "demo")
        if not instance.has_dynamic_partition(crawl_batches.name, info.batch):
            instance.add_dynamic_partitions(crawl_batches.name, [info.batch])
        print(f"serving {len(site.pages)} pages at {server.base_url}; crawl batch {info.batch}")
        ok = run_ingest(Path(config_path), info.batch, instance)
    if not ok:
        print(f"\nthe demo run failed: see the run's logs (mm ui, then Runs) for batch {info.batch}")
        return 1
    print_shard_summary(storage, info.batch)
    trained = train_demo(cfg, Path(config_path), info.batch, instance)
    print_catalog_summary(catalog, info.batch)
    if trained:
        cols, rows = run_query(catalog, RECORDS_SQL)
        print(f"\nexperiment records (mm query \"SELECT * FROM experiment_records\"):\n{format_rows(cols, rows)}")
    if trained is False:
        return 1
    print(
        f"\ncatalog: {catalog}\n"
        "query it:   .venv/bin/mm query \"SELECT unique_id, metadata.title, metadata.license FROM media_metadata\"\n"
        "open the UI: .venv/bin/mm ui   (then http://127.0.0.1:3000: assets, checks, partitions, lineage)"
    )
    return 0
