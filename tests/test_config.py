"""The pipeline config: the shipped file loads; typos and bad values fail with their key path."""

from pathlib import Path

import pytest

from mm_assets.config.base import DEFAULT_CONFIG, ConfigError
from mm_assets.config.pipeline import load_config, parse_config


def test_shipped_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.crawl.format_selector == "bestvideo[height<=?720]+bestaudio/best[height<=?720]/best"
    assert Path(cfg.storage_root).is_absolute()
    assert "youtube" in cfg.sources.names


@pytest.mark.parametrize(
    "data, key_path",
    [
        ({"crawl": {"wrokers": 2}}, "crawl.wrokers"),
        ({"crawl": {"workers": 0}}, "crawl.workers"),
        ({"crawl": {"audio_format": "mp3"}}, "crawl.audio_format"),
        ({"sources": {"names": ["You Tube"]}}, "sources.names"),
        ({"storage": {"root": "gs://bucket"}}, "storage.root"),
        ({"unknown_section": {}}, "unknown_section"),
    ],
)
def test_bad_values_name_the_key_path(data, key_path):
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="test.yaml")
    assert key_path in str(err.value)
    assert "test.yaml" in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("crawl: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_relative_paths_resolve_against_the_project_of_the_file(tmp_path):
    (tmp_path / "configs").mkdir()
    f = tmp_path / "configs" / "pipeline.yaml"
    f.write_text("storage: {root: out}\nsources: {manifest_dir: src, names: [demo]}\n")
    cfg = load_config(f)
    assert cfg.storage_root == str(tmp_path / "out")
    assert cfg.manifest_dir == tmp_path / "src"


# -- strict types: a string is never a number or a bool ----------------------------------------------------


@pytest.mark.parametrize(
    "yaml_text, key_path, hint",
    [
        ("crawl: {workers: '2'}", "crawl.workers", "a quoted number is a string: write 2 without quotes"),
        ("crawl: {item_timeout_s: 1e-3}", "crawl.item_timeout_s", "YAML reads 1e-3 as a string"),
        ("crawl: {socket_timeout_s: 1.0e3}", "crawl.socket_timeout_s", "write 1.0e+3"),
        ("crawl: {thumbnails: 'true'}", "crawl.thumbnails", "write true or false, without quotes"),
        ("metadata: {quarantine_max_fraction: '0.5'}", "metadata.quarantine_max_fraction", "write 0.5 without quotes"),
        ("shards: {min_document_tokens: 3.0}", "shards.min_document_tokens", "write a whole number: 3"),
        ("compute: {log_tail_lines: '50'}", "compute.log_tail_lines", "write 50 without quotes"),
        ("schema_version: '1'", "schema_version", "write 1 without quotes"),
        ("tokenizers: {allow_random_weights: 1}", "tokenizers.allow_random_weights", "write true or false"),
        ("tokenizers: {audio: {chunk_seconds: '10'}}", "tokenizers.audio.chunk_seconds", "write 10 without quotes"),
        ("tokenizers: {image: {resolution: '256'}}", "tokenizers.image.resolution", "write 256 without quotes"),
        ("tokenizers: {video: {input_resolution: ['128', 128]}}", "tokenizers.video.input_resolution.0",
         "write 128 without quotes"),
        ("tokenizers: {video: {fps: 2.4e1}}", "tokenizers.video.fps", "write 2.4e+1"),
    ],
)
def test_strings_are_not_numbers_or_bools(tmp_path, yaml_text, key_path, hint):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml_text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    line = next(line for line in str(err.value).splitlines() if line.strip().startswith(key_path + ":"))
    assert hint in line and str(path) in str(err.value)


def test_ints_stay_floats_and_lists_stay_tuples(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text("crawl: {item_timeout_s: 5, socket_timeout_s: 1.0e+1}\n"
                    "tokenizers: {video: {input_resolution: [128, 128], tubelet_size: [2, 16, 16]},"
                    " image: {latent_shape: [16, 16]}}\n")
    cfg = load_config(path)
    assert (cfg.crawl.item_timeout_s, cfg.crawl.socket_timeout_s) == (5.0, 10.0)
    assert cfg.tokenizers.video.input_resolution == (128, 128) and cfg.tokenizers.image.latent_shape == (16, 16)


def test_license_policy_per_source():
    shipped = load_config(DEFAULT_CONFIG).metadata
    assert {s: str(p) for s, p in shipped.license_policy.items()} == {"youtube": "unknown", "demo": "unknown",
                                                                       "web": "unknown"}
    cfg = parse_config({"sources": {"names": ["web", "demo", "news"]}, "metadata": {"license_policy": {
        "web": "require", "demo": {"default": "CC-BY-4.0"}}}}).metadata
    assert (cfg.license_policy_for("web").kind, str(cfg.license_policy_for("demo"))) == ("require", "default CC-BY-4.0")
    assert cfg.license_policy_for("news").kind == "unknown"  # not listed: kept with a null license
    url = parse_config({"metadata": {"license_policy": {"youtube": {"default": "https://example.org/terms"}}}})
    assert url.metadata.license_policy_for("youtube").license == "https://example.org/terms"


@pytest.mark.parametrize("policy, message", [
    ("requre", "'requre' is not a license policy: use require, unknown or {default: <SPDX id or URL>}"),
    ({"defualt": "MIT"}, "unknown key defualt"),
    ({"default": "CC BY 4.0"}, "'CC BY 4.0' is neither an SPDX license id"),
    ({"default": "MIT", "why": "x"}, "unknown key default, why"),
    (None, "None is not a license policy"),
])
def test_bad_license_policies_name_the_key_path(policy, message):
    with pytest.raises(ConfigError) as err:
        parse_config({"metadata": {"license_policy": {"youtube": policy}}}, source="test.yaml")
    assert "metadata.license_policy.youtube" in str(err.value) and message in str(err.value)


def test_a_license_policy_for_an_unknown_source_is_refused():
    with pytest.raises(ConfigError) as err:
        parse_config({"sources": {"names": ["web"]}, "metadata": {"license_policy": {"wbe": "require"}}})
    assert "metadata.license_policy.wbe: 'wbe' is not in sources.names ['web']" in str(err.value)
    assert "base_dir" not in str(err.value)  # the whole config is not dumped into the message
