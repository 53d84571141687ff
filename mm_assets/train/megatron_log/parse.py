"""One line of a Megatron log → its event (formats and quirks: see the package docstring)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone, tzinfo

from mm_assets.train.megatron_log.events import (
    LM_LOSS,
    CheckpointSaved,
    LogEvent,
    MalformedLine,
    MemoryReport,
    TrainingRecord,
    ValidationRecord,
)

_TS = r"\[(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\]"
_TRAIN_HEAD = re.compile(rf"(?:{_TS}\s*)?iteration\s+(?P<it>\d+)\s*/\s*(?P<total>\d+)\s*\|")
_VALID_HEAD = re.compile(
    r"validation(?P<suffix>-\S+)? loss at iteration (?P<it>\d+)(?: on (?P<set>validation|test) set)?\s*\|"
)
_MEMORY_HEAD = re.compile(r"\[Rank (?P<rank>\d+)\]\s*(?P<label>.*?)\s*memory \(MB\)\s*\|")
_MEMORY_ITER = re.compile(r"after (\d+) iterations")
_SAVING = re.compile(rf"(?:{_TS}\s*)?saving checkpoint at iteration\s+(?P<it>\d+) to (?P<path>.+?)(?: in \S+ format)?$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity)", re.IGNORECASE)


def iso_utc(stamp: str, tz: tzinfo = timezone.utc) -> str:
    """Megatron's bracketed time (naive, in `tz`) as ISO 8601 UTC with a Z."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in stamp else "%Y-%m-%d %H:%M:%S"
    moment = datetime.strptime(stamp, fmt).replace(tzinfo=tz).astimezone(timezone.utc)
    return moment.replace(tzinfo=None).isoformat() + "Z"


def _number(text: str) -> float | None:
    text = text.strip()
    m = _NUMBER.fullmatch(text)
    return float(m.group(0)) if m else None


def _fields(body: str) -> tuple[dict[str, str], list[str]]:
    """'key: value | key: value |' → {key: value}; segments without ': ' are returned apart."""
    out, loose = {}, []
    for segment in body.split("|"):
        segment = segment.strip()
        if not segment:
            continue
        key, sep, value = segment.rpartition(":")
        if not sep or not key.strip():
            loose.append(segment)
            continue
        out[key.strip()] = value.strip()
    return out, loose


_TRAIN_KNOWN = {
    "consumed samples",
    "skipped samples",
    "elapsed time per iteration (ms)",
    "throughput per GPU (TFLOP/s/GPU)",
    "learning rate",
    "global batch size",
    "loss scale",
    "grad norm",
    "num zeros",
    "params norm",
    "number of skipped iterations",
    "number of nan iterations",
    "tokens per second",
    "energy per GPU (J/iter/GPU)",
    "power per GPU (W/GPU)",
}


def parse_line(
    line: str,
    *,
    seq_length: int | None,
    tz: tzinfo = timezone.utc,
    gpu_mem_used_gb: float | None = None,
) -> LogEvent | None:
    """One log line → its record, a MalformedLine, or None for any other output (argument dumps, warnings).

    `seq_length` turns samples into tokens (None leaves consumed_tokens and throughput_tps empty);
    `gpu_mem_used_gb` is the memory to put on a training record (the latest report before it).
    """
    text = line.rstrip("\r\n")
    head = _TRAIN_HEAD.search(text)
    if head is not None:
        return _training(text, head, seq_length=seq_length, tz=tz, gpu_mem_used_gb=gpu_mem_used_gb)
    head = _VALID_HEAD.search(text)
    if head is not None:
        return _validation(text, head)
    head = _MEMORY_HEAD.search(text)
    if head is not None:
        return _memory(text, head)
    head = _SAVING.search(text.rstrip())
    if head is not None:
        stamp = head.group("ts")
        try:
            timestamp = iso_utc(stamp, tz) if stamp else None
        except ValueError:
            return MalformedLine(text, f"unreadable time {stamp!r}")
        return CheckpointSaved(int(head.group("it")), head.group("path").strip(), timestamp)
    return None


def _training(text: str, head: re.Match, *, seq_length, tz, gpu_mem_used_gb) -> TrainingRecord | MalformedLine:
    if not text.rstrip().endswith("|"):
        # Every complete line ends with "... number of nan iterations: N |"; without it the last value may be cut.
        return MalformedLine(text, "training line does not end with '|' (cut off?)")
    body = text[head.end() :]
    if _TRAIN_HEAD.search(body) or _VALID_HEAD.search(body):
        return MalformedLine(text, "two records on one line (interleaved writers?)")
    values, loose = _fields(body)
    numbers: dict[str, float] = {}
    for key, raw in values.items():
        number = _number(raw)
        if number is None:
            if key in _TRAIN_KNOWN:
                return MalformedLine(text, f"{key!r} is not a number: {raw!r}")
            continue
        numbers[key] = number
    if loose:
        return MalformedLine(text, f"unreadable segment {loose[0]!r}")
    if "consumed samples" not in numbers or not math.isfinite(numbers["consumed samples"]):
        return MalformedLine(text, "no 'consumed samples'")
    stamp = head.group("ts")
    try:
        timestamp = iso_utc(stamp, tz) if stamp else None
    except ValueError:
        return MalformedLine(text, f"unreadable time {stamp!r}")

    def integer(key: str, default: int | None = None) -> int | None:
        value = numbers.get(key)
        return default if value is None or not math.isfinite(value) else int(value)

    losses = {k: v for k, v in numbers.items() if k not in _TRAIN_KNOWN}
    skipped, nans = integer("number of skipped iterations", 0), integer("number of nan iterations", 0)
    loss = losses.get(LM_LOSS)
    if loss is not None and (not math.isfinite(loss) or (loss == 0.0 and skipped)):
        loss = None  # 0.0 with skipped iterations is Megatron averaging over no advanced iteration
    consumed = integer("consumed samples")
    batch = integer("global batch size")
    elapsed = numbers.get("elapsed time per iteration (ms)")
    tps = numbers.get("tokens per second")
    if tps is None and seq_length and batch and elapsed and elapsed > 0:
        tps = batch * seq_length / (elapsed / 1000.0)
    return TrainingRecord(
        timestamp=timestamp,
        iteration=int(head.group("it")),
        train_iters=int(head.group("total")),
        consumed_samples=consumed,
        loss=loss,
        grad_norm=numbers.get("grad norm"),
        lr=numbers.get("learning rate"),
        consumed_tokens=consumed * seq_length if seq_length else None,
        throughput_tps=tps,
        gpu_mem_used_gb=gpu_mem_used_gb,
        loss_scale=numbers.get("loss scale"),
        global_batch_size=batch,
        elapsed_ms=elapsed,
        tflops_per_gpu=numbers.get("throughput per GPU (TFLOP/s/GPU)"),
        skipped_iterations=skipped,
        nan_iterations=nans,
        losses=losses,
    )


def _validation(text: str, head: re.Match) -> ValidationRecord | MalformedLine:
    if not text.rstrip().endswith("|"):
        return MalformedLine(text, "validation line does not end with '|' (cut off?)")
    values, loose = _fields(text[head.end() :])
    losses, ppl = {}, {}
    for key, raw in values.items():
        number = _number(raw)
        if number is None:
            return MalformedLine(text, f"{key!r} is not a number: {raw!r}")
        if key.endswith(" value"):
            losses[key[: -len(" value")]] = number
        elif key.endswith(" PPL"):
            ppl[key[: -len(" PPL")]] = number
    if loose or not losses:
        return MalformedLine(text, "validation line without '<loss> value: <number>'")
    suffix = head.group("suffix")
    return ValidationRecord(
        iteration=int(head.group("it")),
        split=head.group("set") or "validation",
        final=head.group("set") is not None,
        name=suffix[1:] if suffix else None,
        losses=losses,
        ppl=ppl,
    )


def _memory(text: str, head: re.Match) -> MemoryReport | MalformedLine:
    values, _ = _fields(text[head.end() :])
    numbers = {k: _number(v) for k, v in values.items()}
    if not numbers or any(v is None for v in numbers.values()):
        return MalformedLine(text, "memory report without numbers")
    label = head.group("label").strip()
    it = _MEMORY_ITER.search(label)
    return MemoryReport(int(head.group("rank")), label, int(it.group(1)) if it else None, numbers)
