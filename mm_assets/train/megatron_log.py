"""Megatron's text log, both ways: the lines its `training_log` prints, and their conversion to the reference's
JSON Lines (§B.4), in batch or while the log is still being written.

Megatron writes no JSON logs (DESIGN.md §6). The formats follow NVIDIA/Megatron-LM main (d98e8a64, 2026-08-22):

    training_log (training.py):
     [2026-11-29 04:00:00.123456] iteration      100/    1000 | consumed samples:         3200 |
      elapsed time per iteration (ms): 81.2 | throughput per GPU (TFLOP/s/GPU): 0.0 |
      learning rate: 9.500000E-05 | global batch size:    32 | lm loss: 2.854000E+00 | loss scale: 1.0 |
      grad norm: 0.980 | number of skipped iterations:   0 | number of nan iterations:   0 |
    evaluate_and_print_results (between two lines of dashes):
     validation loss at iteration 100 | lm loss value: 2.854000E+00 | lm loss PPL: 1.735917E+01 |
    report_memory (utils):
     [Rank 0] (after 100 iterations) memory (MB) | allocated: 1.0 | max allocated: 2.0 | reserved: 3.0 | ...
    save_checkpoint (checkpointing.py):
     [2026-11-29 04:00:00.123456] saving checkpoint at iteration     100 to /ckpt in torch format

(one training line per log interval, on one physical line). Older Megatron prints the time without
microseconds; both parse. Quirks the parser absorbs: a loss that is NaN, or an interval whose iterations were
all skipped, is left out of the line (`avg >= 0` fails) or printed as 0 — both become `loss: null`; the time is
the node's local time without a zone (`tz` says which; our CPU trainer prints UTC); GPU memory is printed only
by separate report lines (iterations 1 and 2, and every `--log-memory-interval`), so `gpu_mem_used_gb` is the
latest report printed before the record, or None.

Pure functions over text, plus `LogFollower` (reads what was appended to a file since the last call) and
`convert_log` (whole file → JSONL, written atomically).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Union

from mm_assets.paths import atomic_write_text

# The reference's record (§B.4), field for field and in its order: the JSONL carries exactly these keys.
JSONL_FIELDS = (
    "timestamp",
    "iteration",
    "loss",
    "grad_norm",
    "lr",
    "consumed_tokens",
    "throughput_tps",
    "gpu_mem_used_gb",
    "loss_scale",
)
LM_LOSS = "lm loss"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # Megatron-LM main; older releases: "%Y-%m-%d %H:%M:%S"

_TS = r"\[(?P<ts>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\]"
_TRAIN_HEAD = re.compile(rf"(?:{_TS}\s*)?iteration\s+(?P<it>\d+)\s*/\s*(?P<total>\d+)\s*\|")
_VALID_HEAD = re.compile(
    r"validation(?P<suffix>-\S+)? loss at iteration (?P<it>\d+)(?: on (?P<set>validation|test) set)?\s*\|"
)
_MEMORY_HEAD = re.compile(r"\[Rank (?P<rank>\d+)\]\s*(?P<label>.*?)\s*memory \(MB\)\s*\|")
_MEMORY_ITER = re.compile(r"after (\d+) iterations")
_SAVING = re.compile(rf"(?:{_TS}\s*)?saving checkpoint at iteration\s+(?P<it>\d+) to (?P<path>.+?)(?: in \S+ format)?$")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity)", re.IGNORECASE)


# -- records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingRecord:
    """One `training_log` line. `loss` is the interval's average "lm loss"; None when Megatron left it out."""

    timestamp: str | None  # ISO 8601 UTC ("...Z")
    iteration: int
    train_iters: int
    consumed_samples: int
    loss: float | None
    grad_norm: float | None
    lr: float | None
    consumed_tokens: int | None
    throughput_tps: float | None
    gpu_mem_used_gb: float | None
    loss_scale: float | None
    global_batch_size: int | None
    elapsed_ms: float | None
    tflops_per_gpu: float | None
    skipped_iterations: int
    nan_iterations: int
    losses: dict[str, float] = field(default_factory=dict)  # every loss on the line (MoE aux losses, ...)

    def to_json_dict(self) -> dict[str, Any]:
        """The reference's record: exactly JSONL_FIELDS; NaN and infinities become null (JSON has neither)."""
        return {name: _finite(getattr(self, name)) for name in JSONL_FIELDS}


@dataclass(frozen=True)
class ValidationRecord:
    """One `evaluate_and_print_results` line; kept apart from the training records (it is not a step)."""

    iteration: int
    split: str  # "validation" or "test"
    final: bool  # the end-of-training evaluation ("... on validation set"), not a periodic one
    name: str | None  # the suffix of "validation-<name>" with multiple validation sets
    losses: dict[str, float]
    ppl: dict[str, float]

    @property
    def loss(self) -> float | None:
        return self.losses.get(LM_LOSS)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "split": self.split,
            "final": self.final,
            "name": self.name,
            "loss": _finite(self.loss),
            "ppl": _finite(self.ppl.get(LM_LOSS)),
        }


@dataclass(frozen=True)
class MemoryReport:
    """A `report_memory` line (MB, as printed). `used_gb` is what `gpu_mem_used_gb` takes from it."""

    rank: int
    label: str
    iteration: int | None
    values_mb: dict[str, float]

    @property
    def used_gb(self) -> float | None:
        # Device-wide use when Megatron printed it, else what the caching allocator holds (≈ nvidia-smi).
        for key in ("total device memory used", "reserved", "max reserved", "max allocated", "allocated"):
            if key in self.values_mb:
                return self.values_mb[key] / 1024.0
        return None


@dataclass(frozen=True)
class CheckpointSaved:
    """A `saving checkpoint at iteration N to DIR` line."""

    iteration: int
    path: str
    timestamp: str | None


@dataclass(frozen=True)
class MalformedLine:
    """A line that starts like a Megatron record but does not parse (cut off, interleaved, corrupted)."""

    text: str
    reason: str


LogEvent = Union[TrainingRecord, ValidationRecord, MemoryReport, CheckpointSaved, MalformedLine]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- parsing ---------------------------------------------------------------------------------------------


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


# -- streaming -------------------------------------------------------------------------------------------


@dataclass
class ParseCounts:
    lines: int = 0
    training: int = 0
    validation: int = 0
    memory: int = 0
    checkpoints: int = 0
    malformed: int = 0
    other: int = 0


class MegatronLogParser:
    """Incremental parser: `feed` any chunk of text (lines may be split across chunks), `finish` at the end.

    It keeps the unfinished last line and the latest memory report between calls; nothing else.
    """

    def __init__(self, *, seq_length: int | None, tz: tzinfo = timezone.utc) -> None:
        self.seq_length = seq_length
        self.tz = tz
        self.counts = ParseCounts()
        self.gpu_mem_used_gb: float | None = None
        self._partial = ""

    def feed(self, chunk: str) -> list[LogEvent]:
        """The events of every line completed by `chunk`."""
        text = self._partial + chunk
        *lines, self._partial = re.split(r"\r?\n", text)
        return [e for e in map(self._line, lines) if e is not None]

    def finish(self) -> list[LogEvent]:
        """The last line, if the text did not end with a newline (a cut-off record is reported malformed)."""
        rest, self._partial = self._partial, ""
        if not rest.strip():
            return []
        event = self._line(rest)
        return [event] if event is not None else []

    def _line(self, line: str) -> LogEvent | None:
        c = self.counts
        c.lines += 1
        event = parse_line(line, seq_length=self.seq_length, tz=self.tz, gpu_mem_used_gb=self.gpu_mem_used_gb)
        if event is None:
            c.other += 1
        elif isinstance(event, TrainingRecord):
            c.training += 1
        elif isinstance(event, ValidationRecord):
            c.validation += 1
        elif isinstance(event, MemoryReport):
            c.memory += 1
            self.gpu_mem_used_gb = event.used_gb
        elif isinstance(event, CheckpointSaved):
            c.checkpoints += 1
        else:
            c.malformed += 1
        return event


@dataclass(frozen=True)
class ParsedLog:
    """Everything a log said, by kind, with the parser's counts."""

    training: list[TrainingRecord]
    validation: list[ValidationRecord]
    memory: list[MemoryReport]
    checkpoints: list[CheckpointSaved]
    malformed: list[MalformedLine]
    counts: ParseCounts


def split_events(events: Iterable[LogEvent], counts: ParseCounts) -> ParsedLog:
    kinds: dict[type, list] = {TrainingRecord: [], ValidationRecord: [], MemoryReport: [], CheckpointSaved: [],
                               MalformedLine: []}
    for event in events:
        kinds[type(event)].append(event)
    return ParsedLog(kinds[TrainingRecord], kinds[ValidationRecord], kinds[MemoryReport], kinds[CheckpointSaved],
                     kinds[MalformedLine], counts)


def parse_log(text: str | Iterable[str], *, seq_length: int | None, tz: tzinfo = timezone.utc) -> ParsedLog:
    """A whole log: one string, or an iterable of lines (with or without their newlines, like a file object or
    `str.splitlines()`). For arbitrary chunks, use MegatronLogParser."""
    parser = MegatronLogParser(seq_length=seq_length, tz=tz)
    events: list[LogEvent] = []
    if isinstance(text, str):
        events += parser.feed(text)
    else:
        for line in text:
            events += parser.feed(line if line.endswith("\n") else line + "\n")
    events += parser.finish()
    return split_events(events, parser.counts)


class LogFollower:
    """Reads a log that is still being written: each `poll` returns the events of the lines appended since the
    last one. A half-written last line waits for its newline; a file that shrank (rotated, rewritten) is read
    again from the start. Bytes are decoded as UTF-8 incrementally (a character split across reads is kept)."""

    def __init__(self, path: str | Path, *, seq_length: int | None, tz: tzinfo = timezone.utc) -> None:
        self.path = Path(path)
        self.seq_length, self.tz = seq_length, tz
        self.offset = 0
        self._restart()

    def _restart(self) -> None:
        self.offset = 0
        self.parser = MegatronLogParser(seq_length=self.seq_length, tz=self.tz)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def poll(self, max_bytes: int = 1 << 24) -> list[LogEvent]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:
            self._restart()
        if size == self.offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read(min(max_bytes, size - self.offset))
        self.offset += len(data)
        return self.parser.feed(self._decoder.decode(data))

    def finish(self) -> list[LogEvent]:
        """At the end of the run: everything left, including a last line without a newline."""
        events = self.poll()
        return events + self.parser.feed(self._decoder.decode(b"", final=True)) + self.parser.finish()


# -- writing ---------------------------------------------------------------------------------------------


def jsonl_lines(records: Iterable[TrainingRecord | ValidationRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.to_json_dict(), allow_nan=False) + "\n"


def write_jsonl(path: str | Path, records: Iterable[TrainingRecord | ValidationRecord]) -> Path:
    """Write the records as JSON Lines, atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(jsonl_lines(records)))
    return path


def convert_log(
    log_path: str | Path,
    jsonl_path: str | Path,
    *,
    seq_length: int,
    tz: tzinfo = timezone.utc,
    validation_path: str | Path | None = None,
) -> ParsedLog:
    """A Megatron log file → the reference's JSONL (training records only), and optionally the validation
    records to `validation_path`. Both written atomically; returns what was parsed (with the counts)."""
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    parsed = parse_log(text, seq_length=seq_length, tz=tz)
    write_jsonl(jsonl_path, parsed.training)
    if validation_path is not None:
        write_jsonl(validation_path, parsed.validation)
    return parsed


# -- formatting (what Megatron prints; used by the CPU trainer) --------------------------------------------


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
