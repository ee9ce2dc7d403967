"""The control-plane command lines, pinned argument by argument.

Generated from lab/cluster.py's ``command_line`` before it became the table in lab/control_plane.py
(issue 13): any change to a flag of etcd, kube-apiserver, kube-controller-manager, kube-scheduler or
KWOK fails here, so a refactor provably starts the same processes. ``{lab}`` stands for the lab's
directory (``LAB_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import layout
from lab.binaries import Toolchain
from lab.control_plane import COMPONENTS, component
from lab.layout import Cluster

TC = Toolchain(Path("/toolchain"))
WEBHOOKS_OFF = "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook"

EXPECTED_ARGV: dict[str, list[str]] = {
    "etcd": [
        "--name=cluster2",
        "--data-dir={lab}/cluster2/etcd",
        "--listen-client-urls=https://127.0.2.1:20279",
        "--advertise-client-urls=https://127.0.2.1:20279",
        "--listen-peer-urls=https://127.0.2.1:20280",
        "--initial-advertise-peer-urls=https://127.0.2.1:20280",
        "--initial-cluster=cluster2=https://127.0.2.1:20280",
        "--initial-cluster-token=cluster2",
        "--cert-file={lab}/cluster2/pki/etcd.crt",
        "--key-file={lab}/cluster2/pki/etcd.key",
        "--trusted-ca-file={lab}/ca/ca.crt",
        "--client-cert-auth=true",
        "--peer-cert-file={lab}/cluster2/pki/etcd.crt",
        "--peer-key-file={lab}/cluster2/pki/etcd.key",
        "--peer-trusted-ca-file={lab}/ca/ca.crt",
        "--peer-client-cert-auth=true",
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ],
    "kube-apiserver": [
        "--advertise-address=127.0.2.1",
        "--bind-address=127.0.2.1",
        "--secure-port=20243",
        "--etcd-servers=https://127.0.2.1:20279",
        "--etcd-cafile={lab}/ca/ca.crt",
        "--etcd-certfile={lab}/cluster2/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile={lab}/cluster2/pki/apiserver-etcd-client.key",
        "--tls-cert-file={lab}/cluster2/pki/apiserver.crt",
        "--tls-private-key-file={lab}/cluster2/pki/apiserver.key",
        "--client-ca-file={lab}/ca/ca.crt",
        "--service-cluster-ip-range=198.19.2.0/24",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file={lab}/cluster2/pki/sa.pub",
        "--service-account-signing-key-file={lab}/cluster2/pki/sa.key",
        "--authorization-mode=Node,RBAC",
        "--allow-privileged=true",
        "--profiling=false",
        "--endpoint-reconciler-type=none",
        "--requestheader-client-ca-file={lab}/ca/ca.crt",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--proxy-client-cert-file={lab}/cluster2/pki/front-proxy-client.crt",
        "--proxy-client-key-file={lab}/cluster2/pki/front-proxy-client.key",
        "--kubelet-preferred-address-types=InternalIP",
        "--kubelet-certificate-authority={lab}/ca/ca.crt",
        "--kubelet-client-certificate={lab}/cluster2/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key={lab}/cluster2/pki/apiserver-kubelet-client.key",
        "--egress-selector-config-file={lab}/cluster2/egress-selector.yaml",
    ],
    "kube-controller-manager": [
        "--kubeconfig={lab}/cluster2/kube-controller-manager.kubeconfig",
        "--authentication-kubeconfig={lab}/cluster2/kube-controller-manager.kubeconfig",
        "--authorization-kubeconfig={lab}/cluster2/kube-controller-manager.kubeconfig",
        "--bind-address=127.0.2.1",
        "--secure-port=20257",
        "--cluster-name=cluster2",
        "--service-account-private-key-file={lab}/cluster2/pki/sa.key",
        "--root-ca-file={lab}/ca/ca.crt",
        "--use-service-account-credentials=true",
        "--cluster-signing-cert-file={lab}/ca/ca.crt",
        "--cluster-signing-key-file={lab}/ca/ca.key",
        "--service-cluster-ip-range=198.19.2.0/24",
        "--controllers=*,-service-lb-controller,-node-route-controller,-cloud-node-lifecycle-controller",
        "--leader-elect=false",
    ],
    "kube-scheduler": [
        "--kubeconfig={lab}/cluster2/kube-scheduler.kubeconfig",
        "--authentication-kubeconfig={lab}/cluster2/kube-scheduler.kubeconfig",
        "--authorization-kubeconfig={lab}/cluster2/kube-scheduler.kubeconfig",
        "--bind-address=127.0.2.1",
        "--secure-port=20259",
        "--leader-elect=false",
    ],
    "kwok": [
        "--config=/toolchain/share/kwok/default-stages.yaml",
        "--config={lab}/cluster2/kwok-loadbalancer-stage.yaml",
        "--config={lab}/cluster2/kwok-port-forward.yaml",
        "--kubeconfig={lab}/cluster2/kwok.kubeconfig",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=127.0.2.1",
        "--cidr=198.18.8.0/22",
        "--server-address=127.0.2.1:20247",
        "--node-port=20247",
        "--tls-cert-file={lab}/cluster2/pki/kwok-serving.crt",
        "--tls-private-key-file={lab}/cluster2/pki/kwok-serving.key",
        "--node-lease-duration-seconds=40",
        "--enable-crds=Exec,PortForward",
    ],
}


def _expected(component: str) -> list[str]:
    return [a.replace("{lab}", str(layout.LAB_DIR)) for a in EXPECTED_ARGV[component]]


def test_every_component_is_pinned() -> None:
    assert tuple(EXPECTED_ARGV) == tuple(comp.name for comp in COMPONENTS)  # and in start order


def test_each_command_line_is_unchanged_with_webhooks_on() -> None:
    c = Cluster(2)
    for name in EXPECTED_ARGV:
        assert component(name).command_line(TC, c, True) == _expected(name), name


def test_no_webhooks_only_adds_the_disabled_admission_plugins_to_the_api_server() -> None:
    c = Cluster(2)
    for name in EXPECTED_ARGV:
        want = _expected(name) + ([WEBHOOKS_OFF] if name == "kube-apiserver" else [])
        assert component(name).command_line(TC, c, False) == want, name


def test_an_unknown_component_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kubelet"):
        component("kubelet")
