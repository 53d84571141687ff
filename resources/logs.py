"""A job's log file while it is written (LogFollower) and after (tail_lines): how the compute clients stream a
job's output into the Dagster log and quote it in a failure."""

from __future__ import annotations

import os
from pathlib import Path


class LogFollower:
    """New complete lines of a growing file since the last call; the file may not exist yet.

    A trailing line without its newline is held back until it is finished, or returned by `read(final=True)`.
    A file that shrinks (truncated, replaced) is read again from the start.
    """

    def __init__(self, path: str | os.PathLike[str], chunk_bytes: int = 1 << 20):
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self._chunk = chunk_bytes

    def read(self, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self._offset:
                    self._offset, self._partial = 0, b""
                f.seek(self._offset)
                data = b""
                while chunk := f.read(self._chunk):
                    data += chunk
        except FileNotFoundError:
            data = b""
        self._offset += len(data)
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        if final and self._partial:
            pieces.append(self._partial)
            self._partial = b""
        return [p.decode("utf-8", "replace").rstrip("\r") for p in pieces]


def tail_lines(path: str | os.PathLike[str], n: int, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `n` lines of a file (reading at most its last `max_bytes`); [] when it does not exist."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - max_bytes))
            data = f.read()
            cut = size > max_bytes
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if cut and lines:
        lines = lines[1:]  # the first line read is most likely a fragment
    return lines[-n:]
