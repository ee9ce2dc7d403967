"""Who the probe is to istiod: the Envoy ``Node`` of a pod's sidecar or gateway, and what it asks for."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .protos import envoy_protos

#: Node id ``<type>~<ip>~<pod>.<namespace>~<namespace>.<domain>`` (pilot/pkg/model/context.go
#: ``ParseServiceNodeWithMetadata``: four ``~``-separated parts, a known type, a valid IP).
NODE_SEPARATOR = "~"
SIDECAR_NODE = "sidecar"
ROUTER_NODE = "router"
DNS_DOMAIN = "svc.cluster.local"


@dataclass(frozen=True)
class ProxyNode:
    """The Envoy ``Node`` a proxy presents on its first request: id and metadata (a ``Struct``).

    istiod parses the metadata into ``NodeMetadata`` (pkg/model/proxy.go, JSON names) and uses:

    * ``NETWORK``: the proxy's network. EDS keeps endpoints of that network and replaces the others by
      their network's gateway (pilot/pkg/xds/endpoints/ep_filters.go ``EndpointsByNetworkFilter``); an
      empty network sends even same-network endpoints through a gateway (``forceGateway``).
    * ``CLUSTER_ID``: which registry holds the proxy's pod (kube controller ``isControllerForProxy``; an
      empty id matches every cluster) and, for cluster-local services, which endpoints are kept.
    * ``NAMESPACE``: the config namespace; the pod is looked up as ``<pod>.<namespace>`` from the node id
      only when it equals the id's namespace (kube controller util.go ``podKeyByProxy``), else by IP.
    * ``LABELS``: used when the pod is not found (context.go ``SetWorkloadLabels`` falls back to them); a
      router's labels must match a Gateway's selector for it to get that Gateway's listeners
      (push_context.go ``mergeGateways``).
    * ``INSTANCE_IPS``: the proxy's IPs (comma-separated ``StringList``), preferred over the id's IP.
    * ``ISTIO_VERSION``: gates version-dependent config (absent means "newest", with a warning).
    * ``REQUESTED_NETWORK_VIEW``: restricts EDS to these networks (pilot/pkg/model/proxy_view.go); the
      east-west gateway chart sets it to the gateway's own network.
    * ``SERVICE_ACCOUNT``: on 15012 with a client certificate, istiod requires the certificate's SPIFFE
      namespace to equal ``NAMESPACE`` and, when this is set, its service account to equal this
      (pilot/pkg/xds/auth.go ``checkConnectionIdentity``).
    """

    node_id: str
    metadata: Mapping[str, Any]

    @classmethod
    def sidecar(
        cls,
        *,
        pod_ip: str,
        pod_name: str,
        namespace: str,
        cluster_id: str,
        network: str,
        labels: Mapping[str, str],
        istio_version: str,
        service_account: str = "",
        mesh_id: str = "",
    ) -> ProxyNode:
        """The node of the sidecar of pod ``namespace/pod_name`` (``sidecar~<ip>~<pod>.<ns>~<ns>.svc...``)."""
        return cls._build(
            SIDECAR_NODE,
            pod_ip=pod_ip,
            pod_name=pod_name,
            namespace=namespace,
            cluster_id=cluster_id,
            network=network,
            labels=labels,
            istio_version=istio_version,
            service_account=service_account,
            mesh_id=mesh_id,
            network_view=(),
        )

    @classmethod
    def router(
        cls,
        *,
        pod_ip: str,
        pod_name: str,
        namespace: str,
        cluster_id: str,
        network: str,
        labels: Mapping[str, str],
        istio_version: str,
        service_account: str = "",
        mesh_id: str = "",
        requested_network_view: Sequence[str] = (),
    ) -> ProxyNode:
        """The node of a gateway pod (``router~...``): an east-west gateway's labels include its
        Gateway's selector (``istio: eastwestgateway``) and its network view is its own network."""
        return cls._build(
            ROUTER_NODE,
            pod_ip=pod_ip,
            pod_name=pod_name,
            namespace=namespace,
            cluster_id=cluster_id,
            network=network,
            labels=labels,
            istio_version=istio_version,
            service_account=service_account,
            mesh_id=mesh_id,
            network_view=tuple(requested_network_view),
        )

    @classmethod
    def _build(
        cls,
        kind: str,
        *,
        pod_ip: str,
        pod_name: str,
        namespace: str,
        cluster_id: str,
        network: str,
        labels: Mapping[str, str],
        istio_version: str,
        service_account: str,
        mesh_id: str,
        network_view: tuple[str, ...],
    ) -> ProxyNode:
        try:
            ipaddress.ip_address(pod_ip)
        except ValueError:
            raise ValueError(f"pod_ip: {pod_ip!r} is not an IP address (istiod rejects a node without one)") from None
        required = {
            "pod_name": pod_name,
            "namespace": namespace,
            "cluster_id": cluster_id,
            # Empty would be accepted by istiod and silently change EDS (see the class docstring).
            "network": network,
            "istio_version": istio_version,
        }
        for setting, value in required.items():
            if not value or NODE_SEPARATOR in value or "," in value:
                raise ValueError(f"{setting}: {value!r} must be non-empty, without '~' or ','")
        for net in network_view:
            if not net or "," in net:
                raise ValueError(f"requested_network_view: {net!r} must be non-empty, without ','")
        metadata: dict[str, Any] = {
            "ISTIO_VERSION": istio_version,
            "CLUSTER_ID": cluster_id,
            "NETWORK": network,
            "NAMESPACE": namespace,
            "LABELS": dict(labels),
            "INSTANCE_IPS": pod_ip,
            "NAME": pod_name,
        }
        if service_account:
            metadata["SERVICE_ACCOUNT"] = service_account
        if mesh_id:
            metadata["MESH_ID"] = mesh_id
        if network_view:
            metadata["REQUESTED_NETWORK_VIEW"] = ",".join(network_view)
        node_id = NODE_SEPARATOR.join((kind, pod_ip, f"{pod_name}.{namespace}", f"{namespace}.{DNS_DOMAIN}"))
        return cls(node_id=node_id, metadata=metadata)

    def to_proto(self) -> Any:
        """The ``envoy.config.core.v3.Node`` message."""
        pb = envoy_protos()
        return pb.Node(id=self.node_id, metadata=pb.Struct.from_dict(dict(self.metadata)))


@dataclass(frozen=True)
class XdsRequest:
    """What ``fetch`` subscribes to on one stream, in Envoy's order: CDS, EDS, LDS.

    ``endpoints`` are cluster names (``outbound_cluster(...)``). With ``clusters`` on, EDS is asked only
    for those CDS returned as EDS clusters (under their ``eds_cluster_config.service_name``), as Envoy
    would; the others are reported in ``ProxyView.errors``. With ``clusters`` off they are asked as given.
    """

    clusters: bool = True
    endpoints: tuple[str, ...] = ()
    listeners: bool = False

    def describe(self) -> str:
        parts = ["CDS (all)"] if self.clusters else []
        if self.endpoints:
            parts.append(f"EDS {list(self.endpoints)}")
        if self.listeners:
            parts.append("LDS (all)")
        return ", ".join(parts) or "nothing"
