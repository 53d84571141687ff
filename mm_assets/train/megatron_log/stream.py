"""Whole logs and growing ones: the incremental parser (fed chunks or the lines of a log still being written,
resources/logs.py follows those), `parse_log`, and the JSONL writers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timezone, tzinfo

from mm_assets.train.megatron_log.events import (
    CheckpointSaved,
    LogEvent,
    MalformedLine,
    MemoryReport,
    TrainingRecord,
    ValidationRecord,
)
from mm_assets.train.megatron_log.parse import parse_line


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


def merge_attempts(attempts: Iterable[tuple[ParsedLog, int]]) -> ParsedLog:
    """The logs of a run's successive jobs, in order, as one: (log, the iteration the job resumed from; 0 for a
    fresh start). A job that resumed from iteration N re-ran every iteration after N, so its records replace
    the earlier jobs' from N + 1 on; a job that logged nothing (already at train_iters) changes nothing."""
    training: list[TrainingRecord] = []
    validation: list[ValidationRecord] = []
    memory: list[MemoryReport] = []
    checkpoints: list[CheckpointSaved] = []
    malformed: list[MalformedLine] = []
    counts = ParseCounts()
    for log, resumed_from in attempts:
        training = [r for r in training if r.iteration <= resumed_from] + log.training
        validation = [r for r in validation if r.iteration <= resumed_from] + log.validation
        checkpoints = [c for c in checkpoints if c.iteration <= resumed_from] + log.checkpoints
        memory += log.memory
        malformed += log.malformed
        for name, value in vars(log.counts).items():
            setattr(counts, name, getattr(counts, name) + value)
    return ParsedLog(training, validation, memory, checkpoints, malformed, counts)


# -- writing ---------------------------------------------------------------------------------------------


def jsonl_text(records: Iterable[TrainingRecord | ValidationRecord]) -> str:
    """The records as JSON Lines (the reference's §B.4 fields; a non-finite value is null, never NaN)."""
    return "".join(json.dumps(record.to_json_dict(), allow_nan=False) + "\n" for record in records)
