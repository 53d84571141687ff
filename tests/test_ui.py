"""The Dagster UI's server loads the code location and shows every asset with its checks."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster_shared.utils import find_free_port

REPO = Path(__file__).resolve().parents[1]
QUERY = """{ assetNodes { assetKey { path } groupName isPartitioned
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


def _graphql(url: str, query: str) -> dict:
    req = urllib.request.Request(url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


@pytest.fixture
def webserver(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    port = find_free_port()
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(exe), "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        cwd=tmp_path, env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _graphql(url, "{ version }")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-webserver did not come up on port {port}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_ui_shows_assets_and_checks(webserver):
    nodes = _graphql(webserver, QUERY)["data"]["assetNodes"]
    shown = {
        n["assetKey"]["path"][0]: (n["groupName"], n["isPartitioned"], {c["name"]: c["blocking"] for c in n["assetChecksOrError"]["checks"]})
        for n in nodes
    }
    assert shown["raw_media"] == ("crawl", True, {"every_item_accounted_for": True})
    group, partitioned, checks = shown["media_metadata"]
    assert (group, partitioned) == ("etl", True)
    assert checks == {"metadata_schema": True, "metadata_unique_ids": True, "metadata_license_present": True, "metadata_quarantine": False}
    assert shown["metadata_catalog"] == ("etl", False, {"catalog_row_count": False})
    for modality in ("text", "audio", "image", "video"):
        assert shown[f"{modality}_tokens"] == ("tokens", True, {"codes_valid": True, "tokenizer_weights_pretrained": False})
    assert shown["training_blend"] == ("train", True, {"blend_complete": True})
    assert shown["checkpoint"] == ("train", True, {"checkpoint_complete": True})
    assert shown["training_log"] == ("train", True, {"loss_finite": True, "loss_decreased": False,
                                                     "loss_not_stagnant": False, "grad_norm_bounded": False,
                                                     "few_skipped_iterations": False, "throughput_above_floor": False})
    assert shown["experiment_records"] == ("records", False, {"one_row_per_experiment": False})
    assert shown["token_shards"] == ("shards", True, {"shard_ids_in_range": True, "shard_documents_complete": True,
                                                      "shard_token_distribution": True})
