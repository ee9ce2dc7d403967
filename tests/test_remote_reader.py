"""The account peers read a cluster as (``RemoteReader``): only what a peer istiod reads, or Istio's own
reader.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

from support.mesh import CHART, CLUSTER_ROLE, CLUSTER_ROLE_BINDING, ROLE, SECRET, SERVICE_ACCOUNT, build
from support.mocks import Registration


def _rules(role: Registration) -> list[tuple[list[str], list[str], list[str], list[str]]]:
    return [(r["apiGroups"], r["resources"], r.get("resourceNames", []), r["verbs"]) for r in role.inputs["rules"]]


def test_the_reader_lists_and_watches_only_what_a_peer_istiod_reads(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for cl in ("cluster1", "cluster2"):
        role = rec.one(CLUSTER_ROLE, "istio-mesh-reader", f"mesh-{cl}-")
        assert rec.provider_of(role) == f"k8s-{cl}"
        assert _rules(role) == [
            ([""], ["namespaces", "pods", "services", "nodes"], [], ["list", "watch"]),
            (["discovery.k8s.io"], ["endpointslices"], [], ["list", "watch"]),
            (["apiextensions.k8s.io"], ["customresourcedefinitions"], [], ["list", "watch"]),
            (["gateway.networking.k8s.io"], ["gateways"], [], ["list", "watch"]),
            (["networking.istio.io"], ["workloadentries"], [], ["list", "watch"]),
            ([""], ["secrets"], [], ["list", "watch"]),
        ]
        config_role = rec.one(ROLE, "istio-system/istio-mesh-reader", f"mesh-{cl}-")
        assert _rules(config_role) == [([""], ["configmaps"], ["istio"], ["list", "watch"])]
        binding = rec.one(CLUSTER_ROLE_BINDING, "istio-mesh-reader", f"mesh-{cl}-")
        assert binding.inputs["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "istio-mesh-reader",
        }
        assert binding.inputs["subjects"] == [
            {"kind": "ServiceAccount", "name": "istio-mesh-reader", "namespace": "istio-system"}
        ]
        account = rec.one(SERVICE_ACCOUNT, "istio-system/istio-mesh-reader", f"mesh-{cl}-")
        assert account.inputs["automountServiceAccountToken"] is False


def test_a_reader_without_secrets_is_a_choice(mesh_settings: Any) -> None:
    rec = build(mesh_settings(remoteAccess={"readSecrets": False}))
    for cl in ("cluster1", "cluster2"):
        rules = _rules(rec.one(CLUSTER_ROLE, "istio-mesh-reader", f"mesh-{cl}-"))
        assert not [r for r in rules if "secrets" in r[1]]
        assert len(rules) == 5


def test_istios_own_reader_keeps_the_names_of_earlier_versions(mesh_settings: Any) -> None:
    rec = build(mesh_settings(remoteAccess={"reader": "istio"}))
    assert not rec.of_type(CLUSTER_ROLE) and not [r for r in rec.of_type(SERVICE_ACCOUNT) if "reader" in r.name]
    for source, reader in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        token = rec.one(SECRET, f"istio-system/istio-reader-token-{reader}", name_contains=f"-{source}-reader-token")
        assert token.inputs["metadata"]["annotations"] == {
            "kubernetes.io/service-account.name": "istio-reader-service-account"
        }
        # Istio's reader account is rendered by the charts: the token waits for them.
        assert rec.depends_on(token, rec.one(CHART, name_contains=f"mesh-{source}-base"))
