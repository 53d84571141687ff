"""The `mm` command line: registering batches, refusing bad input with exit code 2 and a clear message."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mm_assets.etl.catalog import build_catalog
from resources.storage import StorageResource

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def mm(tmp_path):
    (tmp_path / "configs").mkdir()
    cfg = tmp_path / "configs" / "pipeline.yaml"
    cfg.write_text("sources: {manifest_dir: sources, names: [youtube]}\nstorage: {root: data}\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(cfg), *args],
                              env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    return run


def test_add_batch_registers_once_and_refuses_changes(mm, tmp_path):
    manifest = tmp_path / "sources" / "youtube" / "2026-11-29.txt"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("https://www.youtube.com/watch?v=dQw4w9WgXcQ\n")
    first = mm("crawl", "add-batch", str(manifest))
    assert first.returncode == 0 and "youtube-2026-11-29: registered, 1 URLs" in first.stdout
    again = mm("crawl", "add-batch", str(manifest))
    assert again.returncode == 0 and "already registered" in again.stdout
    manifest.write_text("https://www.youtube.com/watch?v=other\n")
    changed = mm("crawl", "add-batch", str(manifest))
    assert changed.returncode == 2 and "already registered with different content" in changed.stderr


def test_bad_input_exits_2_with_the_reason(mm, tmp_path):
    missing = mm("ingest", "youtube-nope")
    assert missing.returncode == 2 and "mm crawl add-batch" in missing.stderr
    no_catalog = mm("query", "SELECT 1")
    assert no_catalog.returncode == 2 and "materialize metadata_catalog first" in no_catalog.stderr
    bad_cfg = subprocess.run([sys.executable, "-m", "mm_assets.cli", "--config", str(tmp_path / "nope.yaml"),
                              "query", "SELECT 1"], capture_output=True, text=True, timeout=60)
    assert bad_cfg.returncode == 2 and "does not exist" in bad_cfg.stderr


@pytest.fixture
def catalog(tmp_path) -> Path:
    """The `mm` fixture's storage root (tmp_path/data) with one metadata batch and its catalog; the batch file."""
    batch = tmp_path / "data" / "metadata" / "web-a" / "media_metadata.parquet"
    batch.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"unique_id": "web_1", "source": "web", "modalities": ["audio"],
         "metadata": {"license": "CC-BY-4.0", "license_source": "page_json_ld", "upload_date_source": "page_json_ld",
                      "language": "en", "duration_seconds": 1800.0}},
        {"unique_id": "web_2", "source": "web", "modalities": ["text"],
         "metadata": {"license": "CC0-1.0", "license_source": "page_html", "upload_date_source": "none",
                      "language": "fr", "duration_seconds": None}},
    ]), batch)
    build_catalog(StorageResource(root=str(tmp_path / "data")))
    return batch


def test_readme_example_queries_run(mm, catalog):
    queries = re.findall(r'^\.venv/bin/mm query "([^"]+)"', README.read_text(encoding="utf-8"), flags=re.M)
    assert len(queries) >= 3
    for sql in queries:
        result = mm("query", sql)
        assert result.returncode == 0, result.stderr
        assert re.search(r"\(\d+ rows?\)$", result.stdout.strip()), result.stdout
    licenses = mm("query", queries[0], "--format", "csv").stdout.splitlines()
    assert licenses[0] == "license,items" and sorted(licenses[1:]) == ["CC-BY-4.0,1", "CC0-1.0,1"]


def test_query_refuses_writes_and_leaves_the_catalog_working(mm, catalog, tmp_path):
    before = catalog.read_bytes()
    copy = mm("query", f"COPY (SELECT 'x' AS junk) TO '{catalog}'")
    assert copy.returncode == 2 and copy.stderr.startswith("mm: refused: COPY writes files.")
    attach = mm("query", f"ATTACH '{tmp_path}/data/evil.duckdb' AS evil (READ_ONLY false)")
    assert attach.returncode == 2 and "refused: ATTACH opens another database" in attach.stderr
    passwd = mm("query", "SELECT * FROM read_csv('/etc/passwd')")
    assert passwd.returncode == 2 and 'Cannot access file "/etc/passwd"' in passwd.stderr
    assert "mm query reads files under the storage root" in passwd.stderr
    assert catalog.read_bytes() == before and not (tmp_path / "data" / "evil.duckdb").exists()
    assert mm("query", "SELECT count(*) AS n FROM media_metadata", "--format", "csv").stdout == "n\n2\n"


def test_query_starts_without_dagster_or_torch(tmp_path, catalog):
    config = tmp_path / "configs" / "pipeline.yaml"
    config.parent.mkdir(exist_ok=True)
    config.write_text("storage: {root: data}\n")
    code = ("import sys\nfrom mm_assets.cli import main\n"
            f"rc = main(['--config', {str(config)!r}, 'query', 'SELECT 1 AS one'])\n"
            "print(rc, sorted(m for m in ('dagster', 'torch', 'tokenizers', 'encodec') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout + result.stderr


@pytest.mark.parametrize("size", ["-5", "0", "2", "1.5", "many"])
def test_render_refuses_a_vocab_size_without_room_for_eod_and_pad(size):
    result = subprocess.run([sys.executable, "-m", "mm_assets.cli", "train", "render", "exp-10b-lr-1",
                             f"--vocab-size={size}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert f"argument --vocab-size: '{size}' is not a vocabulary size: give a whole number >= 3" in result.stderr


def test_render_with_the_smallest_vocab_puts_eod_and_pad_last():
    result = subprocess.run([sys.executable, "-m", "mm_assets.cli", "train", "render", "exp-10b-lr-1",
                             "--vocab-size", "3"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--vocab-size 3" in result.stdout and "--null-tokenizer-eod-id 1" in result.stdout
