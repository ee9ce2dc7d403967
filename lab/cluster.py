"""Bring the lab's clusters up, down, and report on them.

Per cluster, five control-plane processes: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK (which plays the kubelet of the fake nodes); and two of the lab's own
(``lab/agents.py``): the egress proxy the API server dials the cluster's network through, and the
follower that runs istiod as its Deployment says. Binaries and KWOK's default stages come from the
toolchain cache (``toolchain/build``); nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from . import agents, procs
from .kubeapi import ApiError, Client, write_kubeconfigs, write_merged_kubeconfig
from .kwok import (
    KWOK_NODE_ANNOTATION,
    LB_STAGE_FILE,
    PORT_FORWARD_FILE,
    ensure_nodes,
    node_readiness,
    nodes_ready,
    release_node_leases,
    write_lb_stage,
    write_port_forward,
)
from .layout import LAB_DIR, NODES_PER_CLUSTER, REPO, Cluster
from .pki import CA_CERT, CA_DIR, ensure_cluster_pki

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Admission webhooks are on by default: an in-cluster webhook (istiod's sidecar injector and config
# validator) names a Service, and the API server's egress selector sends the dial to the lab's egress
# proxy, which routes the Service's ClusterIP:443 to the local istiod (the follower writes the route).
# `up --no-webhooks` disables the two admission plugins (then no webhook is ever called).
WEBHOOK_PLUGINS = "MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
# Controllers that need a cloud provider; everything else of `*` runs.
CLOUD_CONTROLLERS = ("service-lb-controller", "node-route-controller", "cloud-node-lifecycle-controller")


class LabError(Exception):
    pass


# ---- toolchain -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Toolchain:
    dir: Path

    def bin(self, name: str) -> Path:
        return self.dir / "bin" / name

    @property
    def kwok_stages(self) -> Path:
        return self.dir / "share" / "kwok" / "default-stages.yaml"


def find_toolchain() -> Toolchain:
    """The toolchain cache, complete (or a LabError saying how to build it)."""
    tc = _locate_toolchain(required=True)
    assert tc is not None
    return tc


def _locate_toolchain(required: bool) -> Toolchain | None:
    """The toolchain cache: $ISTIO_MESH_TOOLCHAIN, else what `toolchain/build --dir` names."""
    d = os.environ.get("ISTIO_MESH_TOOLCHAIN")
    if not d:
        try:
            d = subprocess.run(
                [str(REPO / "toolchain" / "build"), "--dir"], check=True, capture_output=True, text=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            if required:
                raise LabError(f"cannot locate the toolchain (toolchain/build --dir): {e}") from None
            return None
    tc = Toolchain(Path(d))
    missing = [c for c in COMPONENTS if not os.access(tc.bin(c), os.X_OK)]
    if not tc.kwok_stages.is_file():
        missing.append(str(tc.kwok_stages))
    if missing and required:
        raise LabError(
            f"the toolchain in {tc.dir} lacks {', '.join(missing)}; build it with:\n"
            "  toolchain/build kube-apiserver kube-controller-manager kube-scheduler etcd kwok"
        )
    return tc


# ---- command lines -------------------------------------------------------------------------------
def command_line(tc: Toolchain, c: Cluster, comp: str, webhooks: bool) -> list[str]:
    p = c.pki
    if comp == "etcd":
        return [
            f"--name={c.name}",
            f"--data-dir={c.dir / 'etcd'}",
            f"--listen-client-urls={c.etcd_url}",
            f"--advertise-client-urls={c.etcd_url}",
            f"--listen-peer-urls=https://{c.ip}:{c.etcd_peer_port}",
            f"--initial-advertise-peer-urls=https://{c.ip}:{c.etcd_peer_port}",
            f"--initial-cluster={c.name}=https://{c.ip}:{c.etcd_peer_port}",
            f"--initial-cluster-token={c.name}",
            f"--cert-file={p / 'etcd.crt'}",
            f"--key-file={p / 'etcd.key'}",
            f"--trusted-ca-file={CA_CERT}",
            "--client-cert-auth=true",
            f"--peer-cert-file={p / 'etcd.crt'}",
            f"--peer-key-file={p / 'etcd.key'}",
            f"--peer-trusted-ca-file={CA_CERT}",
            "--peer-client-cert-auth=true",
            # Lab data: skip fsync (much faster on a shared disk; a host crash may lose the lab).
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]
    if comp == "kube-apiserver":
        args = [
            f"--advertise-address={c.ip}",
            f"--bind-address={c.ip}",
            f"--secure-port={c.apiserver_port}",
            f"--etcd-servers={c.etcd_url}",
            f"--etcd-cafile={CA_CERT}",
            f"--etcd-certfile={p / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={p / 'apiserver-etcd-client.key'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={CA_CERT}",
            f"--service-cluster-ip-range={c.service_cidr}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            # The API server writes its --advertise-address into the `kubernetes` Service's
            # Endpoints/EndpointSlice, and validation refuses loopback addresses there (it would
            # log an error every 10 s). Nothing in the lab reaches the API server through that
            # Service (pods are fake), so the Service stays without endpoints.
            "--endpoint-reconciler-type=none",
            # Request-header authentication for aggregated API servers, as kubeadm sets it up (also
            # what the controller manager and scheduler read from extension-apiserver-authentication).
            f"--requestheader-client-ca-file={CA_CERT}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            # Kubelet APIs (port-forward, logs, exec) go to KWOK's server on the node's InternalIP (the
            # fake nodes' Hostname does not resolve), verified against the lab CA.
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={CA_CERT}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            # Every dial of the "cluster" network context (Service-backed webhooks, kubelet traffic) goes
            # through the lab's egress proxy (lab/egress.py): that is how a webhook Service's virtual
            # ClusterIP reaches the local istiod.
            f"--egress-selector-config-file={agents.egress_selector_file(c)}",
        ]
        if not webhooks:
            args.append(f"--disable-admission-plugins={WEBHOOK_PLUGINS}")
        return args
    if comp == "kube-controller-manager":
        kc = c.component_kubeconfig(comp)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={c.ip}",
            f"--secure-port={c.controller_manager_port}",
            f"--cluster-name={c.name}",
            # The token controller signs `kubernetes.io/service-account-token` Secrets with this key
            # and puts this CA in their `ca.crt` (and in every namespace's kube-root-ca.crt).
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={CA_CERT}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={CA_CERT}",
            f"--cluster-signing-key-file={CA_DIR / 'ca.key'}",
            f"--service-cluster-ip-range={c.service_cidr}",
            "--controllers=*," + ",".join(f"-{x}" for x in CLOUD_CONTROLLERS),
            "--leader-elect=false",
        ]
    if comp == "kube-scheduler":
        kc = c.component_kubeconfig(comp)
        return [
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            f"--bind-address={c.ip}",
            f"--secure-port={c.scheduler_port}",
            "--leader-elect=false",
        ]
    if comp == "kwok":
        return [
            f"--config={tc.kwok_stages}",
            f"--config={c.dir / LB_STAGE_FILE}",
            f"--config={c.dir / PORT_FORWARD_FILE}",
            f"--kubeconfig={c.component_kubeconfig(comp)}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--node-ip={c.ip}",
            f"--cidr={c.pod_cidr}",
            # KWOK's server is the fake nodes' kubelet API: nodes advertise this port, TLS like a kubelet.
            f"--server-address={c.ip}:{c.kwok_port}",
            f"--node-port={c.kwok_port}",
            f"--tls-cert-file={p / 'kwok-serving.crt'}",
            f"--tls-private-key-file={p / 'kwok-serving.key'}",
            "--node-lease-duration-seconds=40",
        ]
    raise ValueError(comp)


# ---- health checks -------------------------------------------------------------------------------
def _https_get(url: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def _insecure() -> ssl.SSLContext:
    # kube-controller-manager, kube-scheduler and KWOK serve self-signed certificates.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def health_probe(c: Cluster, comp: str) -> Callable[[], bool]:
    if comp == "etcd":
        ctx = ssl.create_default_context(cafile=str(CA_CERT))
        ctx.load_cert_chain(str(c.pki / "apiserver-etcd-client.crt"), str(c.pki / "apiserver-etcd-client.key"))
        url = f"{c.etcd_url}/health"
        return lambda: '"health":"true"' in _https_get(url, ctx)[1]
    if comp == "kube-apiserver":
        ctx = ssl.create_default_context(cafile=str(CA_CERT))
        ctx.load_cert_chain(str(c.pki / "admin.crt"), str(c.pki / "admin.key"))
        url = f"{c.server}/readyz"
        return lambda: _https_get(url, ctx) == (200, "ok")
    port = {
        "kube-controller-manager": c.controller_manager_port,
        "kube-scheduler": c.scheduler_port,
    }.get(comp)
    if port:
        url = f"https://{c.ip}:{port}/healthz"
        ctx = _insecure()
        return lambda: _https_get(url, ctx) == (200, "ok")
    if comp == "kwok":
        url = f"https://{c.ip}:{c.kwok_port}/healthz"
        ctx = ssl.create_default_context(cafile=str(CA_CERT))
        return lambda: _https_get(url, ctx)[0] == 200
    raise ValueError(comp)


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return probe()
    except (OSError, ssl.SSLError, ValueError):
        return False


# ---- up ------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def _start_component(tc: Toolchain, c: Cluster, comp: str, webhooks: bool) -> tuple[int, bool]:
    binary = tc.bin(comp)
    pid = procs.running_pid(c.pidfile(comp), binary)
    if pid is not None:
        return pid, False
    args = command_line(tc, c, comp, webhooks)
    return procs.start(binary, args, c.pidfile(comp), c.log(comp), c.dir), True


def _wait(what: str, items: list, check: Callable, timeout: float, on_fail: Callable) -> None:
    """Poll ``check(item)`` for every item until all pass; ``on_fail(item)`` explains a failure."""
    pending = list(items)
    deadline = time.monotonic() + timeout
    while pending:
        for item in list(pending):
            if check(item):
                pending.remove(item)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"timed out after {timeout:.0f}s waiting for {what}:\n" + "\n".join(on_fail(i) for i in pending)
            )
        time.sleep(0.25)


def _process_check(tc: Toolchain, c: Cluster, comp: str, pid: int) -> None:
    if procs.exited(pid):
        raise LabError(
            f"{c.name}: {comp} (pid {pid}) exited during start-up. Last lines of {c.log(comp)}:\n"
            + procs.tail(c.log(comp), 25)
        )


def _bring_up(tc: Toolchain, cl: list[Cluster], comps: tuple[str, ...], webhooks: bool, timeout: float) -> None:
    started = {}
    for c in cl:
        for comp in comps:
            pid, fresh = _start_component(tc, c, comp, webhooks)
            started[(c, comp)] = pid
            if fresh:
                _log(f"{c.name}: started {comp} (pid {pid}, log {c.log(comp)})")
    probes = {(c, comp): health_probe(c, comp) for c in cl for comp in comps}

    def check(key: tuple[Cluster, str]) -> bool:
        c, comp = key
        _process_check(tc, c, comp, started[key])
        return _safe(probes[key])

    def fail(key: tuple[Cluster, str]) -> str:
        c, comp = key
        return f"  {c.name}: {comp} (pid {started[key]}) is not healthy; last lines of {c.log(comp)}:\n" + procs.tail(
            c.log(comp), 10
        )

    _wait(" and ".join(comps) + " health", list(probes), check, timeout, fail)


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


def up(n: int, webhooks: bool, timeout: float, nodes: int = NODES_PER_CLUSTER) -> None:
    from .layout import clusters

    t0 = time.monotonic()
    tc = find_toolchain()
    cl = clusters(n)
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    for c in cl:
        c.dir.mkdir(parents=True, exist_ok=True)
        ensure_cluster_pki(c)
        write_kubeconfigs(c)
        write_lb_stage(c)
        write_port_forward(c)
        agents.write_egress_selector(c)
    merged = write_merged_kubeconfig(cl)

    _bring_up(tc, cl, ("etcd",), webhooks, timeout)
    _start_egress(cl, timeout)
    _bring_up(tc, cl, ("kube-apiserver",), webhooks, timeout)
    _log(f"API servers ready ({time.monotonic() - t0:.1f}s)")
    for c in cl:
        if procs.running_pid(c.pidfile("kwok"), tc.bin("kwok")) is None:
            release_node_leases(c)
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
def _binary_name(tc: Toolchain | None, comp: str) -> Path | str:
    return tc.bin(comp) if tc else comp


def down(cl: list[Cluster], purge: bool) -> None:
    tc = _locate_toolchain(required=False)
    from . import istiod

    # The followers first, so none starts istiod again; the egress proxies last (after their API servers).
    for c in cl:
        if agents.stop(c, "follower"):
            _log(f"{c.name}: stopped the istiod follower")
    for name in istiod.stop(_binary_name(tc, "pilot-discovery"), cl):
        _log(f"{name}: stopped istiod")
    for c in cl:
        stopped = [comp for comp in reversed(COMPONENTS) if procs.stop(c.pidfile(comp), _binary_name(tc, comp))]
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
    tc = tc or _locate_toolchain(required=False)
    if not cl:
        print("no lab clusters (run: python -m lab up)")
        return 0
    down_count = 0
    total_kib = 0
    for c in cl:
        print(f"{c.name}  network={c.network}  node IP={c.ip}  server={c.server}")
        print(f"  kubeconfig: {c.kubeconfig} (context {c.name})")
        cols = []
        for comp in COMPONENTS:
            pid = procs.running_pid(c.pidfile(comp), _binary_name(tc, comp))
            if pid is None:
                down_count += 1
                cols.append(f"{comp}=down")
            else:
                kib = procs.rss_kib(pid)
                total_kib += kib
                cols.append(f"{comp}=up(pid {pid}, {kib // 1024} MiB)")
        for agent in agents.AGENTS:
            pid = agents.running(c, agent)
            if pid is None:
                down_count += 1
                cols.append(f"{agent}=down")
            else:
                kib = procs.rss_kib(pid)
                total_kib += kib
                cols.append(f"{agent}=up(pid {pid}, {kib // 1024} MiB)")
        print("  processes: " + "  ".join(cols))
        ist = procs.running_pid(c.pidfile("istiod"), _binary_name(tc, "pilot-discovery"))
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
