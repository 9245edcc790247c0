import os

import pytest

from usjepa.atomic import atomic_write, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "state.json"
    atomic_write_text(p, "old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(p) as f:
            f.write(b"half of the new")
            raise RuntimeError("boom")
    assert p.read_text() == "old" and sorted(q.name for q in tmp_path.iterdir()) == ["state.json"]


def test_the_file_and_its_folder_are_fsynced_before_and_after_the_rename(tmp_path, monkeypatch):
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", "dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file"))
        real_fsync(fd)

    def replace(a, b):
        events.append(("replace", os.path.basename(b)))
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write_text(tmp_path / "shard.tar", "x")
    assert events == [("fsync", "file"), ("replace", "shard.tar"), ("fsync", "dir")]
    assert (tmp_path / "shard.tar").read_text() == "x"
