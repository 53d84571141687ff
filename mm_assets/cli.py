"""`mm`: the command line. Register crawl batches, materialize them, query the catalog, run the demo."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mm_assets.config.base import DEFAULT_CONFIG, PROJECT_ROOT, ConfigError
from mm_assets.config.pipeline import load_config


def _use_project_instance() -> None:
    """Share the UI's instance: DAGSTER_HOME defaults to the repo root, whose dagster.yaml uses .dagster_home/."""
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(PROJECT_ROOT)
        os.chdir(PROJECT_ROOT)  # dagster.yaml's storage paths are relative to the repo root


def _instance():
    import dagster as dg

    from mm_assets.orphan_runs import fail_orphaned_runs

    _use_project_instance()
    instance = dg.DagsterInstance.get()
    for run_id in fail_orphaned_runs(instance):  # SIGKILLed earlier: nothing else ends them (orphan_runs.py)
        print(f"mm: run {run_id} was left STARTED by a process that is gone; marked it failed", file=sys.stderr)
    return instance


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


def _job_runner(config: Path, instance):
    """`execute(job name, **kwargs) -> success`: runs in process, tagged with this process (so a later `mm` can
    fail it if the process dies), logging to the console without interrupt tracebacks."""
    from mm_assets.console_log import cli_console_logger
    from mm_assets.definitions import build_definitions
    from mm_assets.orphan_runs import owner_tags

    defs = build_definitions(config)

    def execute(name: str, **kwargs) -> bool:
        job_def = defs.resolve_job_def(name).with_logger_defs({"console": cli_console_logger})
        return job_def.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET,
                                          tags=owner_tags(), **kwargs).success
    return execute


def _run_then_refresh(config: Path, job: str, partition_key: str, refresh: str, instance, *,
                      refresh_after_failure: bool = False) -> bool:
    """Materialize `job` for one partition, then the unpartitioned `refresh` job (also after a failed first
    run with `refresh_after_failure`); True when both succeed. An interrupt between the two stops before the
    second."""
    from mm_assets.interrupts import raise_if_interrupted

    execute = _job_runner(config, instance)
    ok = execute(job, partition_key=partition_key)
    raise_if_interrupted()
    refreshed = execute(refresh) if ok or refresh_after_failure else False
    return ok and refreshed


def run_ingest(config: Path, batch: str, instance=None) -> bool:
    """Materialize one batch (crawl, metadata, tokens, shard + checks), then refresh the catalog."""
    return _run_then_refresh(config, "ingest_batch", batch, "refresh_catalog", instance or _instance())


EXIT_QUARANTINE = 3  # `mm ingest --strict`: the run succeeded, but too much of the batch is quarantined


def cmd_ingest(args: argparse.Namespace) -> int:
    from mm_assets.partitions import crawl_batches

    instance = _instance()
    if not instance.has_dynamic_partition(crawl_batches.name, args.batch):
        print(f"mm: no crawl batch {args.batch!r}; register it with `mm crawl add-batch FILE`", file=sys.stderr)
        return 2
    ok = run_ingest(args.config, args.batch, instance)
    over_limit = print_ingest_summary(args.config, args.batch)
    if not ok:
        return 1
    return EXIT_QUARANTINE if over_limit and args.strict else 0


def print_ingest_summary(config: Path, batch: str) -> bool:
    """The batch's closing summary on stdout, read from the files the run wrote; a warning on stderr when its
    quarantined share passes metadata.quarantine_max_fraction. True when it does."""
    from mm_assets.crawl.batch import load_batch
    from mm_assets.definitions import build_resources
    from mm_assets.etl.summary import format_quarantine_warning, format_summary, read_ingest_summary

    cfg, storage = load_config(config), build_resources(config)["storage"]
    info, _ = load_batch(storage, batch)
    summary = read_ingest_summary(storage, batch=batch, source=info.source, cfg=cfg)
    print("\n".join(format_summary(summary)))
    if summary.over_limit:
        print("\n".join(f"mm: {line}" for line in format_quarantine_warning(summary)), file=sys.stderr)
    return summary.over_limit


def run_experiment(config: Path, experiment: str, instance=None) -> bool:
    """Register `experiment` as a partition, train it (blend -> checkpoint -> log), refresh records + catalog."""
    from mm_assets.partitions import experiments

    instance = instance or _instance()
    if not instance.has_dynamic_partition(experiments.name, experiment):
        instance.add_dynamic_partitions(experiments.name, [experiment])
    return _run_then_refresh(config, "train_experiment", experiment, "refresh_records", instance)


def prepare_eval(config: Path, instance=None) -> bool:
    """Render the configured eval sets and draw their canaries (before training a canary-injected blend)."""
    return _job_runner(config, instance or _instance())("prepare_eval")


def evaluate_experiment(config: Path, experiment: str, instance=None) -> bool:
    """Evaluate a trained experiment (eval report + decontamination; the leakage check blocks), then refresh
    records and catalog, also after a failed leakage check (the record then says the canary leaked).
    False when anything failed, the leakage check included."""
    return _run_then_refresh(config, "evaluate_experiment", experiment, "refresh_records", instance or _instance(),
                             refresh_after_failure=True)


def cmd_eval_prepare(args: argparse.Namespace) -> int:
    return 0 if prepare_eval(args.config) else 1


def cmd_eval_run(args: argparse.Namespace) -> int:
    from mm_assets.partitions import experiments

    instance = _instance()
    if not instance.has_dynamic_partition(experiments.name, args.experiment):
        print(f"mm: no experiment {args.experiment!r}; train it first with `mm train run {args.experiment}`",
              file=sys.stderr)
        return 2
    return 0 if evaluate_experiment(args.config, args.experiment, instance) else 1


def _load_experiment(args: argparse.Namespace):
    from mm_assets.train.launch.experiment import load_experiment

    return load_experiment(load_config(args.config), args.experiment)


def cmd_train_run(args: argparse.Namespace) -> int:
    from mm_assets.definitions import build_resources
    from mm_assets.train.launch.preflight import launch_preflight

    # The whole launch validation (the blend's shards and vocabulary, world size, batches, heads, layers, …)
    # fails here, before a partition is registered or a file written.
    launch_preflight(_load_experiment(args), build_resources(args.config)["storage"])
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
    from mm_assets.shards.vocab import ShardVocab
    from mm_assets.train.launch.preflight import canary_resolver, shard_resolver
    from mm_assets.train.launch.run_folders import RunFolders
    from mm_assets.train.launch.sbatch import render_launch

    exp = _load_experiment(args)
    vocab = ShardVocab(vocab_size=args.vocab_size, eod_id=args.vocab_size - 2, pad_id=args.vocab_size - 1) \
        if args.vocab_size is not None else None
    storage = build_resources(args.config)["storage"]
    files = render_launch(exp, RunFolders.of(exp, storage), vocab=vocab, shard_prefix=shard_resolver(storage),
                          canary_prefix=canary_resolver(storage))
    if args.out:
        for kind, path in files.write(Path(args.out)).items():
            print(f"{kind}: {path}")
    else:
        print(files.sbatch)
    for warning in files.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


# -- releases (issue 12) ---------------------------------------------------------------------------------


def run_release(config: Path, version: str, instance=None) -> bool:
    """Register `version` (configs/releases/<version>.yaml, validated first) and build its bundle + checklist."""
    from mm_assets.partitions import releases
    from mm_assets.release.config import load_release

    load_release(load_config(config), version)
    instance = instance or _instance()
    if not instance.has_dynamic_partition(releases.name, version):
        instance.add_dynamic_partitions(releases.name, [version])
    return _job_runner(config, instance)("build_release", partition_key=version)


def print_release_checklist(config: Path, version: str, instance=None) -> bool:
    """The reference's checklist as the release's checks left it; True when every box a check owns is ticked."""
    from mm_assets.release.config import load_release
    from mm_assets.release.report import checklist_markdown

    release = load_release(load_config(config), version)
    text, complete = checklist_markdown(instance or _instance(), version, release.model_name)
    print(text, end="")
    return complete


def cmd_release_build(args: argparse.Namespace) -> int:
    from mm_assets.release.config import load_release

    load_release(load_config(args.config), args.version)  # a bad release file fails before anything runs
    instance = _instance()
    ok = run_release(args.config, args.version, instance)
    print()
    complete = print_release_checklist(args.config, args.version, instance)
    return 0 if ok and complete else 1


def cmd_release_checklist(args: argparse.Namespace) -> int:
    return 0 if print_release_checklist(args.config, args.version) else 1


def cmd_release_verify(args: argparse.Namespace) -> int:
    from mm_assets.release.verify import open_bundle, verify_bundle
    from mm_assets.storage.s3_access import S3Access

    cfg = load_config(args.config)  # on S3: its storage endpoint and credentials file, else the environment's
    access = S3Access.from_environment(endpoint_url=cfg.storage.endpoint_url,
                                       credentials_file=cfg.storage_credentials_file)
    result = verify_bundle(open_bundle(args.bundle, access))
    print(result.summary())
    return 0 if result.ok else 1


def cmd_query(args: argparse.Namespace) -> int:
    """Read-only SQL on the catalog; needs only the store, so it starts without Dagster."""
    from mm_assets.etl.catalog import format_rows, query_catalog
    from mm_assets.storage.s3_access import S3Access
    from mm_assets.storage.store import open_store

    cfg = load_config(args.config)
    access = S3Access.from_environment(endpoint_url=cfg.storage.endpoint_url,
                                       credentials_file=cfg.storage_credentials_file) \
        if cfg.storage.on_object_storage else None
    cols, rows = query_catalog(open_store(cfg.storage_root, cfg.storage_scratch, access), args.sql)
    print(format_rows(cols, rows, args.format))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from mm_assets.demo.run import run_demo

    _use_project_instance()
    return run_demo(args.config, port=args.port, canary=args.canary)


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
    from mm_assets.monitor.deploy import write_stack_configs
    from mm_assets.storage.layout import ArtifactLayout
    from mm_assets.storage.store import open_store

    cfg = load_config(args.config)
    targets = args.targets_dir
    if targets is None:
        if cfg.storage_root.startswith("s3://"):
            raise ConfigError(f"storage.root {cfg.storage_root} is object storage, which Prometheus cannot read: "
                              "pass --targets-dir, a local folder synced from its monitoring/targets/")
        targets = open_store(cfg.storage_root, cfg.storage_scratch).local_dir(ArtifactLayout().monitoring_targets())
    written = write_stack_configs(
        Path(args.out).resolve(), rules_dir=Path(args.rules_dir).resolve(),
        targets_dir=Path(targets).resolve(), prometheus=args.prometheus,
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
    ingest.add_argument("--strict", action="store_true", help=f"exit {EXIT_QUARANTINE} when the quarantined share "
                        "of the batch passes metadata.quarantine_max_fraction (default: warn only)")
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

    evaluation = sub.add_parser("eval", help="eval sets, canaries and eval reports").add_subparsers(
        dest="eval_command", required=True)
    prepare = evaluation.add_parser("prepare", help="render the eval sets of eval.tasks and draw their canaries")
    prepare.set_defaults(func=cmd_eval_prepare)
    run_eval = evaluation.add_parser("run", help="evaluate a trained experiment, then refresh records + catalog")
    run_eval.add_argument("experiment", help="experiment id, e.g. exp-tiny-cpu")
    run_eval.set_defaults(func=cmd_eval_run)

    release = sub.add_parser("release", help="release bundles (reference §B.7)").add_subparsers(
        dest="release_command", required=True)
    build = release.add_parser("build", help="build configs/releases/VERSION.yaml's bundle and run its checklist")
    build.add_argument("version", help="release version, e.g. tiny-cpu-0.1")
    build.set_defaults(func=cmd_release_build)
    checklist = release.add_parser("checklist", help="print the release checklist as its checks left it")
    checklist.add_argument("version")
    checklist.set_defaults(func=cmd_release_checklist)
    verify = release.add_parser("verify", help="recompute every hash of a bundle against its manifest.json")
    verify.add_argument("bundle", help="a bundle folder (<storage.root>/releases/VERSION) or an s3:// URL")
    verify.set_defaults(func=cmd_release_verify)

    demo = sub.add_parser("demo", help="generate synthetic media, serve it on 127.0.0.1 and run the graph")
    demo.add_argument("--port", type=int, default=8765, help="loopback port (falls back to a free one)")
    demo.add_argument("--canary", action="store_true",
                      help="also train and evaluate exp-tiny-cpu-canary, the twin with a canary injected on purpose, "
                           "to see check_leakage block a leak (several minutes more)")
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
    stack.add_argument("--targets-dir", help="the file_sd folder Prometheus reads (default: the local storage "
                                             "root's monitoring/targets/)")
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


def _after_interrupt(args: argparse.Namespace) -> str:
    """What a user can do after Ctrl-C / SIGTERM: everything `mm` writes is published whole or not at all."""
    if args.command == "ingest":
        return (f"items published so far are kept; `mm ingest {args.batch}` continues the batch "
                "(partial downloads resume where they stopped)")
    return "nothing was half-written; run the same command again to continue"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = args.config.resolve()
    if getattr(args, "file", None):
        args.file = str(Path(args.file).resolve())
    from mm_assets.crawl.batch import BatchError
    from mm_assets.etl.catalog import CatalogError
    from mm_assets.interrupts import Interrupted, raise_if_interrupted, watch_interrupts
    from mm_assets.release.manifest import ManifestError
    from mm_assets.storage.s3_access import StorageAccessError

    try:
        with watch_interrupts():
            code = args.func(args)
            raise_if_interrupted()  # a signal Dagster handled ended its run as failed; say why, once
            return code
    except (ConfigError, BatchError, CatalogError, ManifestError, StorageAccessError) as err:
        print(f"mm: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"mm: {stop}: {_after_interrupt(args)}", file=sys.stderr)
        return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
