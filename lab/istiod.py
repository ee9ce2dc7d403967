"""Real istiod (``pilot-discovery``) for each lab cluster, as a local process.

No container runs in the lab (KWOK fakes the kubelets), so the istiod Deployment the program installs
stays a Deployment of fake Pods. ``python -m lab istiod start`` runs, for every lab cluster, the real
``pilot-discovery`` the toolchain built from the same Istio commit as the charts, configured ONLY from
what the program put into that cluster, the way the kubelet would hand it to the container
(``lab/istiod_spec.py``: arguments and environment from the Deployment, mesh config, plugged-in CA,
identity). Its working directory is ``.lab/<cluster>/istiod/`` and its log ``.lab/<cluster>/logs/istiod.log``.

Who starts it: the lab's follower (``lab/follower.py``) whenever the Deployment appears or rolls, and
``python -m lab istiod start|restart|stop`` by hand. Both take ``.lab/<cluster>/run/istiod.lock`` so
they never act at once. ``istiod/source.json`` records which Deployment (uid, pod template, whether the
injector's ConfigMap existed) the running istiod was configured from; a manual ``stop`` leaves
``run/istiod.stopped`` naming the Deployment it applied to, and the follower leaves istiod stopped until
that Deployment changes or goes (or ``start``/``restart`` removes the marker).

The Deployment's names, ``identity`` and the files above are in ``lab/istiod_names.py``; ``lab.istiod``
re-exports what the follower and the tests use from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import procs
from .istiod_names import (
    DEPLOYMENT,
    NAMESPACE,
    SERVICE,
    IstiodError,
    deployment_path,
    identity,
    injector_configmap,
    injector_present,
    read_json,
    source_file,
    stop_marker,
    workdir,
    write_json,
)
from .istiod_spec import materialize
from .kubeapi import ApiError, Client
from .layout import Cluster
from .wait import wait_for_each, wait_until

# What lab.istiod offers: running istiod, and the names and places from istiod_names (lab/follower.py,
# lab/__main__.py and the tests take them from here).
__all__ = [
    "DEPLOYMENT",
    "LOCK_TIMEOUT",
    "NAMESPACE",
    "SERVICE",
    "IstiodError",
    "debug",
    "deployment_path",
    "http_url",
    "identity",
    "injector_configmap",
    "injector_present",
    "launch",
    "lock",
    "read_json",
    "ready",
    "source_file",
    "start",
    "stop",
    "stop_marker",
    "wait_ready",
    "write_json",
    "xds_address",
]

LOCK_TIMEOUT = 60.0


@contextlib.contextmanager
def lock(c: Cluster, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Exclusive hold on this cluster's istiod (the follower and the manual commands take it)."""
    path = c.dir / "run" / "istiod.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:

        def take() -> bool:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_until(
            f"the lock {path}",
            take,
            timeout,
            0.2,
            lambda: IstiodError(
                f"{c.name}: {path} is held by another lab process (the follower starting istiod?) "
                f"for more than {timeout:.0f}s"
            ),
        )
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def http_url(c: Cluster) -> str:
    """Where this cluster's istiod serves /ready and /debug/* (its port 8080)."""
    return f"http://{c.ip}:{c.istiod_ports[8080]}"


def xds_address(c: Cluster) -> str:
    """istiod's plaintext xDS (its port 15010)."""
    return f"{c.ip}:{c.istiod_ports[15010]}"


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def ready(c: Cluster, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(http_url(c) + "/ready", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def launch(binary: Path, c: Cluster, restart: bool = False) -> dict[str, Any]:
    """Starts this cluster's istiod (stopping it first with ``restart``) without waiting for it to be
    ready; returns facts for the log, with ``pid`` when one was started. The caller holds ``lock(c)``."""
    pidfile, log = c.pidfile("istiod"), c.log("istiod")
    if restart:
        procs.stop(pidfile, binary)
    elif procs.running_pid(pidfile, binary) is not None:
        return {"state": "already running"}
    api = Client(c)
    args, env, f = materialize(api, c)
    pid = procs.start(binary, args, pidfile, log, workdir(c), {**_base_env(), **env})
    write_json(source_file(c), f["source"])
    print(
        f"[lab] {c.name}: istiod pid {pid} (CLUSTER_ID={f['CLUSTER_ID']}, cacerts keys {f['cacerts'] or 'none'}, "
        f"identity {f['serviceAccount']}, injector ConfigMap {'present' if f['source']['injector'] else 'absent'}) "
        f"on {http_url(c)}",
        flush=True,
    )
    return {**f, "pid": pid, "http": http_url(c)}


def wait_ready(binary: Path, cl: list[Cluster], timeout: float) -> None:
    """Waits until every cluster's istiod answers /ready; fails with its log if one exits or times out."""

    def started(c: Cluster) -> bool:
        if procs.running_pid(c.pidfile("istiod"), binary) is None:
            # The follower restarts istiod under the lock (a rollout seen meanwhile): between its stop and
            # its start no istiod runs. Only one that is still gone once the lock is free has exited.
            with lock(c):
                if procs.running_pid(c.pidfile("istiod"), binary) is None:
                    raise IstiodError(
                        f"{c.name}: istiod exited during start-up. Last lines of {c.log('istiod')}:\n"
                        + procs.tail(c.log("istiod"), 30)
                    )
            return False
        return ready(c)

    wait_for_each(
        "istiod /ready",
        cl,
        started,
        timeout,
        0.5,
        lambda pending: IstiodError(
            f"istiod not ready after {timeout:.0f}s in {', '.join(c.name for c in pending)}; see "
            + ", ".join(str(c.log("istiod")) for c in pending)
        ),
    )


def start(binary: Path, cl: list[Cluster], timeout: float = 120.0, restart: bool = False) -> dict[str, Any]:
    """Starts (or, with ``restart``, restarts) istiod for each cluster and waits until each is ready
    (one already running too). A manual start lifts a manual ``stop`` (its marker is removed)."""
    facts: dict[str, Any] = {}
    for c in cl:
        with lock(c):
            stop_marker(c).unlink(missing_ok=True)
            facts[c.name] = launch(binary, c, restart)
        if "pid" not in facts[c.name]:
            print(f"[lab] {c.name}: istiod already running", flush=True)
    wait_ready(binary, cl, timeout)
    return facts


def stop(binary: Path | str, cl: list[Cluster], hold: bool = False) -> list[str]:
    """Stops istiod in each cluster; returns the clusters where one ran.

    ``hold`` (a manual ``lab istiod stop``): first records the Deployment the stop applies to in
    ``stop_marker``, so the follower leaves istiod stopped until that Deployment changes or is deleted.
    """
    stopped = []
    for c in cl:
        with lock(c):
            if hold:
                current: dict[str, Any] | None = None
                try:
                    api = Client(c, timeout=5)
                    dep = api.get(deployment_path())
                    current = identity(dep, injector_present(api, dep))
                except (OSError, ApiError, ValueError):
                    current = read_json(source_file(c))  # no answer: the Deployment istiod last ran from
                write_json(stop_marker(c), {"deployment": current, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            if procs.stop(c.pidfile("istiod"), binary):
                stopped.append(c.name)
    return stopped


def debug(c: Cluster, path: str, timeout: float = 10.0) -> Any:
    """GET istiod's /debug/<path> as JSON."""
    with urllib.request.urlopen(f"{http_url(c)}/debug/{path}", timeout=timeout) as r:
        return json.loads(r.read() or b"null")
