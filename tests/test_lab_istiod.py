"""How the lab turns the istiod Deployment the program installed into a local pilot-discovery command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab import istiod, istiod_spec
from lab.layout import Cluster

# The discovery container's args as Istio 1.30's istiod chart renders them.
CHART_ARGS = [
    "discovery",
    "--monitoringAddr=:15014",
    "--log_output_level=default:info",
    "--domain",
    "cluster.local",
    "--keepaliveMaxServerConnectionAge",
    "30m",
]


def test_listen_addresses_move_to_the_clusters_address_and_port_block(tmp_path: Path) -> None:
    c = Cluster(2)
    files = {k: tmp_path / k for k in ("kubeconfig", "mesh", "meshNetworks")}
    args = istiod_spec._args(c, [*CHART_ARGS, "--httpAddr", ":8080", "--kubeconfig=/elsewhere"], files)
    assert args[:6] == CHART_ARGS[:1] + CHART_ARGS[2:]  # everything else kept, in order
    assert "--monitoringAddr=:15014" not in args and ":8080" not in args and "--kubeconfig=/elsewhere" not in args
    assert f"--monitoringAddr=127.0.2.1:{c.istiod_ports[15014]}" in args
    assert f"--httpAddr=127.0.2.1:{c.istiod_ports[8080]}" in args
    assert f"--grpcAddr=127.0.2.1:{c.istiod_ports[15010]}" in args
    assert f"--secureGRPCAddr=127.0.2.1:{c.istiod_ports[15012]}" in args
    assert f"--httpsAddr=127.0.2.1:{c.istiod_ports[15017]}" in args
    assert "--ctrlz_address=127.0.2.1" in args and f"--ctrlz_port={c.istiod_ports[9876]}" in args
    assert f"--kubeconfig={files['kubeconfig']}" in args and f"--meshConfig={files['mesh']}" in args


def test_istiod_ports_never_collide_with_each_other_or_the_control_plane() -> None:
    seen: set[tuple[str, int]] = set()
    for i in (1, 2, 3, 50):
        c = Cluster(i)
        control = {
            c.apiserver_port,
            c.etcd_port,
            c.etcd_peer_port,
            c.controller_manager_port,
            c.scheduler_port,
            c.kwok_port,
        }
        ports = set(c.istiod_ports.values())
        assert len(ports) == 6 and not ports & control
        for p in ports:
            assert (c.ip, p) not in seen
            seen.add((c.ip, p))


class _FakeApi:
    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects

    def get(self, path: str) -> Any:
        from lab.kubeapi import ApiError

        if path not in self.objects:
            raise ApiError(404, "not found")
        return self.objects[path]


def test_env_is_resolved_like_the_kubelet_does() -> None:
    c = Cluster(1)
    entries = [
        {"name": "CLUSTER_ID", "value": "cluster1"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}},
        {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
    ]
    api = _FakeApi({"/api/v1/namespaces/istio-system/configmaps/x": {"data": {"k": "v"}}})
    env = istiod_spec._resolve_env(api, c, entries, "istiod")  # type: ignore[arg-type]
    assert env["CLUSTER_ID"] == "cluster1" and env["POD_NAMESPACE"] == "istio-system"
    assert env["SERVICE_ACCOUNT"] == "istiod" and env["POD_NAME"] == "istiod-lab-cluster1"
    assert int(env["GOMAXPROCS"]) >= 1 and env["FROM_CM"] == "v" and "OPTIONAL" not in env


def test_a_required_reference_that_is_missing_is_named() -> None:
    entries = [{"name": "NEEDED", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]
    with pytest.raises(istiod.IstiodError, match="NEEDED needs secrets/gone key k"):
        istiod_spec._resolve_env(_FakeApi({}), Cluster(1), entries, "istiod")  # type: ignore[arg-type]


def test_no_istiod_deployment_says_to_install_the_mesh_first() -> None:
    with pytest.raises(istiod.IstiodError, match="install the mesh first"):
        istiod_spec._deployment_container(_FakeApi({}), Cluster(1))  # type: ignore[arg-type]


def test_port_forwards_to_istio_system_pods_reach_that_clusters_istiod(tmp_path: Path, monkeypatch: Any) -> None:
    """KWOK's ClusterPortForward: the kubelet half of `kubectl port-forward` (and verify) in the lab."""
    import yaml

    from lab import kwok, layout

    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    c = Cluster(3)
    c.dir.mkdir(parents=True)
    kwok.write_port_forward(c)
    doc = yaml.safe_load((c.dir / kwok.PORT_FORWARD_FILE).read_text())
    assert doc["kind"] == "ClusterPortForward" and doc["apiVersion"] == "kwok.x-k8s.io/v1alpha1"
    assert doc["spec"]["selector"] == {"matchNamespaces": ["istio-system"]}
    targets = {f["ports"][0]: (f["target"]["address"], f["target"]["port"]) for f in doc["spec"]["forwards"]}
    assert targets[8080] == ("127.0.3.1", c.istiod_ports[8080])
    assert targets[15012] == ("127.0.3.1", c.istiod_ports[15012])
    assert set(targets) == {8080, 15010, 15012, 15014}
