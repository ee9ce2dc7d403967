"""The control-plane processes of a lab cluster, as one table: how each is started and how its health is read.

Per cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (which plays the
kubelet of the fake nodes), in start order. Each ``Component`` holds its command line (the binary
comes from the toolchain, ``lab/binaries.py``) and its health probe; ``lab/cluster.py`` starts them,
waits for the probes and stops them in reverse order.
"""

from __future__ import annotations

import dataclasses
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import agents
from .kwok import ENABLED_CRDS, KWOK_NODE_ANNOTATION, LB_STAGE_FILE, PORT_FORWARD_FILE
from .layout import Cluster
from .pki import CA_CERT, CA_DIR

if TYPE_CHECKING:
    from .binaries import Toolchain

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Admission webhooks are on by default: an in-cluster webhook (istiod's sidecar injector and config
# validator) names a Service, and the API server's egress selector sends the dial to the lab's egress
# proxy, which routes the Service's ClusterIP:443 to the local istiod (the follower writes the route).
# `up --no-webhooks` disables the two admission plugins (then no webhook is ever called).
WEBHOOK_PLUGINS = "MutatingAdmissionWebhook,ValidatingAdmissionWebhook"
# Controllers that need a cloud provider; everything else of `*` runs.
CLOUD_CONTROLLERS = ("service-lb-controller", "node-route-controller", "cloud-node-lifecycle-controller")

#: A health probe: True once the process serves; may raise OSError/SSLError/ValueError (see ``healthy``).
Probe = Callable[[], bool]


@dataclasses.dataclass(frozen=True)
class Component:
    """One control-plane process: its name (also its binary's and its files' name), its arguments
    (``command_line(toolchain, cluster, webhooks)``) and its health probe (``probe(cluster)``)."""

    name: str
    command_line: Callable[[Toolchain, Cluster, bool], list[str]]
    probe: Callable[[Cluster], Probe]


# ---- command lines -------------------------------------------------------------------------------
def _etcd_args(tc: Toolchain, c: Cluster, webhooks: bool) -> list[str]:
    p = c.pki
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


def _apiserver_args(tc: Toolchain, c: Cluster, webhooks: bool) -> list[str]:
    p = c.pki
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


def _controller_manager_args(tc: Toolchain, c: Cluster, webhooks: bool) -> list[str]:
    p = c.pki
    kc = c.component_kubeconfig("kube-controller-manager")
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


def _scheduler_args(tc: Toolchain, c: Cluster, webhooks: bool) -> list[str]:
    kc = c.component_kubeconfig("kube-scheduler")
    return [
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        f"--bind-address={c.ip}",
        f"--secure-port={c.scheduler_port}",
        "--leader-elect=false",
    ]


def _kwok_args(tc: Toolchain, c: Cluster, webhooks: bool) -> list[str]:
    p = c.pki
    return [
        f"--config={tc.kwok_stages}",
        f"--config={c.dir / LB_STAGE_FILE}",
        f"--config={c.dir / PORT_FORWARD_FILE}",
        f"--kubeconfig={c.component_kubeconfig('kwok')}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        f"--node-ip={c.ip}",
        f"--cidr={c.pod_cidr}",
        # KWOK's server is the fake nodes' kubelet API: nodes advertise this port, TLS like a kubelet.
        f"--server-address={c.ip}:{c.kwok_port}",
        f"--node-port={c.kwok_port}",
        f"--tls-cert-file={p / 'kwok-serving.crt'}",
        f"--tls-private-key-file={p / 'kwok-serving.key'}",
        "--node-lease-duration-seconds=40",
        # The data plane's per-pod Exec and PortForward objects (lab/podexec.py).
        f"--enable-crds={','.join(ENABLED_CRDS)}",
    ]


# ---- health probes -------------------------------------------------------------------------------
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


def _etcd_probe(c: Cluster) -> Probe:
    ctx = ssl.create_default_context(cafile=str(CA_CERT))
    ctx.load_cert_chain(str(c.pki / "apiserver-etcd-client.crt"), str(c.pki / "apiserver-etcd-client.key"))
    url = f"{c.etcd_url}/health"
    return lambda: '"health":"true"' in _https_get(url, ctx)[1]


def _apiserver_probe(c: Cluster) -> Probe:
    ctx = ssl.create_default_context(cafile=str(CA_CERT))
    ctx.load_cert_chain(str(c.pki / "admin.crt"), str(c.pki / "admin.key"))
    url = f"{c.server}/readyz"
    return lambda: _https_get(url, ctx) == (200, "ok")


def _healthz_probe(port: Callable[[Cluster], int]) -> Callable[[Cluster], Probe]:
    """``/healthz`` answering ``ok`` on the cluster's address at ``port(cluster)`` (self-signed TLS)."""

    def probe(c: Cluster) -> Probe:
        url = f"https://{c.ip}:{port(c)}/healthz"
        ctx = _insecure()
        return lambda: _https_get(url, ctx) == (200, "ok")

    return probe


def _kwok_probe(c: Cluster) -> Probe:
    url = f"https://{c.ip}:{c.kwok_port}/healthz"
    ctx = ssl.create_default_context(cafile=str(CA_CERT))
    return lambda: _https_get(url, ctx)[0] == 200


def healthy(probe: Probe) -> bool:
    """Run a probe; a process that does not answer yet (connection refused, TLS, bad reply) is unhealthy."""
    try:
        return probe()
    except (OSError, ssl.SSLError, ValueError):
        return False


# ---- the table -----------------------------------------------------------------------------------
COMPONENTS: tuple[Component, ...] = (
    Component("etcd", _etcd_args, _etcd_probe),
    Component("kube-apiserver", _apiserver_args, _apiserver_probe),
    Component("kube-controller-manager", _controller_manager_args, _healthz_probe(lambda c: c.controller_manager_port)),
    Component("kube-scheduler", _scheduler_args, _healthz_probe(lambda c: c.scheduler_port)),
    Component("kwok", _kwok_args, _kwok_probe),
)
_BY_NAME = {comp.name: comp for comp in COMPONENTS}


def component(name: str) -> Component:
    """The component called ``name`` (ValueError for any other name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(name) from None
