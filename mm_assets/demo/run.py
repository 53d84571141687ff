"""`mm demo`: the main job on the embedded default, offline.

Generates a small synthetic site (clips with audio, WebVTT tracks, a JSON-LD-only page, a dead link),
serves it on 127.0.0.1, registers it as a crawl batch, materializes the graph for that batch, trains and
evaluates exp-tiny-cpu (with --canary also its canary-injected twin, which the leakage check must block), refreshes the
catalog and prints what it holds.
"""

from __future__ import annotations

import errno
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from mm_assets.config.pipeline import PipelineConfig, load_config
from mm_assets.crawl.batch import register_batch
from mm_assets.demo.eval_set import evaluate_demo
from mm_assets.demo.media import build_demo_site, write_manifest
from mm_assets.demo.server import LoopbackServer, serve
from mm_assets.etl.catalog import EXAMPLE_QUERIES, format_rows, query_catalog
from mm_assets.partitions import crawl_batches
from mm_assets.storage.store import Storage

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


def print_catalog_summary(storage: Storage, batch: str) -> None:
    cols, rows = query_catalog(storage.store, SUMMARY_SQL, [batch])
    print(f"\ncrawl ledger of {batch}:\n" + format_rows(cols, rows))
    for title, sql in EXAMPLE_QUERIES.items():
        cols, rows = query_catalog(storage.store, sql)
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


DEMO_RELEASE = "tiny-cpu-0.1"  # configs/releases/tiny-cpu-0.1.yaml: exp-tiny-cpu, released internally


def release_demo(cfg: PipelineConfig, config_path: Path, storage: Storage, instance: dg.DagsterInstance) -> bool:
    """Release exp-tiny-cpu internally (its tokenizers have random weights), verify the bundle as a user
    would, and print the release checklist as its checks left it."""
    from mm_assets.cli import print_release_checklist, run_release
    from mm_assets.release.config import release_file
    from mm_assets.release.verify import stored_bundle, verify_bundle

    if not release_file(cfg, DEMO_RELEASE).is_file():
        print(f"\nrelease skipped: no {release_file(cfg, DEMO_RELEASE)}")
        return True
    print(f"\nreleasing {DEMO_EXPERIMENT} as {DEMO_RELEASE} (internal: its tokenizers have random weights) ...")
    ok = run_release(config_path, DEMO_RELEASE, instance)
    bundle = stored_bundle(storage.store, storage.layout.release_dir(DEMO_RELEASE))
    print(f"\nmm release verify {bundle.where}\n{verify_bundle(bundle).summary()}\n")
    print_release_checklist(config_path, DEMO_RELEASE, instance)
    return ok


def print_shard_summary(storage: Storage, batch: str) -> None:
    """The batch's shard as megatron-core sees it: the proof that training can read it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core.datasets.indexed_dataset import IndexedDataset

    from mm_assets.shards.vocab import VocabLayout

    prefix = storage.store.local_prefix(storage.layout.shard_prefix(batch))
    url = storage.store.url(storage.layout.shard_prefix(batch))
    if Path(f"{prefix}.bin").stat().st_size == 0:  # megatron-core cannot mmap an empty file
        print(f"\ntoken shard {url}.{{bin,idx}} holds no documents: every item of batch {batch} was a duplicate "
              "or quarantined (see the ingest summary above)")
        return
    dataset = IndexedDataset(str(prefix))
    layout = VocabLayout.read(storage.store.local_path(storage.layout.shard_vocab(batch)))
    lengths = [len(dataset[i]) for i in range(len(dataset))]
    print(f"\ntoken shard {url}.{{bin,idx}} (vocab {layout.vocab_size}, int32):")
    print(f"  megatron-core IndexedDataset reads {len(dataset)} documents, {sum(lengths)} tokens, lengths {lengths}")
    print("  tokenizers ran on random weights (tokenizers.allow_random_weights): marked `weights: random` in the asset metadata")


def run_demo(config_path: str | Path, port: int = 8765, instance: dg.DagsterInstance | None = None, *,
             canary: bool = False) -> int:
    from mm_assets.cli import print_ingest_summary, run_ingest  # the same path as `mm ingest`
    from mm_assets.definitions import build_resources

    cfg = load_config(config_path)
    storage = build_resources(config_path)["storage"]
    instance = instance or dg.DagsterInstance.get()
    site_dir = storage.store.working_path(storage.layout.demo_site())  # served from here, not an artifact
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
    print_ingest_summary(Path(config_path), info.batch)
    print_shard_summary(storage, info.batch)
    trained = train_demo(cfg, Path(config_path), info.batch, instance)
    evaluated = None
    if trained:
        evaluated = evaluate_demo(cfg, storage, Path(config_path), DEMO_EXPERIMENT, instance, canary=canary)
    print_catalog_summary(storage, info.batch)
    if trained:
        cols, rows = query_catalog(storage.store, RECORDS_SQL)
        print(f"\nexperiment records (mm query \"SELECT * FROM experiment_records\"):\n{format_rows(cols, rows)}")
    if trained is False or evaluated is False:
        return 1
    if trained and not release_demo(cfg, Path(config_path), storage, instance):
        print(f"\nrelease {DEMO_RELEASE} was blocked by its checklist: see above (mm release checklist {DEMO_RELEASE})")
        return 1
    print(
        f"\ncatalog: {storage.store.url(storage.layout.catalog())}\n"
        "query it:   .venv/bin/mm query \"SELECT unique_id, metadata.title, metadata.license FROM media_metadata\"\n"
        "open the UI: .venv/bin/mm ui   (then http://127.0.0.1:3000: assets, checks, partitions, lineage)"
    )
    return 0
