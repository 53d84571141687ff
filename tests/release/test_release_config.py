"""Release files and the release policy are validated like every other config; manifests refuse paths that
leave the bundle."""

import json

import pytest
import yaml

from mm_assets.config.base import ConfigError
from mm_assets.config.pipeline import parse_config
from mm_assets.release.config import license_id, load_release, release_versions
from mm_assets.release.manifest import MANIFEST_FORMAT, BundleManifest, ManifestError
from mm_assets.release.training_data import TrainingData
from mm_assets.release.verify import LocalBundle, verify_bundle

GOOD = {"model_name": "m", "experiment": "exp-a", "checkpoint_iteration": 100,
        "license": {"id": "LicenseRef-x", "file": "LICENSE.txt"}}


@pytest.fixture
def cfg(tmp_path):
    (tmp_path / "configs" / "releases").mkdir(parents=True)
    (tmp_path / "configs" / "releases" / "LICENSE.txt").write_text("terms")
    return parse_config({"release": {"license_compatibility": {"CC-BY-4.0": ["LicenseRef-x"]}}}, base_dir=tmp_path)


def _write(cfg, version: str, data) -> None:
    (cfg.base_dir / "configs" / "releases" / f"{version}.yaml").write_text(yaml.safe_dump(data))


def test_a_release_file_loads_with_its_version(cfg):
    _write(cfg, "v1.0", GOOD)
    release = load_release(cfg, "v1.0")
    assert (release.version, release.internal, release.tokenizer_weights) == ("v1.0", False, "include")
    assert release.review.missing(release.review.DATA_CARD) == ["review.data_collection_notes", "review.reviewed_by"]
    assert release_versions(cfg) == ["v1.0"]


@pytest.mark.parametrize("change, message", [
    ({"licence": "MIT"}, "licence: Extra inputs are not permitted"),
    ({"checkpoint_iteration": "100"}, "checkpoint_iteration: Input should be a valid integer (got '100'); a quoted "
                                      "number is a string: write 100 without quotes"),
    ({"license": {"id": "Not a license!", "file": "LICENSE.txt"}}, "license.id: 'Not a license!' is not an SPDX"),
    ({"license": {"id": "*", "file": "LICENSE.txt"}}, "license.id: '*' is a policy wildcard"),
    ({"license": {"id": "MIT", "file": "missing.txt"}}, "license.file: "),
    ({"tokenizer_weights": "copy"}, "tokenizer_weights: Input should be 'include' or 'reference'"),
    ({"experiment": "Exp A"}, "experiment: experiment id 'Exp A' must match"),
    ({"review": {"approved": True}}, "review.approved: Extra inputs are not permitted"),
])
def test_a_bad_release_file_names_the_key(cfg, change, message):
    _write(cfg, "v1", {**GOOD, **change})
    with pytest.raises(ConfigError) as err:
        load_release(cfg, "v1")
    assert message in str(err.value) and "v1.yaml" in str(err.value)
    with pytest.raises(ConfigError):
        release_versions(cfg)  # listing the releases validates every file


def test_bad_versions_and_missing_files(cfg):
    with pytest.raises(ConfigError, match="release version '../x' must match"):
        load_release(cfg, "../x")
    with pytest.raises(ConfigError, match="v2.yaml does not exist"):
        load_release(cfg, "v2")


def test_the_release_policy_is_validated_with_its_key_path(tmp_path):
    with pytest.raises(ConfigError, match="release.license_compatibility: .*'CC BY' is not an SPDX license id"):
        parse_config({"release": {"license_compatibility": {"CC BY": ["MIT"]}}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="release.inference_timeout_s: Input should be greater than 0"):
        parse_config({"release": {"inference_timeout_s": 0}}, base_dir=tmp_path)
    policy = parse_config({"release": {"license_compatibility": {"CC0-1.0": ["*"], "CC-BY-4.0": ["MIT"]}}}).release
    assert policy.allows("CC0-1.0", "Apache-2.0") and policy.allows("CC-BY-4.0", "MIT")
    assert not policy.allows("CC-BY-4.0", "Apache-2.0") and not policy.allows("GPL-3.0", "MIT")


@pytest.mark.parametrize("stated, spdx", [
    ("https://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/3.0", "CC-BY-NC-SA-3.0"),
    ("https://creativecommons.org/licenses/by/4.0/legalcode", "CC-BY-4.0"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("MIT", "MIT"),
    ("https://example.com/terms", "https://example.com/terms"),
    (None, None),
])
def test_stated_licenses_are_read_as_spdx_ids(stated, spdx):
    assert license_id(stated) == spdx


@pytest.mark.parametrize("name", ["../outside", "/etc/passwd", "a/../../b", "a\\b", "./a", ""])
def test_a_manifest_refuses_paths_outside_the_bundle(tmp_path, name):
    body = {"format": MANIFEST_FORMAT, "version": 1, "release": {}, "contents": {}, "lineage": {},
            "files": {name: {"sha256": "0" * 64, "bytes": 1}}}
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(ManifestError, match="is not a path inside the bundle"):
        BundleManifest.read(tmp_path)
    result = verify_bundle(LocalBundle(tmp_path))
    assert not result.ok and "is not a path inside the bundle" in result.problems[0]


def test_the_cli_refuses_a_bad_release_before_anything_runs(cfg, tmp_path, capsys):
    from mm_assets.cli import main

    config = cfg.base_dir / "configs" / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"release": {"releases_dir": "configs/releases"}}))
    _write(cfg, "v1", {**GOOD, "checkpoint_iteration": -1})
    assert main(["--config", str(config), "release", "build", "v1"]) == 2
    assert "checkpoint_iteration: Input should be greater than or equal to 0" in capsys.readouterr().err
    assert main(["--config", str(config), "release", "checklist", "v9"]) == 2
    assert "v9.yaml does not exist" in capsys.readouterr().err
    assert main(["--config", str(config), "release", "verify", str(tmp_path / "nowhere")]) == 2


def test_training_data_outside_the_catalog_counts_as_unknown_license():
    data = TrainingData(("b1",), [
        {"unique_id": "demo_a", "source": "demo", "license": "https://creativecommons.org/licenses/by/4.0/",
         "license_source": "page_json_ld"},
        {"unique_id": "demo_b", "source": "demo", "license": None, "license_source": "none"},
        {"unique_id": "web_c", "source": None, "license": None, "license_source": None},
    ], other_sources={"canary of eval set demo_clip_qa": 3})
    assert [(c.source, c.license, c.items) for c in data.licenses()] == [
        ("demo", "CC-BY-4.0", 1), ("demo", "unknown", 1), ("web (no metadata row)", "unknown", 1),
        ("canary of eval set demo_clip_qa", "unknown", 3)]
