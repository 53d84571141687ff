"""A job's log file while it is written and after: complete new lines, a file that shrinks, the tail."""

from resources.logs import LogFollower, tail_lines


def test_log_follower_returns_complete_new_lines(tmp_path):
    path = tmp_path / "job.out"
    follower = LogFollower(path)
    assert follower.read() == []  # not created yet
    path.write_bytes(b"one\ntw")
    assert follower.read() == ["one"]
    with path.open("ab") as f:
        f.write(b"o\r\nthree")
    assert follower.read() == ["two"]
    assert follower.read() == []
    assert follower.read(final=True) == ["three"]
    path.write_bytes(b"new\n")  # truncated and rewritten: read from the start
    assert follower.read() == ["new"]


def test_log_follower_decodes_bad_bytes(tmp_path):
    path = tmp_path / "job.out"
    path.write_bytes(b"ok \xff\n")
    assert LogFollower(path).read() == ["ok \ufffd"]


def test_tail_lines(tmp_path):
    path = tmp_path / "job.out"
    path.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    assert tail_lines(path, 3) == ["line 98", "line 99", "line 100"]
    assert tail_lines(path, 0) == []
    assert tail_lines(tmp_path / "missing", 5) == []
    # Reading only the last bytes drops the partial first line.
    assert tail_lines(path, 1000, max_bytes=20) == ["line 99", "line 100"]
