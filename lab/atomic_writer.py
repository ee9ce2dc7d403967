"""A volume's files updated in place the way the kubelet updates a Secret or ConfigMap volume.

The kubelet never rewrites a mounted file: it writes the whole new set into a fresh hidden directory
``..<timestamp>``, points a link ``..data_tmp`` at it and renames that over ``..data`` (one atomic
``rename``), so a reader sees either the old set or the new one, never a mix; each visible file is a
link ``<key> -> ..data/<key>``. Processes that watch the directory (istiod's ``cacerts`` watcher, its
mesh config file watcher) see the ``..data`` swap as a create event and reload, without a restart.
``write`` does the same for the lab's istiod and pods.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path

DATA = "..data"


def current(target: Path) -> dict[str, bytes] | None:
    """The files the volume shows now (``None``: never written this way)."""
    data = target / DATA
    if not data.is_symlink():
        return None
    return {p.name: p.read_bytes() for p in sorted(data.resolve().iterdir()) if p.is_file()}


def write(target: Path, files: Mapping[str, bytes], mode: int = 0o644) -> bool:
    """Makes ``target`` show exactly ``files``; returns False (touching nothing) when it already does."""
    for key in files:
        if not key or "/" in key or key.startswith(".."):
            raise ValueError(f"{key!r} is not a valid key for a volume file")
    if current(target) == dict(files):
        return False
    target.mkdir(parents=True, exist_ok=True)
    for entry in target.iterdir():  # files written before, by hand or by an older lab: links take over
        if not entry.name.startswith("..") and not entry.is_symlink():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    old = (target / DATA).resolve() if (target / DATA).is_symlink() else None
    fresh = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{os.getpid()}_{time.monotonic_ns()}"
    fresh.mkdir()
    for key, value in files.items():
        path = fresh / key
        path.write_bytes(value)
        path.chmod(mode)
    tmp = target / "..data_tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(fresh.name)
    tmp.rename(target / DATA)  # the atomic switch
    for key in files:
        link = target / key
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{key}")
    for entry in target.iterdir():
        if entry.is_symlink() and not entry.name.startswith("..") and entry.name not in files:
            entry.unlink()  # a key the new set no longer has
    if old is not None and old.parent == target.resolve():  # the set before, now unreferenced
        shutil.rmtree(old, ignore_errors=True)
    return True
