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
from collections.abc import Collection, Mapping
from pathlib import Path

DATA = "..data"


def current(target: Path) -> dict[str, bytes] | None:
    """The files the volume shows now (``None``: never written this way)."""
    data = target / DATA
    if not data.is_symlink():
        return None
    return {p.name: p.read_bytes() for p in sorted(data.resolve().iterdir()) if p.is_file()}


def write(
    target: Path, files: Mapping[str, bytes], mode: int = 0o644, uid: int | None = None, keep: Collection[str] = ()
) -> bool:
    """Makes ``target`` show exactly ``files``; returns False (touching nothing) when it already does.

    Keys are file names: a key with a sub-directory (``a/b``) is refused (``ValueError``). ``uid``: the
    new set's directory, its files and the links are owned by that user (and the group of the same
    number); ``None`` leaves them to whoever writes. ``keep``: entries of ``target`` that are not the
    volume's (another volume mounted inside it): never removed, and no key may have their name.
    Anything else in ``target`` that is not a link of the set (files written before, by hand or by an
    older lab) is taken over: a plain file of a key is replaced by its link in one rename."""
    for key in files:
        if not key or "/" in key or key.startswith(".."):
            raise ValueError(f"{key!r} is not a valid key for a volume file")
        if key in keep:
            raise ValueError(f"{key!r} is the mount point of another volume")
    if current(target) == dict(files):
        return False
    target.mkdir(parents=True, exist_ok=True)
    old = (target / DATA).resolve() if (target / DATA).is_symlink() else None
    fresh = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S', time.gmtime())}.{os.getpid()}_{time.monotonic_ns()}"
    fresh.mkdir()
    _own(fresh, uid)
    for key, value in files.items():
        path = fresh / key
        path.write_bytes(value)
        path.chmod(mode)
        _own(path, uid)
    _link(target / "..data_tmp", fresh.name, target / DATA, uid)  # the atomic switch
    for key in files:
        link = target / key
        if link.is_symlink() and os.readlink(link) == f"{DATA}/{key}":
            continue
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        _link(target / "..link_tmp", f"{DATA}/{key}", link, uid)  # over a plain file: one rename
    for entry in target.iterdir():
        if entry.name.startswith("..") or entry.name in files or entry.name in keep:
            continue
        # A key the new set no longer has, or a file written before that no key takes over.
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if old is not None and old.parent == target.resolve():  # the set before, now unreferenced
        shutil.rmtree(old, ignore_errors=True)
    return True


def _link(tmp: Path, to: str, path: Path, uid: int | None) -> None:
    """``path`` becomes a link to ``to`` in one rename (of the link ``tmp``, made first)."""
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(to)
    if uid is not None:
        os.lchown(tmp, uid, uid)
    tmp.rename(path)


def _own(path: Path, uid: int | None) -> None:
    if uid is not None:
        os.chown(path, uid, uid)
