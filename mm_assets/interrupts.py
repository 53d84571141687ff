"""Ctrl-C and SIGTERM: on the command line one clear line and exit code 128 + signal, never a traceback; and
held across a critical section (`deferred_interrupts`: between sbatch and learning the job id, so a terminated
Dagster run never leaves a queued job that nobody will cancel).

While a run executes, Dagster replaces the SIGINT/SIGTERM handlers with its own (both raise
DagsterExecutionInterruptedError inside the running step, whose cleanup then runs: the crawl kills its
workers, nothing is half-published) and the run ends as failed. Which signal it was is lost there, so a
wakeup fd records every signal number that arrives while `watch_interrupts` is active, whoever handles it;
outside runs our own handler raises Interrupted. No Dagster import here: `mm query` starts without it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPT_ERRORS = {"DagsterExecutionInterruptedError", "KeyboardInterrupt", "Interrupted"}


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM reached `mm`. A KeyboardInterrupt, so cleanup written for Ctrl-C runs for both (and
    `except Exception` does not swallow it)."""

    def __init__(self, signo: int):
        self.signo = signo
        super().__init__(f"interrupted by {signal.Signals(signo).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signo  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


_pipe: list[int] = []  # the wakeup fd's read end while watch_interrupts is active (signals are process-wide)


def _raise(signo: int, _frame) -> None:
    raise Interrupted(signo)


@contextmanager
def watch_interrupts() -> Iterator[None]:
    """Record SIGINT/SIGTERM for the block and raise Interrupted where our handler is in place (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    _pipe.append(read)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(previous_fd)
        _pipe.remove(read)
        os.close(read)
        os.close(write)


def raise_if_interrupted() -> None:
    """Raise Interrupted if a SIGINT/SIGTERM arrived since watching began (even one Dagster handled)."""
    received: list[int] = []
    for fd in _pipe:
        while True:
            try:
                data = os.read(fd, 512)
            except BlockingIOError:
                break
            if not data:
                break
            received += [b for b in data if b in SIGNALS]
    if received:
        raise Interrupted(received[0])


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the block, then deliver the first one to the handler that was installed.

    Signal handlers can only be swapped on the main thread; elsewhere the block runs unprotected (Dagster
    cannot interrupt other threads anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signo, _frame: received.append(signo)) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            handler = previous[received[0]]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL and received[0] == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), received[0])
