"""`mm`: the command line. Register crawl batches, materialize them, query the catalog, run the demo."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mm_assets.config import DEFAULT_CONFIG, PROJECT_ROOT, ConfigError, load_config


def _use_project_instance() -> None:
    """Share the UI's instance: DAGSTER_HOME defaults to the repo root, whose dagster.yaml uses .dagster_home/."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(PROJECT_ROOT)
        os.chdir(PROJECT_ROOT)  # dagster.yaml's storage paths are relative to the repo root


def _instance():
    import dagster as dg

    _use_project_instance()
    return dg.DagsterInstance.get()


def cmd_add_batch(args: argparse.Namespace) -> int:
    from mm_assets.crawl.batch import register_batch
    from mm_assets.definitions import build_resources
    from mm_assets.partitions import crawl_batches

    cfg = load_config(args.config)
    storage = build_resources(args.config)["storage"]
    info, created = register_batch(storage, cfg, Path(args.file), args.source)
    instance = _instance()
    if not instance.has_dynamic_partition(crawl_batches.name, info.batch):
        instance.add_dynamic_partitions(crawl_batches.name, [info.batch])
    state = "registered" if created else "already registered (same content)"
    print(f"crawl batch {info.batch}: {state}, {info.urls} URLs, manifest sha256 {info.manifest_sha256[:12]}")
    print(f"materialize it with: mm ingest {info.batch}   (or from the UI: job ingest_batch)")
    return 0


QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def _run_then_refresh(config: Path, job: str, partition_key: str, refresh: str, instance) -> bool:
    """Materialize `job` for one partition, then the unpartitioned `refresh` job; True when both succeed."""
    from mm_assets.definitions import build_definitions

    defs = build_definitions(config)
    run = defs.resolve_job_def(job).execute_in_process(
        partition_key=partition_key, instance=instance, raise_on_error=False, run_config=QUIET
    )
    if not run.success:
        return False
    return defs.resolve_job_def(refresh).execute_in_process(instance=instance, raise_on_error=False,
                                                             run_config=QUIET).success


def run_ingest(config: Path, batch: str, instance=None) -> bool:
    """Materialize one batch (crawl, metadata, tokens, shard + checks), then refresh the catalog."""
    return _run_then_refresh(config, "ingest_batch", batch, "refresh_catalog", instance or _instance())


def cmd_ingest(args: argparse.Namespace) -> int:
    from mm_assets.partitions import crawl_batches

    instance = _instance()
    if not instance.has_dynamic_partition(crawl_batches.name, args.batch):
        print(f"mm: no crawl batch {args.batch!r}; register it with `mm crawl add-batch FILE`", file=sys.stderr)
        return 2
    return 0 if run_ingest(args.config, args.batch, instance) else 1


def run_experiment(config: Path, experiment: str, instance=None) -> bool:
    """Register `experiment` as a partition, train it (blend -> checkpoint -> log), refresh records + catalog."""
    from mm_assets.partitions import experiments

    instance = instance or _instance()
    if not instance.has_dynamic_partition(experiments.name, experiment):
        instance.add_dynamic_partitions(experiments.name, [experiment])
    return _run_then_refresh(config, "train_experiment", experiment, "refresh_records", instance)


def _load_experiment(args: argparse.Namespace):
    from mm_assets.train.experiments import load_experiment_file

    return load_experiment_file(load_config(args.config), args.config, args.experiment)[0]


def cmd_train_run(args: argparse.Namespace) -> int:
    _load_experiment(args)  # a bad experiment file fails here, before anything is registered
    return 0 if run_experiment(args.config, args.experiment) else 1


MIN_VOCAB_SIZE = 3  # the stand-in puts <eod> and <pad> at its last two ids, after at least one token


def vocab_size_arg(text: str) -> int:
    """argparse type of --vocab-size: a whole number with room for a token, <eod> and <pad>."""
    try:
        size = int(text)
    except ValueError:
        size = None
    if size is None or size < MIN_VOCAB_SIZE:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a vocabulary size: give a whole number >= {MIN_VOCAB_SIZE} "
            "(<eod> and <pad> take its last two ids), e.g. the vocab_size of a shard's vocab.json"
        )
    return size


def cmd_train_render(args: argparse.Namespace) -> int:
    """Print (or write) the Megatron arguments and sbatch script, without shards: vocab from_shards stays open."""
    from mm_assets.definitions import build_resources
    from mm_assets.train.blend_assets import shard_resolver
    from mm_assets.train.config import ShardVocab
    from mm_assets.train.sbatch import render_launch

    exp = _load_experiment(args)
    vocab = ShardVocab(vocab_size=args.vocab_size, eod_id=args.vocab_size - 2, pad_id=args.vocab_size - 1) \
        if args.vocab_size is not None else None
    files = render_launch(exp, vocab=vocab, shard_prefix=shard_resolver(build_resources(args.config)["storage"]))
    if args.out:
        for kind, path in files.write(Path(args.out)).items():
            print(f"{kind}: {path}")
    else:
        print(files.sbatch)
    for warning in files.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    """Read-only SQL on the catalog; needs only the storage layout, so it starts without Dagster."""
    from mm_assets.etl.catalog import format_rows, run_query
    from mm_assets.layout import StorageLayout

    storage = StorageLayout(load_config(args.config).storage_root)
    cols, rows = run_query(storage.catalog_path(), args.sql, root=storage.root_path)
    print(format_rows(cols, rows, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mm_assets.demo.run import run_demo

    _use_project_instance()
    return run_demo(args.config, port=args.port)


def cmd_monitor_render(args: argparse.Namespace) -> int:
    """Write (or with --check, compare) the generated rules, promtool tests and dashboard under deploy/."""
    from mm_assets.monitor.deploy import drifted, write_deploy

    cfg = load_config(args.config).monitoring
    out = Path(args.out).resolve()
    if args.check:
        stale = drifted(cfg, out)
        for rel in stale:
            print(f"mm: {out / rel} differs from what {args.config} generates: run `mm monitor render`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_deploy(cfg, out):
        print(path)
    return 0


def cmd_monitor_stack(args: argparse.Namespace) -> int:
    """The loopback stack's prometheus.yml and alertmanager.yml (scripts/monitoring/start.sh calls this)."""
    from mm_assets.layout import StorageLayout
    from mm_assets.monitor.deploy import write_stack_configs

    cfg = load_config(args.config)
    written = write_stack_configs(
        Path(args.out).resolve(), rules_dir=Path(args.rules_dir).resolve(),
        targets_dir=StorageLayout(cfg.storage_root).monitoring_targets_dir(), prometheus=args.prometheus,
        pushgateway=args.pushgateway, alertmanager=args.alertmanager, interval=args.interval,
        group_wait=args.group_wait, group_interval=args.group_interval, webhooks=args.webhook)
    for path in written.values():
        print(path)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    _use_project_instance()
    exe = Path(sys.executable).with_name("dagster")
    cmd = [str(exe), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", args.host, "-p", str(args.port)]
    return subprocess.call(cmd, cwd=PROJECT_ROOT)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mm", description=__doc__)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pipeline config (default: %(default)s)")
    sub = p.add_subparsers(dest="command", required=True)

    crawl = sub.add_parser("crawl", help="crawl batches").add_subparsers(dest="crawl_command", required=True)
    add = crawl.add_parser("add-batch", help="register a URL manifest as a crawl-batch partition")
    add.add_argument("file", help="manifest: one URL a line, '#' comments (sources/<source>/<name>.txt)")
    add.add_argument("--source", help="source name (default: the manifest's parent folder)")
    add.set_defaults(func=cmd_add_batch)

    ingest = sub.add_parser("ingest", help="crawl one batch, build its metadata, refresh the catalog")
    ingest.add_argument("batch", help="crawl batch partition key, e.g. youtube-2026-11-29")
    ingest.set_defaults(func=cmd_ingest)

    query = sub.add_parser("query", help="run SQL against the DuckDB metadata catalog")
    query.add_argument("sql", help='e.g. "SELECT source, count(*) FROM media_metadata GROUP BY 1"')
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.set_defaults(func=cmd_query)

    train = sub.add_parser("train", help="experiments").add_subparsers(dest="train_command", required=True)
    run = train.add_parser("run", help="register configs/experiments/ID.yaml as a partition and train it")
    run.add_argument("experiment", help="experiment id, e.g. exp-tiny-cpu")
    run.set_defaults(func=cmd_train_run)
    render = train.add_parser("render", help="print the generated sbatch script (or write args + script to --out)")
    render.add_argument("experiment")
    render.add_argument("--out", help="folder for <id>.args.txt and <id>.sbatch")
    render.add_argument("--vocab-size", type=vocab_size_arg,
                        help="stand-in vocabulary size when no shards exist yet (<eod>, <pad> = its last two ids)")
    render.set_defaults(func=cmd_train_render)

    demo = sub.add_parser("demo", help="generate synthetic media, serve it on 127.0.0.1 and run the graph")
    demo.add_argument("--port", type=int, default=8765, help="loopback port (falls back to a free one)")
    demo.set_defaults(func=cmd_demo)

    monitor = sub.add_parser("monitor", help="Prometheus rules, dashboards and the loopback stack's configs")
    monitor_sub = monitor.add_subparsers(dest="monitor_command", required=True)
    mrender = monitor_sub.add_parser("render", help="write deploy/ (alert and recording rules, promtool tests, "
                                                    "Grafana dashboard) from the config's monitoring: section")
    mrender.add_argument("--out", default=str(PROJECT_ROOT / "deploy"), help="deploy folder (default: %(default)s)")
    mrender.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    mrender.set_defaults(func=cmd_monitor_render)
    stack = monitor_sub.add_parser("stack-config", help="prometheus.yml + alertmanager.yml for a loopback stack")
    stack.add_argument("--out", required=True, help="folder for the two files")
    stack.add_argument("--rules-dir", default=str(PROJECT_ROOT / "deploy" / "prometheus"))
    stack.add_argument("--prometheus", default="127.0.0.1:9090", help="Prometheus host:port (scraped by itself)")
    stack.add_argument("--pushgateway", default="127.0.0.1:9091", help="Pushgateway host:port")
    stack.add_argument("--alertmanager", default="127.0.0.1:9093", help="Alertmanager host:port")
    stack.add_argument("--interval", default="15s", help="scrape and rule evaluation interval")
    stack.add_argument("--group-wait", default="30s", help="Alertmanager group_wait")
    stack.add_argument("--group-interval", default="5m", help="Alertmanager group_interval")
    stack.add_argument("--webhook", action="append", default=[], help="Alertmanager webhook receiver URL (repeat)")
    stack.set_defaults(func=cmd_monitor_stack)

    ui = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on this project's instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = args.config.resolve()
    if getattr(args, "file", None):
        args.file = str(Path(args.file).resolve())
    from mm_assets.crawl.batch import BatchError
    from mm_assets.etl.catalog import CatalogError

    try:
        return args.func(args)
    except (ConfigError, BatchError, CatalogError) as err:
        print(f"mm: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
