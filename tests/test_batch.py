"""Crawl batches: manifest parsing, registration snapshots, conflicts."""

import pytest

from mm_assets.config.pipeline import parse_config
from mm_assets.crawl.batch import BatchError, find_manifests, load_batch, parse_manifest, register_batch
from resources.storage import StorageResource


@pytest.fixture
def cfg(tmp_path):
    return parse_config({"sources": {"manifest_dir": "sources", "names": ["youtube", "demo"]}}, base_dir=tmp_path)


@pytest.fixture
def storage(tmp_path):
    return StorageResource(root=str(tmp_path / "data"))


def test_every_line_becomes_an_entry_with_its_reason():
    text = "# comment\nhttp://a/x\n\nftp://b/y\nhttp://a/x\nnot a url\nhttps://c/z?q=1\n"
    entries = parse_manifest(text)
    assert [(e.line_no, e.error is None) for e in entries] == [(2, True), (4, False), (5, False), (6, False), (7, True)]
    assert "scheme 'ftp'" in entries[1].error
    assert entries[2].error == "duplicate of line 2"
    assert "whitespace" in entries[3].error


def test_register_snapshots_and_is_idempotent(tmp_path, cfg, storage):
    manifest = tmp_path / "sources" / "youtube" / "2026-11-29.txt"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("http://127.0.0.1/a.html\n")
    info, created = register_batch(storage, cfg, manifest)
    assert created and info.batch == "youtube-2026-11-29" and info.source == "youtube"
    again, created = register_batch(storage, cfg, manifest)
    assert not created and again == info
    assert find_manifests(cfg) == [("youtube", manifest)]
    # The snapshot, not the file under sources/, is what the crawl reads.
    manifest.write_text("http://127.0.0.1/changed.html\n")
    _, entries = load_batch(storage, info.batch)
    assert [e.url for e in entries] == ["http://127.0.0.1/a.html"]
    with pytest.raises(BatchError, match="already registered with different content"):
        register_batch(storage, cfg, manifest)


def test_refuses_unknown_source_empty_and_non_utf8(tmp_path, cfg, storage):
    other = tmp_path / "sources" / "vimeo" / "b.txt"
    other.parent.mkdir(parents=True)
    other.write_text("http://x/\n")
    with pytest.raises(BatchError, match="not one of sources.names"):
        register_batch(storage, cfg, other)
    empty = tmp_path / "sources" / "demo" / "empty.txt"
    empty.parent.mkdir(parents=True)
    empty.write_text("# nothing\n")
    with pytest.raises(BatchError, match="no URLs"):
        register_batch(storage, cfg, empty)
    latin = tmp_path / "sources" / "demo" / "latin.txt"
    latin.write_bytes("http://x/caf\xe9\n".encode("latin-1"))
    with pytest.raises(BatchError, match="not UTF-8"):
        register_batch(storage, cfg, latin)
    with pytest.raises(BatchError, match="not registered"):
        load_batch(storage, "demo-missing")
