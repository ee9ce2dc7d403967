"""Network namespaces, links and firewall rules, through the host's own tools (iproute2, iptables, nsenter).

The lab's data plane (``lab/network.py``, ``lab/sandbox.py``) needs root and four commands. ``require``
checks them once, before anything is created, and names what is missing and how to get it. Every
namespace the lab makes is called ``imlab-...`` (``PREFIX``), so ``lab down`` and the tests can find
(and prove gone) every one of them, whatever state a crash left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import LabError

#: Every network namespace the lab creates starts with this (istio-mesh lab).
PREFIX = "imlab-"
NETNS_DIR = Path("/run/netns")
#: ``ip netns exec NS`` bind-mounts the files of this directory over /etc (a pod's own hosts file).
ETC_NETNS_DIR = Path("/etc/netns")
#: (command, Debian package) the data plane runs.
TOOLS = (("ip", "iproute2"), ("iptables", "iptables"), ("iptables-restore", "iptables"), ("nsenter", "util-linux"))
#: Seconds any one command may take.
TIMEOUT = 20.0


def missing_requirements() -> list[str]:
    """What the data plane lacks on this machine, each with how to get it ([] when nothing)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("root (network namespaces, veth pairs and iptables rules need it): run the lab as root")
    for tool, package in TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` (Debian package {package}: apt-get install -y {package}; scripts/setup does)")
    return problems


def require() -> None:
    problems = missing_requirements()
    if problems:
        raise LabError("the lab's data plane cannot run here; missing:\n  " + "\n  ".join(problems))


def run(args: Sequence[str], netns: str | None = None, input: str | None = None, check: bool = True) -> str:
    """Run a command (inside ``netns`` when given, through nsenter) and return its stdout.

    A failure raises LabError with the command and its stderr.
    """
    cmd = [*(["nsenter", f"--net={NETNS_DIR / netns}", "--"] if netns else []), *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(cmd)}` did not finish in {TIMEOUT:.0f}s") from None
    if check and proc.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """``ip [-n NETNS] ARGS``."""
    return run(["ip", *(["-n", netns] if netns else []), *args], check=check)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    """Create the namespace (kept if it exists) with its loopback up."""
    if not name.startswith(PREFIX):
        raise ValueError(f"lab namespaces are named {PREFIX}...: {name}")
    if not exists(name):
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def sysctl(netns: str, key: str, value: str) -> None:
    run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def pids(name: str) -> list[int]:
    """The processes inside the namespace."""
    if not exists(name):
        return []
    return [int(p) for p in ip("netns", "pids", name, check=False).split()]


def delete(name: str) -> None:
    """Remove the namespace (its links go with it) and its /etc/netns files. Processes still in it are
    killed first: a namespace lives on, links and all, while any process holds it."""
    import signal

    for pid in pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if exists(name):
        ip("netns", "delete", name)
    shutil.rmtree(ETC_NETNS_DIR / name, ignore_errors=True)


def lab_namespaces() -> list[str]:
    """Every namespace the lab made (``imlab-*``)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def iptables_restore(netns: str, rules: str) -> None:
    """Apply an ``iptables-restore`` document inside the namespace without flushing other chains (a chain
    declared in it is replaced as a whole: the update is one transaction)."""
    run(["iptables-restore", "--noflush", "--wait"], netns=netns, input=rules)


def iptables_save(netns: str, table: str = "nat") -> str:
    return run(["iptables-save", "-t", table], netns=netns)
