"""What istiod sent, as plain frozen dataclasses, and the pure functions that build them from decoded
messages (unit-tested without a network)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from istio_mesh.constants import CROSS_NETWORK_PORT

from .protos import DECODE_LOCK, TCP_PROXY_TYPE, XdsError, envoy_protos

if TYPE_CHECKING:
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster
    from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
    from envoy_data_plane.envoy.config.listener.v3 import Listener

#: Endpoint metadata istiod writes (pilot/pkg/networking/util/util.go ``AppendLbEndpointMetadata``):
#: ``envoy.transport_socket_match: {tlsMode: istio}`` when istiod would send mTLS to the endpoint, and
#: ``istio: {workload: "<workload>;<namespace>;<canonical name>;<canonical revision>;<cluster id>"}``.
TRANSPORT_SOCKET_MATCH_KEY = "envoy.transport_socket_match"
TLS_MODE_KEY = "tlsMode"
ISTIO_METADATA_KEY = "istio"
WORKLOAD_KEY = "workload"
ISTIO_MUTUAL_TLS_MODE = "istio"

#: Listener filter the gateway listener carries when a chain matches SNI (pilot/pkg/networking/core/
#: listener.go ``buildGatewayListener``), and the terminal network filter of a TCP chain.
TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
#: ALPNs of Istio mTLS, all of which an AUTO_PASSTHROUGH chain matches (pilot/pkg/networking/core/
#: listener.go ``allIstioMtlsALPNs``); every one starts with this prefix.
ISTIO_ALPN_PREFIX = "istio"


def outbound_cluster(host: str, port: int, subset: str = "") -> str:
    """A sidecar's outbound cluster, ``outbound|5000||helloworld.sample.svc.cluster.local``
    (pilot/pkg/model/service.go ``BuildSubsetKey``); EDS is requested under the same name."""
    return f"outbound|{port}|{subset}|{host}"


def sni_cluster(host: str, port: int, subset: str = "") -> str:
    """The SNI-DNAT name, ``outbound_.5000_._.helloworld.sample.svc.cluster.local``
    (pilot/pkg/model/service.go ``BuildDNSSrvSubsetKey``): the SNI a sidecar sends across networks, the
    server name an AUTO_PASSTHROUGH chain matches and the cluster it forwards to."""
    return f"outbound_.{port}_.{subset}_.{host}"


@dataclass(frozen=True)
class XdsEndpoint:
    """One ``LbEndpoint`` of a ``ClusterLoadAssignment``.

    An endpoint on another network arrives as that network's gateway (address, port 15443) whose
    ``weight`` is the sum of the weights of the mTLS endpoints it stands for (one gateway per network:
    one endpoint per pod), ``tls_mode`` ``istio`` and a ``workload`` with empty name and namespace and
    the gateway's cluster id (ep_filters.go ``EndpointsByNetworkFilter``, ``splitWeightAmongGateways``).
    istiod puts no network in endpoint metadata: a gateway endpoint is told apart by its address.
    """

    address: str
    port: int
    weight: int | None
    #: ``envoy.transport_socket_match.tlsMode``: ``istio`` when istiod would send Istio mTLS.
    tls_mode: str | None
    #: ``istio.workload``: ``<workload>;<namespace>;<canonical name>;<canonical revision>;<cluster id>``.
    workload: str | None
    health: str
    locality: str = ""
    priority: int = 0
    #: Set for an internal (HBONE tunnel) address: the internal listener's name; address/port then come
    #: from the endpoint id.
    internal_listener: str | None = None

    def _workload_field(self, index: int) -> str | None:
        parts = (self.workload or "").split(";")
        return parts[index] if self.workload is not None and len(parts) == 5 else None

    @property
    def workload_name(self) -> str | None:
        return self._workload_field(0)

    @property
    def workload_namespace(self) -> str | None:
        return self._workload_field(1)

    @property
    def cluster_id(self) -> str | None:
        """The cluster the endpoint (or the gateway) lives in, from ``istio.workload``."""
        return self._workload_field(4)

    @property
    def mtls(self) -> bool:
        return self.tls_mode == ISTIO_MUTUAL_TLS_MODE


@dataclass(frozen=True)
class ClusterView:
    """One CDS cluster: its name, discovery type (``EDS``, ``STATIC``, ``ORIGINAL_DST``...) and, for EDS,
    the name its endpoints are requested under."""

    name: str
    type: str
    eds_service_name: str | None

    @property
    def eds_name(self) -> str | None:
        return (self.eds_service_name or self.name) if self.type == "EDS" else None


@dataclass(frozen=True)
class FilterChainView:
    """One listener filter chain: what it matches, whether it terminates TLS, where its TCP goes."""

    server_names: tuple[str, ...]
    application_protocols: tuple[str, ...]
    #: Name of the chain's transport socket (``envoy.transport_sockets.tls``): TLS is terminated here.
    transport_socket: str | None
    #: Names of the network filters, in order.
    filters: tuple[str, ...]
    #: The ``cluster`` of the chain's ``tcp_proxy`` filter, if it has one with a single cluster.
    tcp_proxy_cluster: str | None


@dataclass(frozen=True)
class ListenerView:
    name: str
    address: str
    port: int
    listener_filters: tuple[str, ...]
    chains: tuple[FilterChainView, ...]


@dataclass(frozen=True)
class PassthroughChain:
    """A filter chain of the AUTO_PASSTHROUGH shape: SNI ``server_name`` forwarded to the cluster of the
    same name."""

    server_name: str
    cluster: str


@dataclass(frozen=True)
class PassthroughListener:
    """Facts about the gateway listener on ``port`` (15443) and whether it is AUTO_PASSTHROUGH.

    A Gateway server with ``tls.mode: AUTO_PASSTHROUGH`` yields, per mesh service port matching the
    server's hosts (and per DestinationRule subset), a chain matching SNI ``outbound_.<port>_.<subset>_.
    <host>`` and the Istio mTLS ALPNs, without a transport socket (TLS passes through), whose
    ``tcp_proxy`` forwards to the cluster of that same name (pilot/pkg/networking/core/gateway.go
    ``builtAutoPassthroughFilterChains``); SNI matching needs the TLS inspector listener filter
    (listener.go ``buildGatewayListener``). Istio 1.30 writes no wildcard chain for it.
    """

    port: int
    exists: bool
    name: str | None = None
    server_names: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    sni_chains: tuple[PassthroughChain, ...] = ()
    auto_passthrough: bool = False
    #: Why the listener is not AUTO_PASSTHROUGH (empty when it is).
    problems: tuple[str, ...] = ()

    def routes(self, host: str, port: int, subset: str = "") -> bool:
        """True when the listener is AUTO_PASSTHROUGH and a chain forwards ``outbound_.<port>_.<subset>_.<host>``
        to that cluster: what a sidecar on another network needs to reach the service through this gateway."""
        name = sni_cluster(host, port, subset)
        return self.auto_passthrough and any(c.server_name == name and c.cluster == name for c in self.sni_chains)


@dataclass(frozen=True)
class ProxyView:
    """What istiod sent the node on one stream."""

    address: str
    node_id: str
    #: CDS, when asked.
    clusters: tuple[ClusterView, ...] = ()
    #: EDS by the name it was requested under (the cluster's name for Istio's outbound clusters).
    endpoints: Mapping[str, tuple[XdsEndpoint, ...]] = field(default_factory=dict)
    #: LDS, when asked.
    listeners: tuple[ListenerView, ...] = ()
    #: Things a reader must know that are not exceptions: an asked cluster missing from CDS, an EDS
    #: cluster istiod sent no assignment for.
    errors: tuple[str, ...] = ()

    def cluster(self, name: str) -> ClusterView | None:
        return next((c for c in self.clusters if c.name == name), None)

    def passthrough(self, port: int = CROSS_NETWORK_PORT) -> PassthroughListener:
        return passthrough_listener(self.listeners, port)


# ---- decoded messages -> views (pure) -----------------------------------------------------------------


def cluster_view(cluster: Cluster) -> ClusterView:
    if cluster.type is not None:
        kind = cluster.type.name or f"UNKNOWN({int(cluster.type)})"
    elif cluster.cluster_type is not None:
        kind = f"custom:{cluster.cluster_type.name}"
    else:
        kind = "STATIC"  # Envoy's default when the discovery type oneof is unset
    eds = cluster.eds_cluster_config.service_name if cluster.eds_cluster_config else ""
    return ClusterView(name=cluster.name, type=kind, eds_service_name=eds or None)


def endpoints_from_cla(cla: ClusterLoadAssignment) -> tuple[XdsEndpoint, ...]:
    """Every endpoint of a ``ClusterLoadAssignment``, in order, with the metadata istiod attaches."""
    out: list[XdsEndpoint] = []
    for group in cla.endpoints:
        loc = group.locality
        locality = "/".join((loc.region, loc.zone, loc.sub_zone)).strip("/") if loc else ""
        for lb in group.lb_endpoints:
            addr = lb.endpoint.address if lb.endpoint else None
            internal = None
            if addr is not None and addr.socket_address is not None:
                host, port = addr.socket_address.address, addr.socket_address.port_value or 0
            elif addr is not None and addr.envoy_internal_address is not None:
                internal = addr.envoy_internal_address.server_listener_name or ""
                host, _, port_text = addr.envoy_internal_address.endpoint_id.rpartition(":")
                port = int(port_text) if port_text.isdigit() else 0
            else:
                continue  # no address (pipes): nothing a mesh check can use
            out.append(
                XdsEndpoint(
                    address=host,
                    port=port,
                    weight=lb.load_balancing_weight,
                    tls_mode=_metadata_string(lb.metadata, TRANSPORT_SOCKET_MATCH_KEY, TLS_MODE_KEY),
                    workload=_metadata_string(lb.metadata, ISTIO_METADATA_KEY, WORKLOAD_KEY),
                    health=lb.health_status.name or str(int(lb.health_status)),
                    locality=locality,
                    priority=group.priority,
                    internal_listener=internal,
                )
            )
    return tuple(out)


def listener_view(listener: Listener) -> ListenerView:
    """A listener's address and filter chains. Filter configs are opaque ``Any``s, most of them Istio's own
    protos no Python package has; only ``tcp_proxy`` is unpacked, by its type URL."""
    sock = listener.address.socket_address if listener.address else None
    chains = []
    for fc in listener.filter_chains:
        match = fc.filter_chain_match
        names: list[str] = []
        tcp_cluster = None
        for f in fc.filters:
            names.append(f.name or (f.typed_config.type_url if f.typed_config else ""))
            if f.typed_config is not None and f.typed_config.type_url == TCP_PROXY_TYPE:
                try:
                    with DECODE_LOCK:  # see protos.DECODE_LOCK
                        tcp_cluster = envoy_protos().TcpProxy.parse(f.typed_config.value).cluster or None
                except Exception as exc:  # as in decode_resources: a bad encoding, whatever betterproto2 raises
                    raise XdsError(f"could not decode the tcp_proxy of listener {listener.name}: {exc!r}") from exc
        chains.append(
            FilterChainView(
                server_names=tuple(match.server_names) if match else (),
                application_protocols=tuple(match.application_protocols) if match else (),
                transport_socket=(fc.transport_socket.name or "transport_socket") if fc.transport_socket else None,
                filters=tuple(names),
                tcp_proxy_cluster=tcp_cluster,
            )
        )
    return ListenerView(
        name=listener.name,
        address=sock.address if sock else "",
        port=(sock.port_value or 0) if sock else 0,
        listener_filters=tuple(lf.name for lf in listener.listener_filters),
        chains=tuple(chains),
    )


def passthrough_listener(listeners: Iterable[ListenerView], port: int = CROSS_NETWORK_PORT) -> PassthroughListener:
    """The listener on ``port`` and whether it has the AUTO_PASSTHROUGH shape (see ``PassthroughListener``).

    It is AUTO_PASSTHROUGH when it inspects TLS and at least one chain is an SNI-DNAT chain: exactly one
    server name of the ``outbound_.`` form, Istio ALPNs only, no transport socket, ``tcp_proxy`` to the
    cluster named like the SNI. A ``PASSTHROUGH`` server routed by a VirtualService matches SNI too, but
    names hosts, not ``outbound_.`` clusters; an ``ISTIO_MUTUAL`` server terminates TLS.
    """
    found = [lst for lst in listeners if lst.port == port]
    if not found:
        return PassthroughListener(port=port, exists=False, problems=(f"no listener on port {port}",))
    lst = found[0]
    sni_chains: list[PassthroughChain] = []
    problems: list[str] = []
    for i, chain in enumerate(lst.chains):
        why = _not_sni_dnat(chain)
        if why:
            problems.append(f"filter chain {i} ({list(chain.server_names) or 'no SNI'}): {why}")
        else:
            sni_chains.append(PassthroughChain(server_name=chain.server_names[0], cluster=chain.server_names[0]))
    if TLS_INSPECTOR not in lst.listener_filters:
        problems.insert(0, f"no {TLS_INSPECTOR} listener filter: SNI cannot be matched")
    if not lst.chains:
        problems.insert(0, "no filter chains (no mesh service matches the Gateway server's hosts?)")
    auto = bool(sni_chains) and TLS_INSPECTOR in lst.listener_filters
    return PassthroughListener(
        port=port,
        exists=True,
        name=lst.name,
        server_names=tuple(n for c in lst.chains for n in c.server_names),
        clusters=tuple(c.tcp_proxy_cluster for c in lst.chains if c.tcp_proxy_cluster),
        sni_chains=tuple(sni_chains),
        auto_passthrough=auto,
        problems=() if auto else tuple(problems),
    )


def _not_sni_dnat(chain: FilterChainView) -> str:
    """Why a chain is not an AUTO_PASSTHROUGH (SNI-DNAT) chain; empty when it is one."""
    if len(chain.server_names) != 1 or not chain.server_names[0].startswith("outbound_."):
        return "does not match exactly one outbound_.<port>_.<subset>_.<host> server name"
    if chain.transport_socket:
        return f"terminates TLS ({chain.transport_socket})"
    if not chain.application_protocols or not all(p.startswith(ISTIO_ALPN_PREFIX) for p in chain.application_protocols):
        return f"ALPNs {list(chain.application_protocols)} are not Istio mTLS's"
    if chain.tcp_proxy_cluster != chain.server_names[0]:
        return f"tcp_proxy goes to {chain.tcp_proxy_cluster!r}, not to the cluster named like the SNI"
    return ""


def _metadata_string(metadata: Any, filter_name: str, key: str) -> str | None:
    if metadata is None or filter_name not in metadata.filter_metadata:
        return None
    value = metadata.filter_metadata[filter_name].fields.get(key)
    return value.string_value if value is not None and value.string_value is not None else None
