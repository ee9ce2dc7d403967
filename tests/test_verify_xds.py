"""``verify.xds``: the node a proxy presents, the parsing of what istiod sends, and one ADS stream against
an in-process fake istiod (grpcio on 127.0.0.1, an ephemeral port).

Messages are built with envoy-data-plane's classes in the shapes istiod 1.30 produces (each builder cites
the istiod function it imitates) and go through bytes, as on the wire.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from verify import ClusterFacts, DirectAccess, xds
from verify.proxy import collect_proxy

with warnings.catch_warnings():  # envoy-data-plane's own import-time deprecations (see xds.envoy_protos)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"envoy_data_plane(\.|$)")
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType, ClusterEdsClusterConfig
    from envoy_data_plane.envoy.config.core.v3 import (
        Address,
        EnvoyInternalAddress,
        HealthStatus,
        Locality,
        Metadata,
        Node,
        SocketAddress,
        TransportSocket,
    )
    from envoy_data_plane.envoy.config.endpoint.v3 import (
        ClusterLoadAssignment,
        Endpoint,
        LbEndpoint,
        LocalityLbEndpoints,
    )
    from envoy_data_plane.envoy.config.listener.v3 import (
        Filter,
        FilterChain,
        FilterChainMatch,
        Listener,
        ListenerFilter,
    )
    from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
    from envoy_data_plane.google.protobuf import Any as AnyMsg
    from envoy_data_plane.google.protobuf import Struct

HOST = "helloworld.sample.svc.cluster.local"
HELLO = xds.outbound_cluster(HOST, 5000)  # outbound|5000||helloworld.sample.svc.cluster.local
HELLO_SNI = xds.sni_cluster(HOST, 5000)  # outbound_.5000_._.helloworld.sample.svc.cluster.local
GATEWAY_NETWORK2 = "172.18.0.20"  # network2's east-west gateway address, as istiod's networkz would list it
ISTIO_ALPNS = ["istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"]


def sleep_sidecar(network: str = "network1") -> xds.ProxyNode:
    return xds.ProxyNode.sidecar(
        pod_ip="10.1.1.5",
        pod_name="sleep-7d9c-abcde",
        namespace="sample",
        cluster_id="cluster1",
        network=network,
        labels={"app": "sleep", "security.istio.io/tlsMode": "istio"},
        istio_version="1.30.0",
        service_account="sleep",
    )


def eastwest_router() -> xds.ProxyNode:
    return xds.ProxyNode.router(
        pod_ip="10.1.0.9",
        pod_name="istio-eastwestgateway-5b8-xyz",
        namespace="istio-system",
        cluster_id="cluster1",
        network="network1",
        labels={"istio": "eastwestgateway", "app": "istio-eastwestgateway"},
        istio_version="1.30.0",
        requested_network_view=["network1"],
    )


# ---- messages shaped like istiod's --------------------------------------------------------------------


def lb_endpoint(ip: str, port: int, weight: int, tls_mode: str | None, workload: str) -> LbEndpoint:
    """buildEnvoyLbEndpoint + util.AppendLbEndpointMetadata: tlsMode only when mTLS would be sent."""
    filter_metadata = {"istio": Struct.from_dict({"workload": workload})}
    if tls_mode:
        filter_metadata["envoy.transport_socket_match"] = Struct.from_dict({"tlsMode": tls_mode})
    return LbEndpoint(
        endpoint=Endpoint(address=Address(socket_address=SocketAddress(address=ip, port_value=port))),
        health_status=HealthStatus.HEALTHY,
        load_balancing_weight=weight,
        metadata=Metadata(filter_metadata=filter_metadata),
    )


def network1_hello_cla() -> ClusterLoadAssignment:
    """What istiod sends a network1 sidecar for helloworld (ep_filters.go EndpointsByNetworkFilter): the two
    network1 pods directly, network2's two mTLS pods as one endpoint, network2's gateway on 15443 with
    weight 2 (1 per pod, scale factor 1 with one gateway per network), tlsMode istio, cluster2."""
    return ClusterLoadAssignment(
        cluster_name=HELLO,
        endpoints=[
            LocalityLbEndpoints(
                locality=Locality(region="us-east1", zone="b"),
                load_balancing_weight=4,
                lb_endpoints=[
                    lb_endpoint("10.1.1.7", 5000, 1, "istio", "helloworld-v1;sample;helloworld;v1;cluster1"),
                    lb_endpoint("10.1.2.9", 5000, 1, None, "helloworld-v2;sample;helloworld;v2;cluster1"),
                    lb_endpoint(GATEWAY_NETWORK2, 15443, 2, "istio", ";;;;cluster2"),
                ],
            )
        ],
    )


def cds() -> list[Cluster]:
    return [
        Cluster(
            name=HELLO,
            type=ClusterDiscoveryType.EDS,
            eds_cluster_config=ClusterEdsClusterConfig(service_name=HELLO),
        ),
        Cluster(name="BlackHoleCluster", type=ClusterDiscoveryType.STATIC),
        Cluster(name="outbound|53||kube-dns.kube-system.svc.cluster.local", type=ClusterDiscoveryType.STRICT_DNS),
    ]


def opaque_istio_filter() -> Filter:
    """An Istio filter no Python package has a class for (its bytes are not even a valid message)."""
    return Filter(
        name="istio.stats",
        typed_config=AnyMsg(type_url="type.googleapis.com/stats.PluginConfig", value=b"\xff\xfe\x00garbage"),
    )


def tcp_proxy(cluster: str) -> Filter:
    return Filter(
        name="envoy.filters.network.tcp_proxy", typed_config=AnyMsg.pack(TcpProxy(stat_prefix=cluster, cluster=cluster))
    )


def sni_chain(name: str, alpns: list[str] | None = None, target: str | None = None) -> FilterChain:
    """gateway.go builtAutoPassthroughFilterChains: SNI == cluster name, Istio ALPNs, no transport socket."""
    return FilterChain(
        filter_chain_match=FilterChainMatch(
            server_names=[name], application_protocols=ISTIO_ALPNS if alpns is None else alpns
        ),
        filters=[opaque_istio_filter(), tcp_proxy(target or name)],
    )


def listener(port: int, chains: list[FilterChain], inspector: bool = True) -> Listener:
    """listener.go buildGatewayListener: ``0.0.0.0_<port>``, the TLS inspector when a chain matches SNI."""
    filters = [ListenerFilter(name="envoy.filters.listener.tls_inspector")] if inspector else []
    return Listener(
        name=f"0.0.0.0_{port}",
        address=Address(socket_address=SocketAddress(address="0.0.0.0", port_value=port)),
        listener_filters=filters,
        filter_chains=chains,
    )


def eastwest_lds() -> list[Listener]:
    return [
        listener(15021, [FilterChain(filters=[Filter(name="envoy.filters.network.http_connection_manager")])], False),
        listener(
            15443,
            [
                sni_chain(HELLO_SNI),
                sni_chain(xds.sni_cluster(HOST, 5000, "v1")),
                sni_chain(xds.sni_cluster("istiod.istio-system.svc.cluster.local", 15012)),
            ],
        ),
    ]


def over_the_wire(messages: list[Any]) -> list[Any]:
    """Pack into a DiscoveryResponse, encode, decode: what the client sees."""
    type_url = AnyMsg.pack(messages[0]).type_url
    raw = bytes(DiscoveryResponse(type_url=type_url, resources=[AnyMsg.pack(m) for m in messages]))
    return xds.decode_resources(DiscoveryResponse.parse(raw), type_url)


# ---- the node -----------------------------------------------------------------------------------------


def test_sidecar_node_is_what_istiod_parses() -> None:
    node = sleep_sidecar()
    # ParseServiceNodeWithMetadata: type~ip~<pod>.<ns>~<ns>.<domain>; podKeyByProxy cuts <pod>.<ns> at "."
    assert node.node_id == "sidecar~10.1.1.5~sleep-7d9c-abcde.sample~sample.svc.cluster.local"
    proto = Node.parse(bytes(node.to_proto()))
    assert proto.id == node.node_id and proto.metadata is not None
    meta = proto.metadata.to_dict()
    assert meta["NETWORK"] == "network1"
    assert meta["CLUSTER_ID"] == "cluster1"
    assert meta["NAMESPACE"] == "sample" == node.node_id.split("~")[2].split(".", 1)[1]
    assert meta["LABELS"] == {"app": "sleep", "security.istio.io/tlsMode": "istio"}
    assert meta["INSTANCE_IPS"] == "10.1.1.5"
    assert meta["ISTIO_VERSION"] == "1.30.0"
    assert meta["SERVICE_ACCOUNT"] == "sleep"
    assert "REQUESTED_NETWORK_VIEW" not in meta


def test_router_node_carries_the_gateway_selector_and_network_view() -> None:
    node = eastwest_router()
    assert node.node_id.startswith("router~10.1.0.9~istio-eastwestgateway-5b8-xyz.istio-system~istio-system.")
    meta = node.to_proto().metadata.to_dict()
    assert meta["LABELS"]["istio"] == "eastwestgateway"
    assert meta["REQUESTED_NETWORK_VIEW"] == "network1"  # a StringList: one comma-separated string


@pytest.mark.parametrize(
    ("change", "setting"),
    [
        ({"network": ""}, "network"),
        ({"cluster_id": ""}, "cluster_id"),
        ({"pod_ip": "sleep"}, "pod_ip"),
        ({"pod_name": "a~b"}, "pod_name"),
        ({"istio_version": ""}, "istio_version"),
    ],
)
def test_node_refuses_what_would_silently_change_istiods_view(change: dict[str, str], setting: str) -> None:
    args: dict[str, Any] = {
        "pod_ip": "10.1.1.5",
        "pod_name": "sleep-0",
        "namespace": "sample",
        "cluster_id": "cluster1",
        "network": "network1",
        "labels": {},
        "istio_version": "1.30.0",
    }
    with pytest.raises(ValueError, match=f"^{setting}: "):
        xds.ProxyNode.sidecar(**{**args, **change})


# ---- parsing ------------------------------------------------------------------------------------------


def test_clusters() -> None:
    views = [xds.cluster_view(c) for c in over_the_wire(cds())]
    assert [(v.name, v.type, v.eds_name) for v in views] == [
        (HELLO, "EDS", HELLO),
        ("BlackHoleCluster", "STATIC", None),
        ("outbound|53||kube-dns.kube-system.svc.cluster.local", "STRICT_DNS", None),
    ]


def test_local_endpoints_are_pods_and_the_remote_network_is_its_gateway() -> None:
    (cla,) = over_the_wire([network1_hello_cla()])
    eps = xds.endpoints_from_cla(cla)
    assert [(e.address, e.port, e.weight, e.tls_mode, e.cluster_id) for e in eps] == [
        ("10.1.1.7", 5000, 1, "istio", "cluster1"),
        ("10.1.2.9", 5000, 1, None, "cluster1"),
        (GATEWAY_NETWORK2, 15443, 2, "istio", "cluster2"),
    ]
    local, plain, gateway = eps
    assert (local.workload_name, local.workload_namespace, local.mtls) == ("helloworld-v1", "sample", True)
    assert not plain.mtls
    # A gateway endpoint stands for no workload: empty name and namespace, only the gateway's cluster.
    assert (gateway.workload_name, gateway.workload_namespace) == ("", "")
    assert {(e.health, e.locality) for e in eps} == {("HEALTHY", "us-east1/b")}


def test_endpoint_without_metadata_and_hbone_internal_address() -> None:
    cla = ClusterLoadAssignment(
        cluster_name=HELLO,
        endpoints=[
            LocalityLbEndpoints(
                lb_endpoints=[
                    LbEndpoint(
                        endpoint=Endpoint(
                            address=Address(
                                envoy_internal_address=EnvoyInternalAddress(
                                    server_listener_name="connect_originate", endpoint_id="10.1.1.7:5000"
                                )
                            )
                        )
                    )
                ]
            )
        ],
    )
    (ep,) = xds.endpoints_from_cla(over_the_wire([cla])[0])
    assert (ep.address, ep.port, ep.internal_listener, ep.weight, ep.tls_mode, ep.cluster_id) == (
        "10.1.1.7",
        5000,
        "connect_originate",
        None,
        None,
        None,
    )
    assert ep.health == "UNKNOWN"


def test_eastwest_15443_is_auto_passthrough_despite_opaque_istio_filters() -> None:
    views = [xds.listener_view(lst) for lst in over_the_wire(eastwest_lds())]
    pt = xds.passthrough_listener(views)
    assert pt.exists and pt.auto_passthrough, pt.problems
    assert (pt.port, pt.name, pt.problems) == (15443, "0.0.0.0_15443", ())
    assert pt.routes(HOST, 5000)
    assert pt.routes(HOST, 5000, subset="v1")
    assert not pt.routes(HOST, 9000)
    assert not pt.routes("other.sample.svc.cluster.local", 5000)
    assert HELLO_SNI in pt.server_names and HELLO_SNI in pt.clusters
    assert views[1].chains[0].filters == ("istio.stats", "envoy.filters.network.tcp_proxy")


@pytest.mark.parametrize(
    ("listeners", "problem"),
    [
        pytest.param([listener(15021, [])], "no listener on port 15443", id="absent"),
        pytest.param([listener(15443, [])], "no filter chains", id="no-services"),
        pytest.param([listener(15443, [sni_chain(HELLO_SNI)], inspector=False)], "tls_inspector", id="no-inspector"),
        pytest.param(
            [
                listener(
                    15443,
                    [
                        FilterChain(
                            filter_chain_match=FilterChainMatch(
                                server_names=[HELLO_SNI], application_protocols=ISTIO_ALPNS
                            ),
                            transport_socket=TransportSocket(name="envoy.transport_sockets.tls"),
                            filters=[tcp_proxy(HELLO_SNI)],
                        )
                    ],
                )
            ],
            "terminates TLS",
            id="istio-mutual",
        ),
        pytest.param(
            [listener(15443, [sni_chain("hello.example.com", alpns=[], target=HELLO)])],
            "outbound_.",
            id="vs-passthrough",
        ),
        pytest.param([listener(15443, [sni_chain(HELLO_SNI, target=HELLO)])], "tcp_proxy goes to", id="other-cluster"),
        pytest.param([listener(15443, [sni_chain(HELLO_SNI, alpns=["h2"])])], "ALPNs", id="not-istio-alpn"),
    ],
)
def test_listener_that_is_not_auto_passthrough(listeners: list[Listener], problem: str) -> None:
    pt = xds.passthrough_listener([xds.listener_view(lst) for lst in over_the_wire(listeners)])
    assert not pt.auto_passthrough
    assert pt.exists == (problem != "no listener on port 15443")
    assert any(problem in p for p in pt.problems), pt.problems
    assert not pt.routes(HOST, 5000)


def test_a_broken_tcp_proxy_config_is_an_xds_error() -> None:
    chain = FilterChain(
        filter_chain_match=FilterChainMatch(server_names=[HELLO_SNI]),
        filters=[
            Filter(
                name="envoy.filters.network.tcp_proxy", typed_config=AnyMsg(type_url=xds.TCP_PROXY_TYPE, value=b"\x12")
            )
        ],
    )
    with pytest.raises(xds.XdsError, match=r"could not decode the tcp_proxy of listener 0\.0\.0\.0_15443"):
        xds.listener_view(listener(15443, [chain]))


def test_decode_refuses_a_foreign_or_broken_resource() -> None:
    wrong = DiscoveryResponse(type_url=xds.CLUSTER_TYPE, resources=[AnyMsg.pack(network1_hello_cla())])
    with pytest.raises(xds.XdsError, match=r"resource 0 of a CDS response is a .*ClusterLoadAssignment"):
        xds.decode_resources(wrong, xds.CLUSTER_TYPE)
    broken = DiscoveryResponse(type_url=xds.CLUSTER_TYPE, resources=[AnyMsg(type_url=xds.CLUSTER_TYPE, value=b"\x12")])
    with pytest.raises(xds.XdsError, match="could not decode resource 0 of a CDS response"):
        xds.decode_resources(broken, xds.CLUSTER_TYPE)


# ---- one ADS stream against a fake istiod ---------------------------------------------------------------

Answer = Callable[[DiscoveryRequest], DiscoveryResponse | None]


def respond(type_url: str, messages: list[Any], version: str = "v1") -> DiscoveryResponse:
    return DiscoveryResponse(
        version_info=version,
        nonce=f"nonce-{type_url.rsplit('.', 1)[1]}",
        type_url=type_url,
        resources=[AnyMsg.pack(m) for m in messages],
    )


def istiod_answers(req: DiscoveryRequest) -> DiscoveryResponse | None:
    if req.type_url == xds.CLUSTER_TYPE:
        return respond(xds.CLUSTER_TYPE, cds())
    if req.type_url == xds.ENDPOINT_TYPE:  # only the names asked (eds.go buildEndpoints)
        return respond(xds.ENDPOINT_TYPE, [network1_hello_cla()] if HELLO in req.resource_names else [])
    if req.type_url == xds.LISTENER_TYPE:
        return respond(xds.LISTENER_TYPE, eastwest_lds())
    return None


class FakeIstiod:
    """An ADS server that records every request, checks the node as istiod does (initProxyMetadata,
    ParseServiceNodeWithMetadata) and answers first requests, not ACKs (pkg/xds/server.go ShouldRespond)."""

    def __init__(self, answer: Answer | None) -> None:
        self.answer = answer
        self.requests: list[DiscoveryRequest] = []

    def stream(
        self, requests: Iterator[DiscoveryRequest], context: grpc.ServicerContext
    ) -> Iterator[DiscoveryResponse]:
        for req in requests:
            self.requests.append(req)
            if len(self.requests) == 1:
                problem = self.node_problem(req.node)
                if problem:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            if req.response_nonce or self.answer is None:
                continue
            resp = self.answer(req)
            if resp is not None:
                yield resp

    @staticmethod
    def node_problem(node: Node | None) -> str:
        if node is None:
            return "first request has no node"
        parts = node.id.split("~")
        if len(parts) != 4 or parts[0] not in ("sidecar", "router"):
            return f"invalid node id {node.id!r}"
        try:
            ipaddress.ip_address(parts[1])
        except ValueError:
            return "no valid IP address in the service node id or metadata"
        meta = node.metadata.to_dict() if node.metadata else {}
        if meta.get("NAMESPACE") != parts[2].split(".", 1)[-1]:
            return f"NAMESPACE {meta.get('NAMESPACE')!r} is not the pod's namespace in {node.id!r}"
        for key in ("NETWORK", "CLUSTER_ID", "ISTIO_VERSION"):
            if not meta.get(key):
                return f"node metadata has no {key}"
        return ""


@pytest.fixture
def serve() -> Iterator[Callable[[Answer | None], tuple[str, FakeIstiod]]]:
    servers: list[grpc.Server] = []

    def start(answer: Answer | None) -> tuple[str, FakeIstiod]:
        fake = FakeIstiod(answer)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.stream_stream_rpc_method_handler(
            fake.stream, request_deserializer=DiscoveryRequest.parse, response_serializer=bytes
        )
        service, method = xds.ADS_METHOD.strip("/").split("/")
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {method: handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}", fake

    yield start
    for server in servers:
        server.stop(0).wait()


def test_fetch_cds_then_eds_as_a_sidecar(serve: Any) -> None:
    address, fake = serve(istiod_answers)
    missing = xds.outbound_cluster("nope.sample.svc.cluster.local", 80)
    view = xds.fetch(address, sleep_sidecar(), xds.XdsRequest(endpoints=(HELLO, missing, "BlackHoleCluster")), 5.0)

    assert (view.address, view.node_id) == (address, sleep_sidecar().node_id)
    assert view.cluster(HELLO) == xds.ClusterView(HELLO, "EDS", HELLO)
    assert [(e.address, e.port, e.weight) for e in view.endpoints[HELLO]] == [
        ("10.1.1.7", 5000, 1),
        ("10.1.2.9", 5000, 1),
        (GATEWAY_NETWORK2, 15443, 2),
    ]
    assert list(view.endpoints) == [HELLO]  # EDS was asked only for the EDS cluster CDS returned
    assert any(missing in e and "CDS has no cluster" in e for e in view.errors), view.errors
    assert any("BlackHoleCluster is STATIC" in e for e in view.errors), view.errors

    # The stream, as istiod saw it: node first and only once, ACKs echo version and nonce, and the
    # stream was half-closed after the last ACK (fetch returned after the server's handler ended).
    seen = [(r.type_url, list(r.resource_names), r.version_info, r.response_nonce) for r in fake.requests]
    assert seen == [
        (xds.CLUSTER_TYPE, [], "", ""),
        (xds.CLUSTER_TYPE, [], "v1", "nonce-Cluster"),
        (xds.ENDPOINT_TYPE, [HELLO], "", ""),
        (xds.ENDPOINT_TYPE, [HELLO], "v1", "nonce-ClusterLoadAssignment"),
    ]
    assert fake.requests[0].node is not None and fake.requests[0].node.id == sleep_sidecar().node_id
    assert all(r.node is None for r in fake.requests[1:])


def test_fetch_lds_as_the_eastwest_gateway(serve: Any) -> None:
    address, fake = serve(istiod_answers)
    view = xds.fetch(address, eastwest_router(), xds.XdsRequest(clusters=False, listeners=True), 5.0)
    assert view.clusters == () and view.endpoints == {}
    assert [lst.port for lst in view.listeners] == [15021, 15443]
    assert view.passthrough().auto_passthrough and view.passthrough().routes(HOST, 5000)
    assert [r.type_url for r in fake.requests] == [xds.LISTENER_TYPE, xds.LISTENER_TYPE]
    assert fake.requests[0].node is not None
    assert fake.requests[0].node.metadata.to_dict()["LABELS"]["istio"] == "eastwestgateway"


def test_fetch_eds_without_cds_asks_the_names_given(serve: Any) -> None:
    address, fake = serve(istiod_answers)
    other = xds.outbound_cluster("nope.sample.svc.cluster.local", 80)
    view = xds.fetch(address, sleep_sidecar(), xds.XdsRequest(clusters=False, endpoints=(HELLO, other)), 5.0)
    assert list(fake.requests[0].resource_names) == [HELLO, other]
    assert len(view.endpoints[HELLO]) == 3
    assert view.errors == (f"EDS response has no ClusterLoadAssignment for {other}",)


def test_fetch_times_out_when_istiod_never_answers(serve: Any) -> None:
    address, fake = serve(None)
    start = time.monotonic()
    with pytest.raises(xds.XdsError) as err:
        xds.fetch(address, sleep_sidecar(), xds.XdsRequest(), timeout=1.0)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 3.0, elapsed
    msg = str(err.value)
    assert address in msg and sleep_sidecar().node_id in msg
    assert "timed out after 1 s waiting for a CDS response" in msg
    assert len(fake.requests) == 1  # asked once, no retries


def test_fetch_names_an_unreachable_address() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(xds.XdsError, match=rf"from {address} .*: {address} is unreachable"):
        xds.fetch(address, sleep_sidecar(), xds.XdsRequest(), timeout=5.0)
    assert time.monotonic() - start < 5.0


def test_fetch_reports_istiod_refusing_the_node(serve: Any) -> None:
    address, _ = serve(istiod_answers)
    node = xds.ProxyNode(
        node_id="sidecar~10.1.1.5~sleep-0.sample~sample.svc.cluster.local", metadata={"NAMESPACE": "sample"}
    )
    with pytest.raises(
        xds.XdsError, match="INVALID_ARGUMENT while we waited for a CDS response: node metadata has no NETWORK"
    ):
        xds.fetch(address, node, xds.XdsRequest(), timeout=5.0)


def test_fetch_raises_on_a_response_it_cannot_decode(serve: Any) -> None:
    def broken(req: DiscoveryRequest) -> DiscoveryResponse:
        return DiscoveryResponse(
            version_info="v1",
            nonce="n1",
            type_url=req.type_url,
            resources=[AnyMsg(type_url=req.type_url, value=b"\x12")],
        )

    address, fake = serve(broken)
    with pytest.raises(xds.XdsError, match=f"from {address} .*could not decode resource 0 of a CDS response"):
        xds.fetch(address, sleep_sidecar(), xds.XdsRequest(), timeout=5.0)
    assert all(r.error_detail is None for r in fake.requests)  # never NACKed: istiod would count a rejection


def test_fetch_refuses_an_empty_request_or_timeout() -> None:
    with pytest.raises(ValueError, match="asks for nothing"):
        xds.fetch("127.0.0.1:1", sleep_sidecar(), xds.XdsRequest(clusters=False))
    with pytest.raises(ValueError, match="timeout"):
        xds.fetch("127.0.0.1:1", sleep_sidecar(), xds.XdsRequest(), timeout=0)


def test_importing_verify_xds_loads_no_proto_module() -> None:
    """The envoy-data-plane modules take about a second to import: only fetch and the parsers load them."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = "import sys, verify.xds; print(sum(m.startswith('envoy_data_plane') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "0", out


def test_collect_proxy_asks_as_the_client_sidecar_and_as_the_gateway(serve: Any) -> None:
    """verify's proxy view (verify.proxy.collect_proxy) against the fake istiod: the EDS of helloworld's
    outbound cluster as a sidecar (a stand-in node when no client pod runs), and the 15443 listener as the
    east-west gateway pod (its labels, its own network as the requested view)."""
    address, fake = serve(istiod_answers)
    cluster = ClusterFacts(
        name="cluster1",
        expected_network="network1",
        service_ports=[5000],
        gateway_pod={
            "name": "istio-eastwestgateway-abc",
            "ip": "10.1.1.20",
            "labels": {"istio": "eastwestgateway", "app": "istio-eastwestgateway"},
            "serviceAccount": "istio-eastwestgateway",
        },
        istio_version="1.30.4",
    )
    access = DirectAccess("127.0.0.1:1", "127.0.0.1:2", address)
    p = collect_proxy(cluster, access, HOST, "sample", [5000], "sleep", "mesh1")
    assert p.error is None and p.gateway_error is None and p.notes == []
    assert p.client_node == (
        "sidecar~127.0.0.1~verify-stand-in-sleep.sample~sample.svc.cluster.local (stand-in: no running pod app=sleep)"
    )
    assert [(e["address"], e["port"], e["weight"], e["tlsMode"], e["clusterId"]) for e in p.endpoints[HELLO]] == [
        ("10.1.1.7", 5000, 1, "istio", "cluster1"),
        ("10.1.2.9", 5000, 1, None, "cluster1"),
        (GATEWAY_NETWORK2, 15443, 2, "istio", "cluster2"),
    ]
    assert p.listener == {
        "port": 15443,
        "exists": True,
        "autoPassthrough": True,
        "routes": {HELLO_SNI: True},
        "problems": [],
    }
    first = [r for r in fake.requests if r.node is not None]
    assert [r.node.id for r in first] == [
        "sidecar~127.0.0.1~verify-stand-in-sleep.sample~sample.svc.cluster.local",
        "router~10.1.1.20~istio-eastwestgateway-abc.istio-system~istio-system.svc.cluster.local",
    ]
    router_meta = first[1].node.metadata.to_dict()
    assert router_meta["REQUESTED_NETWORK_VIEW"] == "network1"
    assert router_meta["LABELS"]["istio"] == "eastwestgateway" and router_meta["ISTIO_VERSION"] == "1.30.4"


def test_collect_proxy_without_an_xds_address_is_an_error_not_a_crash() -> None:
    cluster = ClusterFacts(name="cluster1", expected_network="network1", service_ports=[5000])
    p = collect_proxy(cluster, DirectAccess("127.0.0.1:1", "127.0.0.1:2"), HOST, "sample", [5000], "sleep", None)
    assert p.error is not None and "no address of istiod's plaintext xDS (15010)" in p.error
