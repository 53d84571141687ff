"""Untrusted names never escape their root; writes are atomic."""

import os

import pytest

from mm_assets.storage.paths import (
    UnsafePathError,
    atomic_path,
    atomic_write_text,
    publish_dir,
    safe_join,
    sanitize_component,
)


@pytest.mark.parametrize(
    "raw", ["../../etc/passwd", "a/b", "..", ".", "", "\x00", "$(rm -rf ~)", "x" * 300, "ｆｕｌｌ／ｗｉｄｔｈ", ".hidden", "C:\\win"]
)
def test_sanitized_component_is_one_safe_name(raw, tmp_path):
    name = sanitize_component(raw)
    assert name and len(name) <= 96
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert safe_join(tmp_path, name).parent == tmp_path.resolve()


def test_safe_join_refuses_escapes(tmp_path):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "..", "x")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "/etc/passwd")
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "link", "passwd")


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_publish_dir_replaces_whole(tmp_path):
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "a").write_text("new")
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale").write_text("old")
    publish_dir(staged, target)
    assert sorted(os.listdir(target)) == ["a"]
    assert sorted(os.listdir(tmp_path)) == ["out"]
