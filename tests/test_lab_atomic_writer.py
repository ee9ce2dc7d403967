"""A volume updated in place as the kubelet does it (``lab/atomic_writer.py``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lab import atomic_writer


def test_files_are_links_into_one_data_directory(tmp_path: Path) -> None:
    vol = tmp_path / "cacerts"
    assert atomic_writer.write(vol, {"root-cert.pem": b"old root", "ca-key.pem": b"key"}, 0o600)
    assert (vol / "root-cert.pem").read_bytes() == b"old root"
    assert os.readlink(vol / "root-cert.pem") == "..data/root-cert.pem"
    assert (vol / "..data").is_symlink() and (vol / "..data").resolve().name.startswith("..")
    assert ((vol / "..data").resolve() / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert atomic_writer.current(vol) == {"ca-key.pem": b"key", "root-cert.pem": b"old root"}


def test_the_same_files_change_nothing(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    atomic_writer.write(vol, {"a": b"1"})
    before = (vol / "..data").resolve()
    assert not atomic_writer.write(vol, {"a": b"1"})
    assert (vol / "..data").resolve() == before


def test_a_new_set_swaps_the_data_link_and_drops_the_old_set_and_removed_keys(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    atomic_writer.write(vol, {"a": b"1", "b": b"2"})
    old = (vol / "..data").resolve()
    # A reader holding the old file open keeps reading the old bytes: the file is never rewritten.
    with open(vol / "a", "rb") as held:
        assert atomic_writer.write(vol, {"a": b"new", "c": b"3"})
        assert held.read() == b"1"
    assert (vol / "a").read_bytes() == b"new" and (vol / "c").read_bytes() == b"3"
    assert not (vol / "b").exists() and not (vol / "b").is_symlink()
    assert not old.exists()
    assert sorted(p.name for p in vol.iterdir() if not p.name.startswith("..")) == ["a", "c"]
    assert [p.name for p in vol.iterdir() if p.name.startswith("..") and p.is_dir() and not p.is_symlink()] == [
        (vol / "..data").resolve().name
    ]


def test_plain_files_written_before_are_taken_over(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    vol.mkdir()
    (vol / "a").write_bytes(b"plain")
    (vol / "stale").write_bytes(b"gone")
    assert atomic_writer.write(vol, {"a": b"linked"})
    assert (vol / "a").is_symlink() and (vol / "a").read_bytes() == b"linked"
    assert not (vol / "stale").exists()


@pytest.mark.parametrize("key", ["", "../x", "a/b", "..data"])
def test_keys_that_are_not_file_names_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not a valid key"):
        atomic_writer.write(tmp_path / "v", {key: b"x"})
