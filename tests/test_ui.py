"""The Dagster UI's server loads the code location and shows every asset with its checks."""

import shutil
from pathlib import Path

import pytest

import webui

REPO = Path(__file__).resolve().parents[1]
QUERY = """{ assetNodes { assetKey { path } groupName isPartitioned dependencyKeys { path }
  assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""


@pytest.fixture
def webserver(tmp_path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with webui.webserver(REPO / "workspace.yaml", tmp_path) as url:
        yield url


@pytest.mark.slow
def test_ui_shows_assets_and_checks(webserver):
    nodes = webui.graphql(webserver, QUERY)["data"]["assetNodes"]
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
    assert shown["eval_sets"] == ("eval", False, {}) and shown["canary_set"] == ("eval", False, {})
    assert shown["eval_report"] == ("eval", True, {"check_leakage": True})
    assert shown["decontamination_report"] == ("eval", True, {"eval_sets_decontaminated": False})
    upstream = {n["assetKey"]["path"][0]: {d["path"][0] for d in n["dependencyKeys"]} for n in nodes}
    chain = ["eval_sets", "canary_set", "training_blend", "checkpoint", "eval_report"]  # the canary's lineage
    assert all(parent in upstream[child] for parent, child in zip(chain, chain[1:]))
    assert shown["token_shards"] == ("shards", True, {"shard_files_consistent": True, "shard_ids_in_range": True,
                                                      "shard_documents_complete": True, "shard_token_distribution": True})
