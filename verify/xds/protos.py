"""The xDS protocol's names and messages: type URLs, the one error type, and the envoy-data-plane
classes (betterproto2 dataclasses), imported on first use (about a second)."""

from __future__ import annotations

import functools
import threading
import types
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

#: The one RPC: SotW ADS.
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
TYPE_PREFIX = "type.googleapis.com/"
CLUSTER_TYPE = TYPE_PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = TYPE_PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = TYPE_PREFIX + "envoy.config.listener.v3.Listener"
TCP_PROXY_TYPE = TYPE_PREFIX + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
#: Short names for messages, as istiod logs them (CDS/EDS/LDS).
SHORT_TYPE = {CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS", LISTENER_TYPE: "LDS"}


class XdsError(Exception):
    """An xDS exchange failed: the message says what was asked of which istiod and what happened."""


@functools.cache
def envoy_protos() -> types.SimpleNamespace:
    """The envoy-data-plane classes this module uses, imported on first use (about a second).

    Its generated classes use a pydantic decorator form that pydantic 2.12 deprecates (pydantic is here
    for the kubernetes client): those import-time warnings are the package's, not ours, and are hidden.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"envoy_data_plane(\.|$)")
        from envoy_data_plane.envoy.config.cluster.v3 import Cluster
        from envoy_data_plane.envoy.config.core.v3 import Node
        from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
        from envoy_data_plane.envoy.config.listener.v3 import Listener
        from envoy_data_plane.envoy.extensions.filters.network.tcp_proxy.v3 import TcpProxy
        from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
        from envoy_data_plane.google.protobuf import Struct
    return types.SimpleNamespace(
        Cluster=Cluster,
        ClusterLoadAssignment=ClusterLoadAssignment,
        DiscoveryRequest=DiscoveryRequest,
        DiscoveryResponse=DiscoveryResponse,
        Listener=Listener,
        Node=Node,
        Struct=Struct,
        TcpProxy=TcpProxy,
    )


#: betterproto2's message classes build their pydantic schema lazily, on first use, and that is not
#: thread-safe: two istiods' responses decoded at once (verify reads every cluster in parallel) once failed
#: with "'ConfigSource' object has no attribute '__pydantic_core_schema__'". Decoding is serialised.
DECODE_LOCK = threading.Lock()


def decode_resources(response: DiscoveryResponse, type_url: str) -> list[Any]:
    """The messages inside a response's ``Any`` resources, all of ``type_url``; ``XdsError`` otherwise."""
    pb = envoy_protos()
    cls = {CLUSTER_TYPE: pb.Cluster, ENDPOINT_TYPE: pb.ClusterLoadAssignment, LISTENER_TYPE: pb.Listener}[type_url]
    out = []
    for i, res in enumerate(response.resources):
        if res.type_url != type_url:
            raise XdsError(f"resource {i} of a {short_type(type_url)} response is a {res.type_url!r}")
        try:
            with DECODE_LOCK:
                out.append(cls.parse(res.value))
        except Exception as exc:  # betterproto2 raises EOFError/ValueError/... on a bad encoding
            raise XdsError(f"could not decode resource {i} of a {short_type(type_url)} response: {exc!r}") from exc
    return out


def short_type(type_url: str) -> str:
    return SHORT_TYPE.get(type_url, type_url)
