"""Checks on `training_log` that mirror the Prometheus rules over the whole run (mm_assets/monitor/run_checks.py):
loss stagnation, grad-norm explosion, skipped iterations, throughput/MFU below a floor. Severities come from
`monitoring.signals.*.check.severity`; the alert sensor delivers the failures."""

from pathlib import Path

import dagster as dg

from mm_assets.monitor import run_checks
from mm_assets.monitor.run_spec import run_spec
from mm_assets.train.assets import LOG_JSONL, blend_vocab, load_jsonl, read_run, training_log
from mm_assets.train.blend_assets import experiment_for
from mm_assets.train.megatron_log import parse_log
from resources.config import PipelineConfigResource


def _result(verdict: run_checks.Verdict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=verdict.passed, severity=dg.AssetCheckSeverity(verdict.severity),
                               metadata=verdict.metadata)


def _records(context, pipeline: PipelineConfigResource):
    cfg, exp, _ = experiment_for(context, pipeline)
    return cfg, exp, load_jsonl(exp.run_dir / LOG_JSONL)


@dg.asset_check(asset=training_log, description="The mean loss keeps moving from one window of iterations to the next.")
def loss_not_stagnant(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    cfg, _, records = _records(context, pipeline)
    return _result(run_checks.loss_stagnation(records, cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="No logged grad norm above monitoring.signals.grad_norm_explosion.threshold.")
def grad_norm_bounded(context: dg.AssetCheckExecutionContext, pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    cfg, _, records = _records(context, pipeline)
    return _result(run_checks.grad_norm_explosion(records, cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="Skipped iterations (loss-scale overflow, NaN) within the allowed count.")
def few_skipped_iterations(context: dg.AssetCheckExecutionContext,
                           pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    cfg, exp, records = _records(context, pipeline)
    # The reference's JSONL has no skip counts: they come from Megatron's log lines.
    with open(Path(read_run(exp)["log"]), encoding="utf-8", errors="replace") as f:
        skipped = sum(r.skipped_iterations for r in parse_log(f, seq_length=exp.training.model.seq_length).training)
    return _result(run_checks.skipped_iterations(records, skipped, cfg.monitoring.signals))


@dg.asset_check(asset=training_log, description="Median tokens/s and the MFU from it above their floors.")
def throughput_above_floor(context: dg.AssetCheckExecutionContext,
                           pipeline: PipelineConfigResource) -> dg.AssetCheckResult:
    cfg, exp, records = _records(context, pipeline)
    spec = run_spec(exp, blend_vocab(exp).vocab_size, cfg.monitoring.peak_flops_per_device)
    return _result(run_checks.throughput_floor(records, spec, cfg.monitoring.signals))


TRAINING_LOG_CHECKS = [loss_not_stagnant, grad_norm_bounded, few_skipped_iterations, throughput_above_floor]
