"""The east-west gateway (``EastWestGateway``): its chart per network, the one cross-network Gateway, and
how its address is awaited.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

import pulumi
from support.mesh import CHART, GATEWAY_CR, SECRET, build
from support.mocks import Recorded, Registration, run_program


def _service_transform_result(rec: Recorded, chart: Registration, props: dict[str, Any]) -> dict[str, Any]:
    return rec.rendered(chart, "kubernetes:core/v1:Service", props, name="istio-eastwestgateway").props


def test_east_west_gateway_chart_per_network(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for cluster, network in (("cluster1", "network1"), ("cluster2", "network2")):
        chart = rec.one(CHART, name_contains=f"mesh-{cluster}-eastwest")
        assert rec.provider_of(chart) == f"k8s-{cluster}"
        assert chart.inputs["chart"] == "gateway"
        assert chart.inputs["name"] == "istio-eastwestgateway"  # gives app/istio pod labels
        assert chart.inputs["namespace"] == "istio-system"
        values = chart.inputs["values"]
        assert values["networkGateway"] == network
        assert values["service"]["type"] == "LoadBalancer"
        # externalIPs: nothing waits for a load balancer.
        assert values["service"]["annotations"] == {"pulumi.com/skipAwait": "true"}
        i = cluster[-1]
        props = _service_transform_result(rec, chart, {"spec": {"type": "LoadBalancer"}})
        assert props["spec"]["externalIPs"] == [f"10.0.{i}.10"]
        # The gateway chart goes in after the control plane.
        assert rec.depends_on(chart, rec.one(CHART, name_contains=f"mesh-{cluster}-istiod"))
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] == "10.0.1.10"
    assert rec.outputs["clusters"]["cluster2"]["eastWestGatewayAddress"] == "10.0.2.10"


def test_the_one_cross_network_gateway(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    gateways = rec.of_type(GATEWAY_CR)
    assert sorted(rec.provider_of(g) for g in gateways) == ["k8s-cluster1", "k8s-cluster2"]
    for gw in gateways:
        assert gw.k8s_name == "istio-system/cross-network-gateway"
        assert gw.inputs["apiVersion"] == "networking.istio.io/v1"
        assert gw.inputs["spec"] == {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {
                    "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                    "tls": {"mode": "AUTO_PASSTHROUGH"},
                    "hosts": ["*.local"],
                }
            ],
        }
        cluster = rec.provider_of(gw).removeprefix("k8s-")
        assert rec.depends_on(gw, rec.one(CHART, name_contains=f"mesh-{cluster}-base"))  # the Gateway CRD
        # Deleted in the background: no finalizer for the garbage collector to drop with an UPDATE that
        # istiod's webhook (failurePolicy Fail) would have to admit, so a down istiod cannot block it.
        assert gw.inputs["metadata"]["annotations"]["pulumi.com/deletionPropagationPolicy"] == "background"
        # istiod's validation webhook checks it: not while the cacerts patch is rolling istiod.
        rollout = rec.one("kubernetes:apps/v1:DeploymentPatch", "istio-system/istiod", name_contains=f"-{cluster}-")
        assert rec.depends_on(gw, rollout)


def test_load_balancer_gateway_waits_with_a_timeout(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    clusters = kubeconfigs(2)
    clusters[0]["eastWestGateway"] = {"serviceType": "LoadBalancer", "loadBalancerTimeoutSeconds": 300}
    rec = build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    chart = rec.one(CHART, name_contains="mesh-cluster1-eastwest")
    # Pulumi's Service await waits for status.loadBalancer.ingress, at most this long.
    assert chart.inputs["values"]["service"]["annotations"] == {"pulumi.com/timeoutSeconds": "300"}
    assert "externalIPs" not in _service_transform_result(rec, chart, {"spec": {}})["spec"]
    # No transform above the chart skips the load balancer's await.
    rendered = {"metadata": {"annotations": dict(chart.inputs["values"]["service"]["annotations"])}, "spec": {}}
    annotations = _service_transform_result(rec, chart, rendered)["metadata"]["annotations"]
    assert annotations["pulumi.com/timeoutSeconds"] == "300" and "pulumi.com/skipAwait" not in annotations
    # The mocks render no chart objects, so there is no Service to take an address from.
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] == ""


def test_a_cluster_ip_or_node_port_gateway_is_not_awaited(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    for service_type in ("ClusterIP", "NodePort"):
        clusters = kubeconfigs(2)
        clusters[0]["eastWestGateway"] = {"serviceType": service_type}
        rec = build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
        chart = rec.one(CHART, name_contains="mesh-cluster1-eastwest")
        assert chart.inputs["values"]["service"] == {
            "type": service_type,
            "annotations": {"pulumi.com/skipAwait": "true"},
        }


def test_load_balancer_address_comes_from_the_charts_service() -> None:
    import pulumi_kubernetes as k8s

    from istio_mesh.east_west_gateway import load_balancer_address

    def build() -> dict[str, pulumi.Output[Any]]:
        svc = k8s.core.v1.Service("lb-service")
        other = k8s.core.v1.ServiceAccount("sa")
        return {"address": load_balancer_address([other, svc]), "none": load_balancer_address([other])}

    rec = run_program(build)
    assert rec.outputs == {"address": "203.0.113.10", "none": ""}


def test_single_network_mesh_has_no_gateways(mesh_settings: Any) -> None:
    rec = build(mesh_settings(2, networks=["shared", "shared"]))
    assert not [r for r in rec.of_type(CHART) if r.inputs["chart"] == "gateway"]
    assert not rec.of_type(GATEWAY_CR)
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] is None
    # Remote secrets are still exchanged: a multi-primary mesh on one network.
    assert len(rec.of_type(SECRET)) == 2 + 2 + 2
