"""Monitoring fixtures: a webhook receiver, and the real loopback stack (scripts/monitoring/start.sh: Prometheus,
Pushgateway, Alertmanager from Debian's packages) with rules rendered from a test config (1 s scrape and
evaluation, GradNormExplosion without `for`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from monitoring_stack import (
    START,
    STOP,
    Stack,
    free_ports,
    get_json,
    require_prometheus,
    stack_config,
    webhook_receiver,
)


@pytest.fixture
def webhook():
    with webhook_receiver() as receiver:
        yield receiver


def _wait_scraping(stack: Stack, timeout_s: float = 60) -> None:
    """Prometheus applies service discovery at most every 5 s: wait for its first scrape of the Pushgateway."""
    deadline = time.monotonic() + timeout_s
    query = f"{stack.prometheus}/api/v1/query?query=up%7Bjob%3D%22pushgateway%22%7D"
    while time.monotonic() < deadline:
        if any(r["value"][1] == "1" for r in get_json(query)["data"]["result"]):
            return
        time.sleep(0.2)
    pytest.fail(f"Prometheus did not scrape the Pushgateway within {timeout_s} s", pytrace=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The loopback stack started by scripts/monitoring/start.sh, stopped (and purged) by stop.sh."""
    require_prometheus()
    root = tmp_path_factory.mktemp("stack")
    prom, pg, am = free_ports(3)
    with webhook_receiver() as receiver:
        config = stack_config(root, f"http://127.0.0.1:{pg}", receiver.url)
        subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(config), "monitor", "render",
                        "--out", str(root / "deploy")], check=True, capture_output=True, timeout=120)
        env = {**os.environ, "MM_MONITORING_DIR": str(root / "stack"), "MM_PROMETHEUS_PORT": str(prom),
               "MM_PUSHGATEWAY_PORT": str(pg), "MM_ALERTMANAGER_PORT": str(am), "MM_MONITORING_INTERVAL": "1s",
               "MM_ALERTMANAGER_GROUP_WAIT": "1s", "MM_ALERTMANAGER_GROUP_INTERVAL": "1s",
               "MM_ALERT_WEBHOOK_URLS": f"{receiver.url}/alertmanager", "MM_PIPELINE_CONFIG": str(config),
               "MM_MONITORING_RULES_DIR": str(root / "deploy" / "prometheus"), "MM_PYTHON": sys.executable}
        proc = subprocess.run(["bash", str(START)], env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"start.sh failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
        try:
            stack = Stack(root, config, f"http://127.0.0.1:{prom}", f"http://127.0.0.1:{pg}",
                          f"http://127.0.0.1:{am}", receiver)
            _wait_scraping(stack)
            yield stack
        finally:
            subprocess.run(["bash", str(STOP), "--purge"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory):
    """A bare Pushgateway on a free loopback port (its URL); stopped by pid at the end."""
    require_prometheus()
    (port,) = free_ports(1)
    log = tmp_path_factory.mktemp("pushgateway") / "pushgateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            get_json(f"{url}/api/v1/status")
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"the Pushgateway did not start:\n{log.read_text()}", pytrace=False)
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)
