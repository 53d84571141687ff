"""The training loop: Megatron's train step, evaluation, log lines and checkpoint save/resume on one CPU process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mm_assets.shards.vocab import ShardVocab
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.train.cpu import TrainerError
from mm_assets.train.cpu.args import Schedule
from mm_assets.train.cpu.checkpoint import (
    CHECKPOINT_VERSION,
    MODEL_SHAPE_ARGS,
    checkpoint_dir,
    load_checkpoint,
    read_tracker,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mm_assets.train.cpu.data import BATCH_KEYS, causal_mask, padded_vocab_size
from mm_assets.train.cpu.model import build_model, build_optimizer, flops_per_batch
from mm_assets.train.megatron_log.events import LM_LOSS
from mm_assets.train.megatron_log.format import (
    format_loaded_checkpoint,
    format_saved_checkpoint,
    format_saving_checkpoint,
    format_time,
    format_training_line,
    format_validation_block,
)


@dataclass
class Progress:
    iteration: int = 0
    consumed_train_samples: int = 0
    consumed_valid_samples: int = 0
    flops_so_far: float = 0.0


@dataclass
class Interval:
    """Megatron's total_loss_dict between two log lines."""

    loss_sum: float = 0.0
    advanced: int = 0
    skipped: int = 0
    nan: int = 0
    seconds: float = 0.0

    def reset(self) -> None:
        self.loss_sum, self.advanced, self.skipped, self.nan, self.seconds = 0.0, 0, 0, 0, 0.0


@dataclass
class RunResult:
    first_loss: float | None = None
    last_loss: float | None = None
    last_validation_loss: float | None = None
    resumed_from: int | None = None
    checkpoint: Path | None = None
    nonfinite_at: int | None = None  # the latest iteration whose loss was NaN or infinite


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # printed without a zone, like Megatron


class Trainer:
    def __init__(self, args, sched: Schedule, vocab: ShardVocab, datasets, emit: Callable[[str], None]) -> None:
        import torch

        self.args, self.sched, self.vocab, self.emit = args, sched, vocab, emit
        self.train_ds, self.valid_ds, self.test_ds = datasets
        self.gbs = args.global_batch_size or args.micro_batch_size
        self.num_micro = self.gbs // args.micro_batch_size
        self.vocab_padded = padded_vocab_size(vocab.vocab_size, args.make_vocab_size_divisible_by)
        self.model = build_model(args, self.vocab_padded)
        self.optimizer, self.scheduler = build_optimizer(args, self.model, sched)
        self.mask = causal_mask(args.seq_length)
        self.flops = flops_per_batch(args, self.gbs, self.vocab_padded)
        self.progress = Progress()
        self.result = RunResult()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.torch = torch

    # - batches -

    def _micro_batches(self, dataset, start: int, count: int) -> list[dict]:
        mbs = self.args.micro_batch_size
        n = len(dataset)
        out = []
        for m in range(count):
            samples = [dataset[(start + m * mbs + i) % n] for i in range(mbs)]
            batch = {k: self.torch.stack([s[k] for s in samples]) for k in BATCH_KEYS}
            top = int(batch["tokens"].max())
            if top >= self.vocab.vocab_size:
                raise TrainerError(f"token id {top} in the data is outside --vocab-size {self.vocab.vocab_size}")
            out.append(batch)
        return out

    def _loss(self, batch) -> tuple[Any, Any]:
        """(sum of per-token losses under the loss mask, number of such tokens) for one micro-batch."""
        per_token = self.model(batch["tokens"], batch["position_ids"], self.mask, labels=batch["labels"])
        mask = batch["loss_mask"].float()
        return (per_token.float() * mask).sum(), mask.sum()

    # - one iteration -

    def train_step(self) -> tuple[float, float | None, bool]:
        """(loss, grad norm, skipped) for one global batch: Megatron's per-micro-batch token average, averaged
        over micro-batches for the gradient; the reported loss is the global token average."""
        torch = self.torch
        p = self.progress
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens = 0.0, 0.0
        for batch in self._micro_batches(self.train_ds, p.consumed_train_samples, self.num_micro):
            loss_sum, count = self._loss(batch)
            (loss_sum / count.clamp(min=1) / self.num_micro).backward()
            total += float(loss_sum.detach())
            tokens += float(count)
        loss = total / max(tokens, 1.0)
        params = [q for q in self.model.parameters() if q.grad is not None]
        if self.args.clip_grad > 0:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.args.clip_grad))
        else:
            grad_norm = float(torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in params])))
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if not skipped:
            self.optimizer.step()
            self.scheduler.step(increment=self.gbs)
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm, skipped

    def evaluate(self, dataset, label: str) -> float | None:
        """`evaluate_and_print_results`: --eval-iters global batches, token-averaged loss."""
        if dataset is None or self.args.eval_iters == 0:
            return None
        self.model.eval()
        total, tokens = 0.0, 0.0
        start = self.progress.consumed_valid_samples if dataset is self.valid_ds else 0
        with self.torch.no_grad():
            for batch in self._micro_batches(dataset, start, self.args.eval_iters * self.num_micro):
                loss_sum, count = self._loss(batch)
                total += float(loss_sum)
                tokens += float(count)
        self.model.train()
        if dataset is self.valid_ds:
            self.progress.consumed_valid_samples += self.args.eval_iters * self.gbs
        loss = total / max(tokens, 1.0)
        rule, line, _ = format_validation_block(label, [(LM_LOSS, loss)])
        self.emit(rule)
        self.emit(line)
        self.emit(rule)
        self.result.last_validation_loss = loss
        return loss

    # - checkpoints -

    def state_dict(self) -> dict[str, Any]:
        p = self.progress
        args = {k: v for k, v in vars(self.args).items() if isinstance(v, (int, float, str, bool, list, type(None)))}
        args.update(padded_vocab_size=self.vocab_padded, consumed_train_samples=p.consumed_train_samples,
                    consumed_valid_samples=p.consumed_valid_samples)
        return {
            "checkpoint_version": CHECKPOINT_VERSION,
            "iteration": p.iteration,
            "args": args,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "opt_param_scheduler": self.scheduler.state_dict(),
            "rng_state": [rng_state()],
            "num_floating_point_operations_so_far": p.flops_so_far,
            "trainer": "mm_assets.train.cpu",
        }

    def save(self) -> None:
        """Save and track the iteration, unless its loss was not finite: such weights are never published."""
        if not self.args.save:
            return
        it = self.progress.iteration
        if self.result.nonfinite_at == it:
            latest = read_tracker(self.args.save)
            self.emit(f"WARNING: not saving checkpoint at iteration {it:8d}: its loss is not finite; the latest "
                      f"checkpoint stays {'iteration %d' % latest if latest is not None else 'none'}")
            return
        self.emit(format_saving_checkpoint(now(), it, self.args.save))
        self.result.checkpoint = save_checkpoint(self.args.save, it, self.state_dict())
        self.emit(format_saved_checkpoint(now(), it, self.args.save))

    def load(self) -> None:
        """Resume from --load's latest checkpoint: model, optimizer, schedule position, counters, RNG."""
        root = self.args.load
        if not root:
            return
        iteration = read_tracker(root)
        if iteration is None:
            self.emit(f"WARNING: could not find the metadata file {Path(root) / ArtifactLayout.CHECKPOINT_TRACKER}")
            self.emit("    will not load any checkpoints and will start from random")
            return
        self.emit(f" loading checkpoint from {root} at iteration {iteration}")
        state = load_checkpoint(root, iteration)
        saved = state.get("args", {})
        mine = {**vars(self.args), "padded_vocab_size": self.vocab_padded,
                "ffn_hidden_size": self.args.ffn_hidden_size or 4 * self.args.hidden_size,
                "max_position_embeddings": self.args.max_position_embeddings or self.args.seq_length}
        saved = {**saved, "ffn_hidden_size": saved.get("ffn_hidden_size") or 4 * saved.get("hidden_size", 0),
                 "max_position_embeddings": saved.get("max_position_embeddings") or saved.get("seq_length")}
        differ = [f"--{k.replace('_', '-')} {saved.get(k)!r} in the checkpoint, {mine[k]!r} now"
                  for k in MODEL_SHAPE_ARGS if k in saved and saved.get(k) != mine[k]]
        if differ:
            raise TrainerError(f"{checkpoint_dir(root, iteration)} is a different model: " + "; ".join(differ))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        sched_state = state["opt_param_scheduler"]
        changed = [k for k in ("max_lr", "min_lr", "lr_warmup_steps", "lr_decay_steps", "lr_decay_style")
                   if sched_state.get(k) != getattr(self.scheduler, k)]
        if changed:
            self.emit(f" > LR schedule {', '.join(changed)} differ from the checkpoint: using this run's")
        self.scheduler.num_steps = int(sched_state["num_steps"])
        self.scheduler.step(0)
        set_rng_state(state["rng_state"][0])
        p = self.progress
        p.iteration = int(state["iteration"])
        p.consumed_train_samples = int(saved.get("consumed_train_samples", p.iteration * self.gbs))
        p.consumed_valid_samples = int(saved.get("consumed_valid_samples", 0))
        p.flops_so_far = float(state.get("num_floating_point_operations_so_far", 0.0))
        self.result.resumed_from = p.iteration
        self.result.checkpoint = checkpoint_dir(root, iteration)
        self.emit(format_loaded_checkpoint(root, iteration))

    # - the loop -

    def train(self) -> bool:
        """Megatron's train(): False when --exit-duration-in-mins ended it early (after a checkpoint)."""
        args, p = self.args, self.progress
        interval = Interval()
        first = True
        start = time.monotonic()
        saved_at = p.iteration if self.result.resumed_from is not None else None
        while p.iteration < self.sched.train_iters:
            t0 = time.perf_counter()
            loss, grad_norm, skipped = self.train_step()
            interval.seconds += time.perf_counter() - t0
            p.iteration += 1
            p.consumed_train_samples += self.gbs
            p.flops_so_far += self.flops
            if not math.isfinite(loss):
                self.result.nonfinite_at = p.iteration
            if skipped:
                interval.skipped += 1
                interval.nan += int(not math.isfinite(loss))
            else:
                interval.advanced += 1
                interval.loss_sum += loss
                if self.result.first_loss is None:
                    self.result.first_loss = loss
                self.result.last_loss = loss
            if p.iteration % args.log_interval == 0 or first:
                self._log(interval, grad_norm, reset=not first)
                first = False
            if args.eval_interval and p.iteration % args.eval_interval == 0:
                self.evaluate(self.valid_ds, f"iteration {p.iteration}")
            if args.save_interval and p.iteration % args.save_interval == 0:
                self.save()
                saved_at = p.iteration
            if args.exit_duration_in_mins is not None and (time.monotonic() - start) / 60 > args.exit_duration_in_mins:
                if saved_at != p.iteration:
                    self.save()
                self.emit(f"[{format_time(now())}] exiting program after "
                          f"{(time.monotonic() - start) / 60} minutes")
                return False
        if args.save and p.iteration and saved_at != p.iteration:
            self.save()
        return True

    def _log(self, interval: Interval, grad_norm: float | None, *, reset: bool) -> None:
        iters = interval.advanced + interval.skipped
        per_iter = interval.seconds / max(iters, 1)
        avg = interval.loss_sum / max(interval.advanced, 1)
        line = format_training_line(
            moment=now(),
            iteration=self.progress.iteration,
            train_iters=self.sched.train_iters,
            consumed_samples=self.progress.consumed_train_samples,
            elapsed_ms=per_iter * 1000.0,
            tflops_per_gpu=self.flops / (per_iter * 1e12) if self.args.log_throughput and per_iter > 0 else None,
            learning_rate=self.optimizer.param_groups[0]["lr"],
            global_batch_size=self.gbs,
            losses=[(LM_LOSS, avg)],
            loss_scale=1.0,
            grad_norm=grad_norm if grad_norm is not None and math.isfinite(grad_norm) else None,
            skipped_iterations=interval.skipped,
            nan_iterations=interval.nan,
        )
        self.emit(line)
        if reset:
            interval.reset()
