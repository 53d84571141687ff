"""The alert rules' conditions over a whole run's JSONL log (reference §B.4 records), for the training_log
asset checks. Each check is a small function returning a `Verdict`; checks/train.py wraps them.

Where the rules look at time windows, these look at iteration windows: a run's log is complete, so "the last
hour against the hour before" becomes "each window of N iterations against the one before".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mm_assets.monitor.config import SignalsConfig
from mm_assets.monitor.run_spec import RunSpec

Record = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    severity: str  # WARN | ERROR, from the config
    metadata: dict[str, Any] = field(default_factory=dict)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def loss_stagnation(records: Sequence[Record], signals: SignalsConfig) -> Verdict:
    """Fails when the mean loss of a window of iterations differs from the previous window's by < min_delta
    (both windows holding min_records finite losses)."""
    s = signals.loss_stagnation
    size, need = s.check.window_iterations, s.check.min_records
    windows: dict[int, list[float]] = {}
    for r in records:
        if _finite(r.get("loss")):
            windows.setdefault((r["iteration"] - 1) // size, []).append(r["loss"])
    stagnant, compared = [], 0
    for k in sorted(windows):
        before, now = windows.get(k - 1, []), windows[k]
        if len(before) < need or len(now) < need:
            continue
        compared += 1
        delta = abs(statistics.fmean(now) - statistics.fmean(before))
        if delta < s.min_delta:
            stagnant.append(f"{k * size + 1}-{(k + 1) * size}: |Δ mean| {delta:.3g}")
    return Verdict(not stagnant, s.check.severity, {
        "window_iterations": size, "windows_compared": compared, "min_delta": s.min_delta,
        "stagnant_windows": "; ".join(stagnant[:10]) or "none",
        "note": "" if compared else f"fewer than two windows of {size} iterations with {need} losses: not judged"})


def grad_norm_explosion(records: Sequence[Record], signals: SignalsConfig) -> Verdict:
    """Fails when any logged interval's grad norm exceeds the threshold (NaN counts as exploded)."""
    s = signals.grad_norm_explosion
    norms = [(r["iteration"], r.get("grad_norm")) for r in records if r.get("grad_norm") is not None]
    above = [(it, g) for it, g in norms if not _finite(g) or g > s.threshold]
    peak = max((g for _, g in norms if _finite(g)), default=0.0)
    return Verdict(not above, s.check.severity, {
        "threshold": s.threshold, "max_grad_norm": peak, "intervals_above": len(above),
        "first_above_at_iteration": above[0][0] if above else -1,
        "above_at": ", ".join(f"{it}: {g:.4g}" for it, g in above[:20]) or "none"})


def skipped_iterations(records: Sequence[Record], skipped: int, signals: SignalsConfig) -> Verdict:
    """Fails when the run skipped more iterations than allowed. `skipped` comes from Megatron's per-interval
    counts (the JSONL keeps the reference's fields only, so the asset passes the parsed total)."""
    s = signals.skipped_iterations
    return Verdict(skipped <= s.max_skipped, s.check.severity,
                   {"skipped_iterations": skipped, "max_skipped": s.max_skipped, "records": len(records)})


def throughput_floor(records: Sequence[Record], spec: RunSpec | None, signals: SignalsConfig) -> Verdict:
    """Fails when the median tokens/s (start-up interval excluded) or the MFU from it is below its floor."""
    s = signals.throughput
    tps = [r["throughput_tps"] for r in records[s.check.skip_records:] if _finite(r.get("throughput_tps"))]
    median = statistics.median(tps) if tps else None
    mfu = spec.mfu(median) if spec is not None and median is not None else None
    problems = []
    if median is not None and s.check.min_tokens_per_s is not None and median < s.check.min_tokens_per_s:
        problems.append(f"median {median:.4g} tokens/s < floor {s.check.min_tokens_per_s:g}")
    if mfu is not None and s.mfu_floor is not None and mfu < s.mfu_floor:
        problems.append(f"MFU {mfu:.2%} < floor {s.mfu_floor:.0%}")
    return Verdict(not problems, s.check.severity, {
        "median_tokens_per_s": median if median is not None else -1.0,
        "mfu": mfu if mfu is not None else -1.0,
        "mfu_basis": (f"{spec.flops_per_token:.4g} FLOPs/token × tokens/s / ({spec.devices} × "
                      f"{spec.peak_flops_per_device:.4g} FLOP/s {spec.device_type})")
        if spec is not None and spec.peak_flops_per_device else "no peak FLOP/s configured for this device: not judged",
        "problems": "; ".join(problems) or "none"})
