"""The lines Megatron-LM prints (training_log, evaluate_and_print_results, checkpointing), for the CPU trainer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Megatron-LM main; older releases: "%Y-%m-%d %H:%M:%S"


def format_time(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def format_training_line(
    *,
    moment: datetime,
    iteration: int,
    train_iters: int,
    consumed_samples: int,
    elapsed_ms: float,
    global_batch_size: int,
    losses: Sequence[tuple[str, float]],
    loss_scale: float,
    grad_norm: float | None,
    skipped_iterations: int,
    nan_iterations: int,
    learning_rate: float | None,
    tflops_per_gpu: float | None = None,
    skipped_samples: int = 0,
    params_norm: float | None = None,
) -> str:
    """The line `training_log` prints (Megatron-LM main), field for field."""
    s = f" [{format_time(moment)}]"
    s += " iteration {:8d}/{:8d} |".format(iteration, train_iters)
    s += " consumed samples: {:12d} |".format(consumed_samples)
    if skipped_samples > 0:
        s += " skipped samples: {:12d} |".format(skipped_samples)
    s += " elapsed time per iteration (ms): {:.1f} |".format(elapsed_ms)
    if tflops_per_gpu is not None:
        s += f" throughput per GPU (TFLOP/s/GPU): {tflops_per_gpu:.1f} |"
    if learning_rate is not None:
        s += f" learning rate: {learning_rate:.6E} |"
    s += f" global batch size: {global_batch_size:5d} |"
    for key, avg in losses:
        if avg >= 0.0:  # Megatron's own test: a NaN average is left out
            s += " {}: {:.6E} |".format(key, avg)
    s += f" loss scale: {loss_scale:.1f} |"
    if grad_norm is not None:
        s += f" grad norm: {grad_norm:.3f} |"
    if params_norm is not None:
        s += f" params norm: {params_norm:.3f} |"
    s += " number of skipped iterations: {:3d} |".format(skipped_iterations)
    s += " number of nan iterations: {:3d} |".format(nan_iterations)
    return s


def format_validation_block(
    prefix: str, losses: Sequence[tuple[str, float]], *, suffix: str = ""
) -> list[str]:
    """`evaluate_and_print_results`: the line between two rules of dashes. `prefix`: "iteration 100",
    "iteration 100 on validation set" or "iteration 100 on test set"."""
    s = f" validation{suffix} loss at {prefix} | "
    for key, value in losses:
        s += "{} value: {:.6E} | ".format(key, value)
        s += "{} PPL: {:.6E} | ".format(key, math.exp(min(20, value)))
    rule = "-" * (len(s) + 1)
    return [rule, s, rule]


def format_saving_checkpoint(moment: datetime, iteration: int, save_dir: str | Path, fmt: str = "torch") -> str:
    return f"[{format_time(moment)}] saving checkpoint at iteration {iteration:7d} to {save_dir} in {fmt} format"


def format_saved_checkpoint(moment: datetime, iteration: int, save_dir: str | Path) -> str:
    return (
        f"  [{format_time(moment)}] successfully saved checkpoint from iteration {int(iteration):7d} to "
        f"{save_dir} [ t 1/1, gtp_remat 1/1, p 1/1 ]"
    )


def format_loaded_checkpoint(load_dir: str | Path, iteration: int) -> str:
    return f"  successfully loaded checkpoint from {load_dir} [ t 1/1, gtp_remat 1/1, p 1/1 ] at iteration {iteration}"
