"""One running pod: its network namespace, its files and its processes (the lab's container runtime).

A pod of cluster ``i`` gets:

* the network namespace ``imlab-c<i>-<uid[:8]>`` with ``eth0`` = the pod IP KWOK assigned (/32), the
  other end of the veth (``v<uid[:8]>``) on its network's bridge, and a default route to the network's
  router (``lab/network.py``);
* ``/etc/netns/<namespace>/hosts`` (``ip netns exec`` mounts it over ``/etc/hosts`` for the pod's
  processes): the cluster's Services by their DNS names, the way cluster DNS would answer them, and
  a ``resolv.conf`` with no reachable server (no query leaves the pod);
* ``.lab/<cluster>/pods/<uid>/``: ``pod.json`` (what the sandbox is), ``root/`` (the pod's volumes and
  every process's working directory, ``lab/pod_volumes.py``), ``logs/<container>.log`` and
  ``run/<container>.pid``;
* one process group per container (``ip netns exec <ns> [setpriv --reuid U] <argv>``), so a stop ends
  the container with everything it started (pilot-agent's Envoy).

``stop`` ends the processes (SIGTERM, then SIGKILL after the grace period), deletes the namespace (its
veth goes with it) and the pod's files except its logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import netns
from .layout import Cluster
from .network import BRIDGE, network_ns
from .pod_spec import Process
from .wait import WaitTimeoutError, wait_until

#: Seconds a run-to-completion init container may take.
INIT_TIMEOUT = 60.0
#: Seconds a container gets between SIGTERM and SIGKILL, at most (the pod may ask for less).
MAX_GRACE = 10.0


@dataclasses.dataclass(frozen=True)
class Sandbox:
    cluster: Cluster
    uid: str
    namespace: str  # Kubernetes namespace
    name: str
    ip: str

    @property
    def netns(self) -> str:
        return f"{netns.PREFIX}c{self.cluster.index}-{self.uid[:8]}"

    @property
    def veth(self) -> str:
        """The veth's end on the network's bridge (15 characters at most: an interface name's limit)."""
        return f"v{self.uid[:8]}"

    @property
    def dir(self) -> Path:
        return pods_dir(self.cluster) / self.uid

    @property
    def root(self) -> Path:
        return self.dir / "root"

    def log(self, container: str) -> Path:
        return self.dir / "logs" / f"{container}.log"

    def pidfile(self, container: str) -> Path:
        return self.dir / "run" / f"{container}.pid"

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def pods_dir(c: Cluster) -> Path:
    return c.dir / "pods"


def from_pod(c: Cluster, pod: Mapping[str, Any]) -> Sandbox:
    meta = pod["metadata"]
    return Sandbox(c, meta["uid"], meta["namespace"], meta["name"], pod["status"]["podIP"])


def existing(c: Cluster) -> list[Sandbox]:
    """The sandboxes on disk (running or left by a crash), from their ``pod.json``."""
    out = []
    d = pods_dir(c)
    if d.is_dir():
        for p in sorted(d.iterdir()):
            try:
                doc = json.loads((p / "pod.json").read_text())
            except (OSError, ValueError):
                continue
            out.append(Sandbox(c, doc["uid"], doc["namespace"], doc["name"], doc["ip"]))
    return out


# ---- network -------------------------------------------------------------------------------------
def create_network(sb: Sandbox) -> None:
    """The pod's namespace plugged into its network's bridge (kept if it exists)."""
    c = sb.cluster
    net = network_ns(c)
    netns.add(sb.netns)
    if "eth0" not in netns.ip("-o", "link", "show", netns=sb.netns):
        netns.ip("link", "delete", sb.veth, netns=net, check=False)  # a leftover of a crashed sandbox
        netns.ip("link", "add", sb.veth, "type", "veth", "peer", "name", "eth0", "netns", sb.netns, netns=net)
        netns.ip("link", "set", sb.veth, "master", BRIDGE, "up", netns=net)
        netns.ip("addr", "add", f"{sb.ip}/32", "dev", "eth0", netns=sb.netns)
        netns.ip("link", "set", "eth0", "up", netns=sb.netns)
        netns.ip("route", "add", c.router_ip, "dev", "eth0", "scope", "link", netns=sb.netns)
        netns.ip("route", "add", "default", "via", c.router_ip, "dev", "eth0", netns=sb.netns)


def hosts_file(sb: Sandbox, services: Sequence[Mapping[str, Any]]) -> str:
    """``/etc/hosts`` of the pod: the names cluster DNS gives each Service with a ClusterIP
    (``<svc>.<ns>.svc.cluster.local``, ``<svc>.<ns>.svc``, ``<svc>.<ns>``, and ``<svc>`` in the pod's own
    namespace, which its search path would add). Pure."""
    lines = ["127.0.0.1\tlocalhost", f"{sb.ip}\t{sb.name}"]
    for svc in sorted(services, key=lambda s: (s["metadata"]["namespace"], s["metadata"]["name"])):
        ip = svc.get("spec", {}).get("clusterIP")
        if not ip or ip == "None":
            continue
        name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        names = [f"{name}.{ns}.svc.cluster.local", f"{name}.{ns}.svc", f"{name}.{ns}"]
        if ns == sb.namespace:
            names.append(name)
        lines.append(f"{ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


RESOLV_CONF = (
    "# the lab: no DNS server; names come from /etc/hosts\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
)


def write_etc(sb: Sandbox, hosts: str) -> bool:
    """The pod's hosts and resolv.conf; True if the hosts file changed.

    Written in place, not renamed: ``ip netns exec`` bind-mounts the file into each process's view at
    start, and a bind mount follows the inode it was made from.
    """
    d = netns.ETC_NETNS_DIR / sb.netns
    d.mkdir(parents=True, exist_ok=True)
    resolv = d / "resolv.conf"
    if not resolv.exists():
        resolv.write_text(RESOLV_CONF)
    path = d / "hosts"
    if path.exists() and path.read_text() == hosts:
        return False
    with open(path, "r+" if path.exists() else "w") as f:
        f.seek(0)
        f.write(hosts)
        f.truncate()
    return True


def copy_image_files(sb: Sandbox, files: Mapping[str, str], uid: int) -> None:
    """The files the pod's images hold (``PodPlan.root_files``), under its root."""
    for rel, src in files.items():
        dst = sb.root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o644)
        os.chown(dst, uid, uid)


# ---- processes -----------------------------------------------------------------------------------
def _argv(sb: Sandbox, p: Process) -> list[str]:
    return ["ip", "netns", "exec", sb.netns, *as_user(p)]


def as_user(p: Process) -> list[str]:
    """The container's command run as its user (root when it has none)."""
    user = ["setpriv", f"--reuid={p.uid}", f"--regid={p.uid}", "--clear-groups", "--"] if p.uid else []
    return [*user, *p.argv]


def running_pid(sb: Sandbox, container: str) -> int | None:
    """The container's process if it is still the one started (pid and start time as recorded: a pid
    the kernel reused is not ours) and has not exited."""
    try:
        pid_text, started = sb.pidfile(container).read_text().split()[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if _is_zombie(pid) or _start_time(pid) != started:
        return None
    return pid


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat, field 22)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_zombie(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _owned_by_container(out: BinaryIO, p: Process) -> None:
    """The container's log, its stdout and stderr, owned by the container's user: a process may open
    ``/dev/stdout`` by name (Envoy's access log ``accessLogFile: /dev/stdout`` does), which reopens the
    file and so needs the user's permission, as a kubelet's stdout pipe gives it."""
    if p.uid:
        os.fchown(out.fileno(), p.uid, p.uid)


def start(sb: Sandbox, p: Process) -> int:
    """Start one container's process in its own process group; its pid."""
    log = sb.log(p.container)
    log.parent.mkdir(parents=True, exist_ok=True)
    sb.pidfile(p.container).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        _owned_by_container(out, p)
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(p.argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            _argv(sb, p),
            cwd=sb.root,
            env=dict(p.env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    sb.pidfile(p.container).write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
    return proc.pid


def run_to_completion(sb: Sandbox, p: Process) -> None:
    """An init container: run it and wait (a LabError-free failure: raises RuntimeError with its log)."""
    log = sb.log(p.container)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        _owned_by_container(out, p)
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} running: {' '.join(p.argv)}\n".encode())
        out.flush()
        try:
            rc = subprocess.run(
                _argv(sb, p),
                cwd=sb.root,
                env=dict(p.env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=INIT_TIMEOUT,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{sb.ref}: init container {p.container} did not finish in {INIT_TIMEOUT:.0f}s"
            ) from None
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"{sb.ref}: init container {p.container} exited {rc}:\n  " + "\n  ".join(tail))


def stop_container(
    sb: Sandbox, container: str, grace: float, drain: bool = True, cut_short: threading.Event | None = None
) -> None:
    """End one container as a kubelet does: SIGTERM to its main process only (so pilot-agent drains Envoy
    for its ``terminationDrainDuration`` and then ends it; a signal to the whole group would end Envoy at
    once, cutting every connection through it), then, once that process has exited, ``grace`` has passed or
    ``cut_short`` is set, SIGKILL to whatever is left of its process group. ``drain=False``: SIGTERM to the
    whole group (the lab going down: nothing is left to drain for)."""
    pid = running_pid(sb, container)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        if drain:
            os.kill(pid, signal.SIGTERM)
        else:
            os.killpg(pid, signal.SIGTERM)

    def ended() -> bool:
        return running_pid(sb, container) is None or (cut_short is not None and cut_short.is_set())

    with contextlib.suppress(WaitTimeoutError):
        wait_until(f"{sb.ref} {container} to exit", ended, grace, 0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    sb.pidfile(container).unlink(missing_ok=True)


def stop_containers(
    sb: Sandbox,
    containers: Sequence[str],
    grace: float = MAX_GRACE,
    drain: bool = True,
    cut_short: threading.Event | None = None,
) -> None:
    """The pod's containers, in this order (apps first, the proxy last); ``teardown`` then removes the rest."""
    for container in containers:
        stop_container(sb, container, min(grace, MAX_GRACE), drain, cut_short)


def teardown(sb: Sandbox) -> None:
    """The pod's network namespace (killing anything left in it) and files; its logs are kept."""
    netns.delete(sb.netns)
    shutil.rmtree(sb.root, ignore_errors=True)
    shutil.rmtree(sb.dir / "run", ignore_errors=True)
    (sb.dir / "pod.json").unlink(missing_ok=True)


def stop(sb: Sandbox, containers: Sequence[str], grace: float = MAX_GRACE, drain: bool = True) -> None:
    """End the pod: its containers (apps first, the proxy last), then its namespace and files."""
    stop_containers(sb, containers, grace, drain)
    teardown(sb)


def record(sb: Sandbox) -> None:
    sb.dir.mkdir(parents=True, exist_ok=True)
    doc = {"uid": sb.uid, "namespace": sb.namespace, "name": sb.name, "ip": sb.ip, "netns": sb.netns}
    (sb.dir / "pod.json").write_text(json.dumps(doc, indent=2) + "\n")


def containers_on_disk(sb: Sandbox) -> list[str]:
    d = sb.dir / "run"
    return sorted(p.stem for p in d.glob("*.pid")) if d.is_dir() else []
