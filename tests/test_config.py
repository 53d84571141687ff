"""The pipeline config: the shipped file loads; typos and bad values fail with their key path."""

import pytest

from mm_assets.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config


def test_shipped_config_loads():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.crawl.format_selector == "bestvideo[height<=?720]+bestaudio/best[height<=?720]/best"
    assert cfg.storage_root.is_absolute()
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
    assert cfg.storage_root == tmp_path / "out"
    assert cfg.manifest_dir == tmp_path / "src"


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
