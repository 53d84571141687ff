"""One run from argv to exit: checks, datasets, the trainer, and the materialization reported to Dagster Pipes."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mm_assets.shards.manifest import has_manifest, shard_problems
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3_access import is_s3_url
from mm_assets.train.cpu import TrainerError
from mm_assets.train.cpu.args import build_parser, check_args, schedule_of
from mm_assets.train.cpu.checkpoint import checkpoint_sha256, sweep_staging, writer_lock
from mm_assets.train.cpu.data import build_datasets, missing_prefixes, padded_vocab_size, parse_data_path, resolve_vocab
from mm_assets.train.cpu.model import install_cpu_shims
from mm_assets.train.cpu.object_storage import local_prefixes
from mm_assets.train.cpu.trainer import Trainer, now


def _asset_key(pipes) -> str | None:
    """The asset to report: the only one in scope, else extras["asset_key"], else one named `checkpoint`."""
    if not pipes.is_asset_step:
        return None
    keys = list(pipes.asset_keys)
    if len(keys) == 1:
        return keys[0]
    wanted = pipes.extras.get("asset_key") if pipes.extras else None
    if wanted in keys:
        return wanted
    named = [k for k in keys if k.split("/")[-1] == "checkpoint"]
    return named[0] if len(named) == 1 else None


def materialization_metadata(trainer: Trainer, wall_s: float) -> dict[str, Any]:
    p, r = trainer.progress, trainer.result
    meta: dict[str, Any] = {
        "iterations": p.iteration,
        "train_iters": trainer.sched.train_iters,
        "consumed_samples": p.consumed_train_samples,
        "consumed_tokens": p.consumed_train_samples * trainer.args.seq_length,
        "parameters": trainer.params,
        "wall_time_s": round(wall_s, 3),
    }
    if r.first_loss is not None:
        meta["first_loss"] = r.first_loss
    if r.last_loss is not None:
        meta["final_loss"] = r.last_loss
    if r.last_validation_loss is not None:
        meta["final_validation_loss"] = r.last_validation_loss
    if r.resumed_from is not None:
        meta["resumed_from_iteration"] = r.resumed_from
    if r.checkpoint is not None:
        meta["checkpoint_dir"] = {"raw_value": str(r.checkpoint), "type": "path"}
        meta["checkpoint_sha256"] = {"raw_value": checkpoint_sha256(r.checkpoint), "type": "json"}
    return meta


def run(argv: Sequence[str], pipes=None) -> int:
    wall0 = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(list(argv))  # TrainerError on an unknown or malformed flag
    problems, notices = check_args(args)
    if problems:
        raise TrainerError("; ".join(problems))
    sched = schedule_of(args)
    prefixes, weights = parse_data_path(args.data_path)
    on_disk = [p for p in prefixes if not is_s3_url(p)]
    missing = missing_prefixes(on_disk)
    if missing:
        raise TrainerError("--data-path: no shard at " + ", ".join(f"{m} (.bin/.idx)" for m in missing))
    local, damaged = local_prefixes(args, prefixes)  # s3:// prefixes: .idx, manifest and vocab cached, checked
    damaged += [p for prefix in on_disk for p in shard_problems(prefix, manifest_required=False)]
    if damaged:
        raise TrainerError("--data-path: refusing shards that do not match their index or manifest: " + "; ".join(damaged))
    notices += [f"no {ArtifactLayout.SHARD_MANIFEST} beside {p}: checked against its index only, not against recorded sha256s"
                for p in on_disk if not has_manifest(p)]
    vocab = resolve_vocab(args, [local[p] for p in prefixes])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != 1:
        raise TrainerError(f"WORLD_SIZE={world}: the CPU trainer is one process (cluster.use_torchrun: false)")

    def emit(line: str) -> None:
        # To the log only, as Megatron prints: the compute resource streams the log into Dagster, so a line
        # also sent through Pipes would be shown twice.
        print(line, flush=True)

    for notice in notices:
        emit(f"NOTICE: {notice}")

    stack = contextlib.ExitStack()
    if args.save:
        stack.enter_context(writer_lock(args.save))
        for stale in sweep_staging(args.save):
            emit(f"NOTICE: removed {stale}, left by a save that did not finish")
    with stack:
        return _train(args, sched, vocab, prefixes, weights, local, emit, pipes, wall0)


def _train(args, sched, vocab, prefixes, weights, local, emit, pipes, wall0: float) -> int:
    """Datasets, model, resume, the loop, the final evaluation, and the report to Dagster Pipes."""
    import torch
    import torch.distributed as dist

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Transformer Engine and Apex are not installed"
        from megatron.core import parallel_state

    install_cpu_shims()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="cpu-pretrain-rdzv-") as rdzv:
        dist.init_process_group("gloo", init_method=f"file://{rdzv}/store", rank=0, world_size=1)
        try:
            parallel_state.initialize_model_parallel(1, 1)
            cache_root = args.data_cache_path or (Path(args.save) / ArtifactLayout.RUN_DATA_CACHE if args.save else Path(rdzv) / "cache")
            emit("> building train, validation, and test datasets ...")
            data_notices: list[str] = []
            datasets = build_datasets(args, vocab, (prefixes, weights), sched, Path(cache_root), data_notices, local)
            for notice in data_notices:
                emit(f"NOTICE: {notice}")
            emit(f" > padded vocab (size: {vocab.vocab_size}) with "
                 f"{padded_vocab_size(vocab.vocab_size, args.make_vocab_size_divisible_by) - vocab.vocab_size} dummy tokens "
                 f"(new size: {padded_vocab_size(vocab.vocab_size, args.make_vocab_size_divisible_by)})")
            trainer = Trainer(args, sched, vocab, datasets, emit)
            emit(f" > number of parameters on (tensor, pipeline) model parallel rank (0, 0): {trainer.params}")
            trainer.load()
            emit(f"[before the start of training step] datetime: {now():%Y-%m-%d %H:%M:%S}")
            if trainer.train():  # Megatron skips the final evaluation when it exits on time
                emit(f"[after training is done] datetime: {now():%Y-%m-%d %H:%M:%S}")
                if trainer.valid_ds is not None:
                    trainer.evaluate(trainer.valid_ds, f"iteration {trainer.progress.iteration} on validation set")
                if trainer.test_ds is not None:
                    trainer.evaluate(trainer.test_ds, f"iteration {trainer.progress.iteration} on test set")
        finally:
            parallel_state.destroy_model_parallel()
            dist.destroy_process_group()
    if pipes is not None:
        metadata = materialization_metadata(trainer, time.monotonic() - wall0)
        if pipes.is_asset_step:
            pipes.report_asset_materialization(metadata=metadata, asset_key=_asset_key(pipes))
    return 0


def _pipes_context():
    """dagster_pipes' context when launched under Pipes (its bootstrap variable is set), else None."""
    from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes

    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        return None
    return open_dagster_pipes()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        with contextlib.ExitStack() as stack:
            pipes = _pipes_context()
            if pipes is not None:
                stack.enter_context(pipes)  # an exception leaving this block is reported to Dagster
            return run(argv, pipes)
    except TrainerError as err:
        print(f"cpu trainer: error: {err}", file=sys.stderr, flush=True)
        return 2
