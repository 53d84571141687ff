"""The generated rules: the committed deploy/ files are what the config generates, promtool accepts them, every
rule fires on its case and stays silent on its near-misses, and those cases catch broken rules (an always- or
never-firing expression, a missing freshness guard, the reference's own expressions)."""

import copy
import shutil
import subprocess
import sys

import pytest
import yaml
from monitoring_stack import require_prometheus

from mm_assets.config.base import DEFAULT_CONFIG, PROJECT_ROOT
from mm_assets.config.pipeline import load_config
from mm_assets.monitor.config import MonitoringConfig
from mm_assets.monitor.deploy import ALERT_RULES, RULE_TESTS, deploy_files, drifted, write_deploy
from mm_assets.monitor.rule_tests import cases
from mm_assets.monitor.rules import alert_rules

DEPLOY = PROJECT_ROOT / "deploy"
PROM = DEPLOY / "prometheus"


def _promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    require_prometheus()
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_committed_files_are_what_the_config_generates():
    stale = drifted(load_config(DEFAULT_CONFIG).monitoring, DEPLOY)
    assert not stale, f"{stale} differ from configs/pipeline.yaml: run `mm monitor render` and commit"


def test_mm_monitor_render_check_reports_drift(tmp_path):
    cli = [sys.executable, "-m", "mm_assets.cli", "monitor", "render", "--out", str(tmp_path)]
    assert subprocess.run([*cli, "--check"], capture_output=True, timeout=120).returncode == 1
    assert subprocess.run(cli, capture_output=True, timeout=120).returncode == 0
    assert subprocess.run([*cli, "--check"], capture_output=True, timeout=120).returncode == 0


def test_promtool_checks_and_tests_the_committed_rules():
    check = _promtool("check", "rules", str(PROM / "alert_rules.yml"), str(PROM / "recording_rules.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    test = _promtool("test", "rules", str(PROM / "alert_rules_test.yml"))
    assert test.returncode == 0, test.stdout + test.stderr
    print("\n" + check.stdout + test.stdout)


def test_every_rule_has_a_firing_case_and_a_near_miss():
    cfg = load_config(DEFAULT_CONFIG).monitoring
    all_cases = cases(cfg)
    for rule in alert_rules(cfg):
        mine = [c for c in all_cases if c.alert == rule.alert]
        assert any(c.fires for c in mine) and any(not c.fires for c in mine), rule.alert


def _mutated(tmp_path, rules_doc: dict, alert: str) -> subprocess.CompletedProcess:
    """promtool test of the committed cases of `alert` against other rules."""
    tests = yaml.safe_load((PROM / "alert_rules_test.yml").read_text())
    tests["tests"] = [t for t in tests["tests"] if t["name"].startswith(f"{alert}: ")]
    (tmp_path / "alert_rules_test.yml").write_text(yaml.safe_dump(tests))
    shutil.copy(PROM / "recording_rules.yml", tmp_path / "recording_rules.yml")
    (tmp_path / "alert_rules.yml").write_text(yaml.safe_dump(rules_doc))
    return _promtool("test", "rules", "alert_rules_test.yml", cwd=tmp_path)


RULES = yaml.safe_load((PROM / "alert_rules.yml").read_text())
NAMES = [r["alert"] for r in RULES["groups"][0]["rules"]]


@pytest.mark.parametrize("name", NAMES)
def test_the_cases_catch_a_rule_that_always_or_never_fires(tmp_path, name):
    for expr in ("vector(1)", "vector(1) > 2"):
        doc = copy.deepcopy(RULES)
        next(r for r in doc["groups"][0]["rules"] if r["alert"] == name)["expr"] = expr
        assert _mutated(tmp_path, doc, name).returncode != 0, f"{name} with expr {expr!r} passed its tests"


# (The window rules, stagnation and throughput, are also stopped by their sample guards: no pushes, no samples.)
@pytest.mark.parametrize("name", ["GradNormExplosion", "GpuUtilizationTooLow"])
def test_without_the_freshness_guard_a_near_miss_fires(tmp_path, name):
    doc = copy.deepcopy(RULES)
    rule = next(r for r in doc["groups"][0]["rules"] if r["alert"] == name)
    rule["expr"] = rule["expr"].split("\nand on (experiment) (time()")[0]
    result = _mutated(tmp_path, doc, name)
    assert result.returncode != 0 and "near miss" in result.stdout + result.stderr


def test_the_references_rules_misfire_on_the_near_misses(tmp_path):
    """§B.5's three expressions (names only made valid) fail our must-not-fire cases."""
    reference = {
        "TrainingLossStagnation": "abs(avg_over_time(llm_pretrain_training_loss[1h]) - "
                                  "avg_over_time(llm_pretrain_training_loss[1h] offset 1h)) < 0.001",
        "GpuUtilizationTooLow": "avg by (node_id) (llm_pretrain_hardware_gpu_utilization) < 50",
        "GradNormExplosion": "llm_pretrain_training_grad_norm > 10.0",
    }
    for name, expr in reference.items():
        doc = copy.deepcopy(RULES)
        next(r for r in doc["groups"][0]["rules"] if r["alert"] == name)["expr"] = expr
        result = _mutated(tmp_path, doc, name)
        assert result.returncode != 0 and "near miss" in result.stdout + result.stderr, f"the reference's {name} passed every case"


def test_dotted_reference_names_are_invalid_in_prometheus(tmp_path):
    (tmp_path / "r.yml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "X", "expr": "llm_pretrain.training.loss > 1"}]}]}))
    result = _promtool("check", "rules", str(tmp_path / "r.yml"))
    assert result.returncode != 0


def test_another_config_generates_rules_and_tests_that_pass(tmp_path):
    """The generator is not tuned to the shipped numbers: short windows, other thresholds, no MFU floor."""
    cfg = MonitoringConfig.model_validate({"pushgateway": {"training_job": "other_job"}, "signals": {
        "grad_norm_explosion": {"threshold": 3.5, "alert": {"for": "90s"}},
        "loss_stagnation": {"min_delta": 0.05, "alert": {"window": "10m", "min_samples": 3, "for": "5m"}},
        "gpu_utilization_low": {"threshold_percent": 30},
        "throughput": {"max_drop": 0.25, "mfu_floor": None,
                       "alert": {"window": "5m", "baseline": "30m", "for": "2m", "min_samples": 3}},
        "skipped_iterations": {"max_skipped": 0, "alert": {"window": "15m"}},
        "metrics_stale": {"after": "2m", "alert": {"for": "1m"}},
        "pushgateway_down": {"alert": {"for": "0s"}}}})
    write_deploy(cfg, tmp_path)
    assert "TrainingMfuLow" not in deploy_files(cfg)[ALERT_RULES]
    result = _promtool("test", "rules", str(tmp_path / RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
