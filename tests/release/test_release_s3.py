"""A release bundle on the S3 test server (SeaweedFS): published through the store as the asset publishes it
(every file, manifest.json last), verified from its s3:// URL by `mm release verify` and by the checklist's
bundle check; modified and missing objects are named; a wrong secret is one clear line."""

import os
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from mm_assets.release.bundle import publish_bundle
from mm_assets.release.checklist import bundle_complete, collect_evidence
from mm_assets.release.lineage import read_lineage
from mm_assets.release.verify import stored_bundle
from mm_assets.storage.layout import ArtifactLayout
from mm_assets.storage.s3 import S3Store
from mm_assets.storage.s3_access import S3Access

pytestmark = pytest.mark.slow
LAYOUT = ArtifactLayout()


def _verify(url: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mm_assets.cli", "release", "verify", url], env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_bundle_uploaded_to_s3_verifies_there(release_project, s3_server, s3_root, tmp_path):
    project, version = release_project, "tiny-rel-s3"
    project.write_release(version)
    lineage = read_lineage(project.cfg, project.storage, version)
    publish_bundle(project.storage, lineage, "test")
    local = project.storage.store.local_dir(project.storage.layout.release_dir(version))
    store = S3Store(s3_root, tmp_path / "scratch", S3Access(s3_server.endpoint, str(s3_server.credentials_file)))
    key = LAYOUT.release_dir(version)
    with store.publish(key, last=ArtifactLayout.BUNDLE_MANIFEST) as staged:  # as the asset publishes on S3
        shutil.copytree(local, staged)
    url, root = store.url(key), store.url(key)[len("s3://"):]
    objects = sorted(p[len(root) + 1:] for p in store.fs.find(root))
    assert objects == sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **s3_server.env()}
    ok = _verify(url, env)
    assert ok.returncode == 0 and f"{url}: OK, {len(objects) - 1} files" in ok.stdout, ok.stdout + ok.stderr
    # The checklist's bundle check reads the objects where the store keeps them.
    on_s3 = replace(collect_evidence(project.storage, lineage), stored=stored_bundle(store, key), bundle_url=url)
    verdict = bundle_complete(on_s3)
    assert verdict.passed and url in verdict.reason, verdict.reason

    store.fs.pipe_file(f"{root}/{ArtifactLayout.BUNDLE_DATA_CARD}", b"# edited on the server\n")
    store.fs.rm_file(f"{root}/{ArtifactLayout.BUNDLE_LICENSE}")
    bad = _verify(url, env)
    assert bad.returncode == 1
    assert "data_card.md: sha256 mismatch, manifest.json records" in bad.stdout
    assert "LICENSE: missing (manifest.json records sha256" in bad.stdout
    assert "LICENSE: missing" in bundle_complete(on_s3).reason

    wrong = _verify(url, {**env, "AWS_SECRET_ACCESS_KEY": "wrong-" + env["AWS_SECRET_ACCESS_KEY"]})
    assert wrong.returncode == 2 and "the credentials were refused" in wrong.stderr, wrong.stderr
    assert env["AWS_SECRET_ACCESS_KEY"] not in wrong.stdout + wrong.stderr
