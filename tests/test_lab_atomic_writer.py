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


def test_uid_owns_the_new_set_its_files_and_links(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    assert atomic_writer.write(vol, {"a": b"1"}, uid=1337)
    data = (vol / "..data").resolve()
    for path in (vol / "a", vol / "..data", data, data / "a"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (1337, 1337), path
    assert atomic_writer.write(vol, {"a": b"2"}, uid=1337)  # the next set as well
    assert os.lstat((vol / "..data").resolve() / "a").st_uid == 1337


def test_without_uid_the_writer_owns_what_it_writes(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    atomic_writer.write(vol, {"a": b"1"}, 0o600)
    data = (vol / "..data").resolve()
    assert {os.lstat(p).st_uid for p in (vol / "a", vol / "..data", data, data / "a")} == {os.geteuid()}


def test_kept_entries_survive_every_swap_and_no_key_may_take_their_name(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    (vol / "crl").mkdir(parents=True)
    (vol / "crl" / "ca-crl.pem").write_bytes(b"crl")
    assert atomic_writer.write(vol, {"a": b"1"}, keep={"crl"})
    assert atomic_writer.write(vol, {"a": b"2"}, keep={"crl"})
    assert (vol / "crl" / "ca-crl.pem").read_bytes() == b"crl"
    with pytest.raises(ValueError, match="mount point of another volume"):
        atomic_writer.write(vol, {"crl": b"x"}, keep={"crl"})
    assert (vol / "a").read_bytes() == b"2"


def test_a_plain_file_becomes_its_link_without_ever_missing(tmp_path: Path) -> None:
    vol = tmp_path / "v"
    vol.mkdir()
    (vol / "a").write_bytes(b"plain")
    (vol / "b").symlink_to("elsewhere")  # a link that is not the set's: pointed into the set
    with open(vol / "a", "rb") as held:
        assert atomic_writer.write(vol, {"a": b"linked", "b": b"2"})
        assert held.read() == b"plain"
    assert os.readlink(vol / "a") == "..data/a" and os.readlink(vol / "b") == "..data/b"
    assert sorted(p.name for p in vol.iterdir()) == sorted(["..data", (vol / "..data").resolve().name, "a", "b"])
