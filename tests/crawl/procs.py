"""The process table, read from /proc: which processes a crawl started, and whether they are still running."""

from __future__ import annotations

import time
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, pgrp, ...]: the name before ")" may hold spaces


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in {"Z", "X"}


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (workers, their ffmpeg children, multiprocessing's resource tracker)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[0] not in {"Z", "X"}:
            parents[int(entry.name)] = int(stat[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_until(condition, proc, what: str, timeout_s: float = 90.0) -> None:
    """Poll `condition()`; fail with `proc`'s stderr if that Popen (when given) exits first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            stderr = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"exited with {proc.returncode} before {what}:\n{stderr}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.02)
