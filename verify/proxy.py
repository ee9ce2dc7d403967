"""The proxy view: what istiod sends over xDS to a sidecar of the client workload (``sleep``) and to the
east-west gateway of its cluster, asked as those proxies would ask (``verify.xds``).

The sidecar's node carries the cluster's ID and network, the pod's namespace, labels and IP: istiod
filters EDS by the proxy's network (endpoints of other networks become their network's gateway on 15443,
pilot/pkg/xds/endpoints/ep_filters.go ``EndpointsByNetworkFilter``). When no client pod runs, a stand-in
node (same namespace and labels, no pod behind it) is used and the report says so.
"""

from __future__ import annotations

from typing import Any

from istio_mesh.constants import (
    CROSS_NETWORK_PORT,
    DEFAULT_ISTIO_VERSION,
    EASTWEST_RELEASE,
    EASTWEST_SELECTOR,
    ISTIO_NAMESPACE,
)

from .access import IstiodAccess
from .facts import ClusterFacts, ProxyFacts, network_of
from .xds import ProxyNode, XdsError, XdsRequest, fetch, outbound_cluster, sni_cluster

#: Seconds allowed for each xDS exchange (one stream: CDS then EDS, or LDS).
XDS_TIMEOUT = 10.0
#: The address a stand-in node claims: no pod has it, so istiod falls back to the node's labels.
STAND_IN_IP = "127.0.0.1"


def collect_proxy(
    c: ClusterFacts,
    access: IstiodAccess,
    service_host: str,
    namespace: str,
    ports: list[int],
    client_app: str,
    mesh_id: str | None,
) -> ProxyFacts:
    """Asks this cluster's istiod for the EDS of ``service_host``'s outbound clusters (one per port) as a
    sidecar of the client pod, and for the east-west gateway's listeners as that gateway."""
    p = ProxyFacts(cluster=c.name)
    network = network_of(c)
    if not network:
        p.error = f"{c.name} has no network (stack config or {ISTIO_NAMESPACE}'s label): a proxy's view needs one"
        return p
    try:
        address = access.xds_address()
    except Exception as e:  # no route to 15010: the finding says so
        p.error = f"cannot reach istiod's xDS: {e}"
        return p
    version = c.istio_version or DEFAULT_ISTIO_VERSION
    client = c.client_pod or {
        "name": f"verify-stand-in-{client_app}",
        "ip": STAND_IN_IP,
        "labels": {"app": client_app},
        "serviceAccount": "default",
    }
    try:
        node = ProxyNode.sidecar(
            pod_ip=client["ip"],
            pod_name=client["name"],
            namespace=namespace,
            cluster_id=c.name,
            network=network,
            labels=client["labels"],
            istio_version=version,
            service_account=client["serviceAccount"],
            mesh_id=mesh_id or "",
        )
        p.client_node = node.node_id + ("" if c.client_pod else f" (stand-in: no running pod app={client_app})")
        names = tuple(outbound_cluster(service_host, port) for port in ports)
        view = fetch(address, node, XdsRequest(clusters=True, endpoints=names), timeout=XDS_TIMEOUT)
        p.notes = list(view.errors)
        p.endpoints = {
            name: [
                {
                    "address": e.address,
                    "port": e.port,
                    "weight": e.weight,
                    "tlsMode": e.tls_mode,
                    "clusterId": e.cluster_id,
                }
                for e in view.endpoints.get(name, ())
            ]
            for name in names
            if view.cluster(name) is not None
        }
    except (XdsError, ValueError) as e:
        p.error = str(e)
    p.listener, p.gateway_node, p.gateway_error = _gateway_view(c, address, network, version, service_host, ports)
    return p


def _gateway_view(
    c: ClusterFacts, address: str, network: str, version: str, service_host: str, ports: list[int]
) -> tuple[dict[str, Any] | None, str, str | None]:
    """(the 15443 listener's facts, the node id used, the error) for the east-west gateway of ``c``."""
    pod = c.gateway_pod or {
        "name": f"verify-stand-in-{EASTWEST_RELEASE}",
        "ip": STAND_IN_IP,
        "labels": {**EASTWEST_SELECTOR, "app": EASTWEST_RELEASE},
        "serviceAccount": EASTWEST_RELEASE,
    }
    try:
        node = ProxyNode.router(
            pod_ip=pod["ip"],
            pod_name=pod["name"],
            namespace=ISTIO_NAMESPACE,
            cluster_id=c.name,
            network=network,
            labels=pod["labels"],
            istio_version=version,
            service_account=pod["serviceAccount"],
            requested_network_view=(network,),
        )
        node_id = node.node_id + ("" if c.gateway_pod else " (stand-in: no running east-west gateway pod)")
        view = fetch(address, node, XdsRequest(clusters=False, listeners=True), timeout=XDS_TIMEOUT)
    except (XdsError, ValueError) as e:
        return None, "", str(e)
    pt = view.passthrough(CROSS_NETWORK_PORT)
    listener = {
        "port": CROSS_NETWORK_PORT,
        "exists": pt.exists,
        "autoPassthrough": pt.auto_passthrough,
        "routes": {sni_cluster(service_host, port): pt.routes(service_host, port) for port in ports},
        "problems": list(pt.problems),
    }
    return listener, node_id, None
