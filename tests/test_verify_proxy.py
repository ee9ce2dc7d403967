"""The proxy view's checks (verify.proxy_checks) on hand-written facts, and ``collect_proxy`` against an
in-process fake istiod (the ADS server of tests/test_verify_xds.py): what a sidecar of ``sleep`` is sent
for helloworld, and what the east-west gateway is given on 15443."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from test_verify import HOST, Pki, checks, healthy
from test_verify import pki as pki  # the module-scoped PKI fixture

from verify import ClusterFacts, IstiodFacts, diagnose
from verify.facts import ProxyFacts
from verify.proxy_checks import check_gateway_listener, check_proxy_endpoints, expected_gateway_weights

HELLO = f"outbound|5000||{HOST}"
HELLO_SNI = f"outbound_.5000_._.{HOST}"
POD = {"cluster1": "10.1.1.5", "cluster2": "10.2.1.7"}
GW = {"cluster1": "127.0.1.1", "cluster2": "127.0.2.1"}
OTHER = {"cluster1": "cluster2", "cluster2": "cluster1"}


def proxied(pki: Pki, tls_mode: str = "istio") -> tuple[list[ClusterFacts], list[IstiodFacts]]:
    """The healthy 2-network mesh of test_verify, with sidecars (TLS mode istio) and each istiod's proxy
    view as istiod 1.30 sends it: the local pod directly, the other network's gateway on 15443, weight 1."""
    clusters, istiods = healthy(pki)
    for c in clusters:
        c.service_ports = [5000]
    for i in istiods:
        for e in i.endpoints:
            e["tlsMode"] = tls_mode
        o = OTHER[i.cluster]
        eps = [{"address": POD[i.cluster], "port": 5000, "weight": 1, "tlsMode": tls_mode, "clusterId": i.cluster}]
        if tls_mode == "istio":
            eps.append({"address": GW[o], "port": 15443, "weight": 1, "tlsMode": "istio", "clusterId": o})
        i.proxy = ProxyFacts(
            cluster=i.cluster,
            client_node=f"sidecar~{POD[i.cluster]}~sleep-1.sample~sample.svc.cluster.local",
            endpoints={HELLO: eps},
            listener={
                "port": 15443,
                "exists": True,
                "autoPassthrough": True,
                "routes": {HELLO_SNI: True},
                "problems": [],
            },
        )
    return clusters, istiods


def test_what_a_sidecar_is_sent_in_a_healthy_mesh_raises_no_finding(pki: Pki) -> None:
    clusters, istiods = proxied(pki)
    assert diagnose(clusters, istiods, pki.root, HOST) == []


def test_endpoints_without_sidecars_are_not_sent_across_networks_and_the_cause_is_named(pki: Pki) -> None:
    clusters, istiods = proxied(pki, tls_mode="disabled")
    findings = [f for f in diagnose(clusters, istiods, pki.root, HOST) if f.check == "proxy-endpoints"]
    assert checks(findings) == {("cluster1", "proxy-endpoints"), ("cluster2", "proxy-endpoints")}
    cause = next(f.cause for f in findings if f.cluster == "cluster1")
    assert cause.startswith(f"cluster2 (network network2)'s {HOST} endpoints are missing from cluster1's EDS")
    assert "not mTLS-capable (TLS mode disabled: no sidecar)" in cause
    assert "injection" in findings[0].fix


def test_a_missing_gateway_endpoint_a_wrong_weight_a_leaked_pod_and_a_stray_address_are_named(pki: Pki) -> None:
    clusters, istiods = proxied(pki)
    i1 = istiods[0]
    # No gateway endpoint for network2 although istiod knows the gateway.
    i1.proxy.endpoints[HELLO] = i1.proxy.endpoints[HELLO][:1]  # type: ignore[union-attr]
    (f,) = check_proxy_endpoints(i1, clusters, HOST)
    assert "expected network2's gateway 127.0.2.1:15443 standing for 1 endpoint(s); sent 10.1.1.5:5000" in f.cause
    # istiod does not know network2's gateway at all.
    i1b = copy.deepcopy(i1)
    i1b.gateways = [g for g in i1b.gateways if g["network"] != "network2"]
    (f,) = check_proxy_endpoints(i1b, clusters, HOST)
    assert "istiod of cluster1 knows no gateway on 15443 for network2" in f.cause
    # Gateway sent with the wrong weight (cluster2 now has two mTLS pods).
    clusters2, istiods2 = proxied(pki)
    clusters2[1].service_endpoints = ["10.2.1.7", "10.2.1.8"]
    istiods2[0].endpoints.append({**istiods2[0].endpoints[1], "address": "10.2.1.8"})
    (f,) = check_proxy_endpoints(istiods2[0], clusters2, HOST)
    assert "weight 1, but cluster2 (network network2) has 2 mTLS endpoint(s)" in f.cause
    # cluster2's pod address sent directly (a network label gone wrong), plus an address nobody has.
    clusters3, istiods3 = proxied(pki)
    istiods3[0].proxy.endpoints[HELLO] += [  # type: ignore[union-attr]
        {"address": POD["cluster2"], "port": 5000, "weight": 1, "tlsMode": "istio", "clusterId": "cluster2"},
        {"address": "10.9.9.9", "port": 5000, "weight": 1, "tlsMode": "istio", "clusterId": "cluster1"},
    ]
    causes = [f.cause for f in check_proxy_endpoints(istiods3[0], clusters3, HOST)]
    assert any("pod address(es) 10.2.1.7 of cluster2 on network network2 directly" in c for c in causes)
    assert any("holds address(es) 10.9.9.9 that are neither a ready pod" in c for c in causes)
    assert len(causes) == 2


def test_gateway_weights_follow_istiods_scaling_when_a_network_has_two_gateway_addresses(pki: Pki) -> None:
    """What istiod 1.30 sent on the lab (cluster1's gateway with a load-balancer address and an externalIP,
    one helloworld pod per cluster): every weight scaled by lcm(2, 1) = 2, so cluster1's sidecar gets its
    pod with weight 2 and network2's single gateway with weight 2; cluster2's sidecar gets network1's two
    gateways with weight 1 each. That is healthy; a weight that differs is named."""
    clusters, istiods = proxied(pki)
    extra = "192.0.2.1"
    clusters[0].gateway_addresses.append(extra)
    for i in istiods:
        i.gateways.append({"network": "network1", "cluster": "cluster1", "address": extra, "port": 15443})
    i1, i2 = istiods
    i1.proxy.endpoints[HELLO] = [  # type: ignore[union-attr]
        {"address": POD["cluster1"], "port": 5000, "weight": 2, "tlsMode": "istio", "clusterId": "cluster1"},
        {"address": GW["cluster2"], "port": 15443, "weight": 2, "tlsMode": "istio", "clusterId": "cluster2"},
    ]
    i2.proxy.endpoints[HELLO] = [  # type: ignore[union-attr]
        {"address": POD["cluster2"], "port": 5000, "weight": 2, "tlsMode": "istio", "clusterId": "cluster2"},
        {"address": GW["cluster1"], "port": 15443, "weight": 1, "tlsMode": "istio", "clusterId": "cluster1"},
        {"address": extra, "port": 15443, "weight": 1, "tlsMode": "istio", "clusterId": "cluster1"},
    ]
    assert expected_gateway_weights(i2.gateways, "network1", {"cluster1": 1}) == {GW["cluster1"]: 1, extra: 1}
    assert expected_gateway_weights(i1.gateways, "network2", {"cluster2": 3}) == {GW["cluster2"]: 6}
    assert diagnose(clusters, istiods, pki.root, HOST) == []
    # The unscaled weight (what a check ignoring the scaling would expect) is wrong here, and named.
    i1.proxy.endpoints[HELLO][1]["weight"] = 1  # type: ignore[union-attr]
    (f,) = check_proxy_endpoints(i1, clusters, HOST)
    assert "gateway 127.0.2.1:15443 with weight 1" in f.cause and "which makes it 2" in f.cause


def test_a_ready_local_pod_missing_from_eds_is_named(pki: Pki) -> None:
    clusters, istiods = proxied(pki)
    istiods[1].proxy.endpoints[HELLO] = istiods[1].proxy.endpoints[HELLO][1:]  # type: ignore[union-attr]
    (f,) = check_proxy_endpoints(istiods[1], clusters, HOST)
    assert f.cause.startswith(f"a sidecar in cluster2 is not sent cluster2's {HOST} endpoint(s) 10.2.1.7 (port 5000)")


@pytest.mark.parametrize(
    ("listener", "expected"),
    [
        (
            {
                "port": 15443,
                "exists": False,
                "autoPassthrough": False,
                "routes": {},
                "problems": ["no listener on port 15443"],
            },
            "is given no AUTO_PASSTHROUGH listener on 15443 (no listener on port 15443)",
        ),
        (
            {"port": 15443, "exists": True, "autoPassthrough": True, "routes": {HELLO_SNI: False}, "problems": []},
            f"passes nothing on for {HELLO_SNI}",
        ),
    ],
)
def test_the_gateway_listener_must_be_auto_passthrough_and_route_the_service(
    pki: Pki, listener: dict[str, Any], expected: str
) -> None:
    clusters, istiods = proxied(pki)
    istiods[1].proxy.listener = listener  # type: ignore[union-attr]
    (f,) = check_gateway_listener(istiods[1], HOST)
    assert (f.cluster, f.check) == ("cluster2", "proxy-listener") and expected in f.cause
    assert ("cluster2", "proxy-listener") in checks(diagnose(clusters, istiods, pki.root, HOST))


def test_an_istiod_that_does_not_answer_xds_is_one_finding(pki: Pki) -> None:
    clusters, istiods = proxied(pki)
    istiods[0].proxy = ProxyFacts(cluster="cluster1", error="xDS ... 127.0.1.1:20110 is unreachable")
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster1", "proxy")}
    assert "127.0.1.1:20110 is unreachable" in findings[0].cause


def test_a_peer_istiod_has_not_synced_is_named_in_the_proxy_view_too(pki: Pki) -> None:
    """cluster1's istiod lost cluster2 (its remote secret deleted): no shard of cluster2, so no gateway
    endpoint either; the proxy view says a request to cluster2's pods has nowhere to go."""
    clusters, istiods = proxied(pki)
    i1 = istiods[0]
    i1.endpoints = [e for e in i1.endpoints if e["cluster"] == "cluster1"]
    i1.proxy.endpoints[HELLO] = i1.proxy.endpoints[HELLO][:1]  # type: ignore[union-attr]
    (f,) = check_proxy_endpoints(i1, clusters, HOST)
    assert f.cause == (
        f"cluster2 (network network2)'s {HOST} endpoints are missing from cluster1's EDS (port 5000): istiod of "
        "cluster1 has none of them although they are ready there (it has not synced cluster2)"
    )
