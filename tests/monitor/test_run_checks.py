"""The training_log checks' logic on crafted JSONL logs (the reference's records): stagnant, exploding, healthy."""

import json
import math

import pytest

from mm_assets.monitor.config import SignalsConfig
from mm_assets.monitor.run_checks import grad_norm_explosion, loss_stagnation, skipped_iterations, throughput_floor
from mm_assets.monitor.run_spec import RunSpec

SIGNALS = SignalsConfig()  # the shipped defaults: windows of 100 iterations, min_delta 0.001, grad norm 10


def _jsonl(tmp_path, name: str, losses, norms, tps=3.5e6) -> list[dict]:
    """Write the records as a JSONL file the way training_log does, and read them back."""
    lines = [json.dumps({"timestamp": f"2026-11-29T04:{i // 60:02d}:{i % 60:02d}Z", "iteration": 10 * (i + 1),
                         "loss": loss, "grad_norm": norm, "lr": 9.5e-5, "consumed_tokens": 8388608 * (i + 1),
                         "throughput_tps": tps, "gpu_mem_used_gb": 72.5, "loss_scale": 65536.0})
             for i, (loss, norm) in enumerate(zip(losses, norms))]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return [json.loads(line) for line in path.read_text().splitlines()]


def _healthy(n=60):
    return [4.0 * math.exp(-i / 20) + 1.5 for i in range(n)], [0.9 + 0.01 * (i % 5) for i in range(n)]


def test_a_healthy_log_passes_every_check(tmp_path):
    records = _jsonl(tmp_path, "healthy", *_healthy())
    stagnation = loss_stagnation(records, SIGNALS)
    assert stagnation.passed and stagnation.metadata["windows_compared"] == 5
    assert grad_norm_explosion(records, SIGNALS).passed
    assert skipped_iterations(records, 0, SIGNALS).passed
    assert throughput_floor(records, None, SIGNALS).passed


def test_a_stagnant_log_fails_the_stagnation_check_with_its_windows(tmp_path):
    losses, norms = _healthy(30)
    records = _jsonl(tmp_path, "stagnant", losses + [2.0 + 0.0001 * (i % 3) for i in range(30)], norms * 2)
    verdict = loss_stagnation(records, SIGNALS)
    assert not verdict.passed and verdict.severity == "WARN"
    assert verdict.metadata["stagnant_windows"].startswith("401-500: |Δ mean|")
    assert "301-400" not in verdict.metadata["stagnant_windows"]  # that window still fell: it is not flat


def test_stagnation_needs_enough_records_in_both_windows(tmp_path):
    records = _jsonl(tmp_path, "short", [2.0] * 12, [1.0] * 12)  # 120 iterations: the second window has 2 records
    verdict = loss_stagnation(records, SIGNALS)
    assert verdict.passed and verdict.metadata["windows_compared"] == 0 and "not judged" in verdict.metadata["note"]


def test_an_exploding_log_fails_with_error_severity(tmp_path):
    losses, norms = _healthy(20)
    records = _jsonl(tmp_path, "exploding", losses, norms[:12] + [15.0, 48.0, None, 9.0, 120.0, 7.0, 6.0, 5.0])
    verdict = grad_norm_explosion(records, SIGNALS)
    assert not verdict.passed and verdict.severity == "ERROR"
    assert verdict.metadata["first_above_at_iteration"] == 130 and verdict.metadata["intervals_above"] == 3
    assert verdict.metadata["max_grad_norm"] == 120.0


def test_skipped_iterations_above_the_allowance_fail():
    assert skipped_iterations([], 10, SIGNALS).passed
    assert not skipped_iterations([], 11, SIGNALS).passed


@pytest.mark.parametrize("tps, passes", [(3.5e6, True), (1.0e5, False)])
def test_throughput_and_mfu_floor(tmp_path, tps, passes):
    records = _jsonl(tmp_path, "tps", *_healthy(10), tps=tps)
    spec = RunSpec("exp-10b", "10b", 8192, 6.14e10, 256, "h100", 9.89e14)  # 3.5M tok/s -> MFU 85 %
    verdict = throughput_floor(records, spec, SIGNALS)
    assert verdict.passed is passes
    assert verdict.metadata["mfu"] == pytest.approx(tps * 6.14e10 / (256 * 9.89e14))
    floors = SignalsConfig.model_validate({"throughput": {"check": {"min_tokens_per_s": 1.0e6}}})
    assert throughput_floor(records, None, floors).passed is passes  # the tokens/s floor alone
