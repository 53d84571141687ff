"""The Dagster UI's server on a free loopback port, for tests that ask it questions through GraphQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_shared.utils import find_free_port


def graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@contextmanager
def webserver(workspace: Path, home: Path) -> Iterator[str]:
    """`dagster-webserver` loading `workspace` on the instance in `home` (DAGSTER_HOME); its GraphQL URL."""
    port = find_free_port()
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(exe), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
        cwd=home, env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                graphql(url, "{ version }")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not come up on port {port}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
