"""Holding SIGINT/SIGTERM across a critical section (e.g. between sbatch and learning the job id, so a
terminated Dagster run never leaves a queued job that nobody will cancel)."""

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


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
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signo, _frame: received.append(signo)) for s in signals}
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
