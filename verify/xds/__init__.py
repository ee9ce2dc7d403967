"""What istiod would tell a proxy: an xDS client that presents a pod's node and reads CDS, EDS and LDS.

No Envoy runs here, so this package is the proxy: it opens one ADS stream
(``envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources``, state of the world)
to istiod, sends the node a sidecar (or gateway) of a given pod would send, subscribes as Envoy does
(CDS wildcard, then EDS for named clusters, LDS wildcard), ACKs every response and closes the stream.
The lab's istiod serves xDS in plaintext on 15010, where istiod authenticates nobody
(pkg/security/authentication.go ``Authenticate``: a non-TLS peer is not authenticated unless
``XDS_AUTH_PLAINTEXT``); on 15012 pass TLS ``credentials`` with a client certificate.

Messages are the ``envoy-data-plane`` package's (betterproto2 dataclasses; imported lazily, they take
about a second); the transport is ``grpcio`` with a generic stream of bytes: it is synchronous like the
rest of ``verify``, already a pinned dependency, and takes standard ``grpc.ChannelCredentials``.

Three layers, as in ``verify``'s other modules: ``ProxyNode`` says who we are, ``fetch`` talks to istiod,
and pure functions (``cluster_view``, ``endpoints_from_cla``, ``listener_view``, ``passthrough_listener``)
turn decoded messages into plain frozen dataclasses, unit-tested without a network.

Modules: ``protos`` (type URLs, ``XdsError``, the lazily imported messages), ``node`` (``ProxyNode``,
``XdsRequest``), ``views`` (the dataclasses and the pure parsers), ``client`` (``fetch``: the stream).
"""

from .client import fetch
from .node import ProxyNode, XdsRequest
from .protos import (
    ADS_METHOD,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    TCP_PROXY_TYPE,
    XdsError,
    decode_resources,
    envoy_protos,
)
from .views import (
    ClusterView,
    FilterChainView,
    ListenerView,
    PassthroughChain,
    PassthroughListener,
    ProxyView,
    XdsEndpoint,
    cluster_view,
    endpoints_from_cla,
    listener_view,
    outbound_cluster,
    passthrough_listener,
    sni_cluster,
)

__all__ = [
    "ADS_METHOD",
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "TCP_PROXY_TYPE",
    "ClusterView",
    "FilterChainView",
    "ListenerView",
    "PassthroughChain",
    "PassthroughListener",
    "ProxyNode",
    "ProxyView",
    "XdsEndpoint",
    "XdsError",
    "XdsRequest",
    "cluster_view",
    "decode_resources",
    "endpoints_from_cla",
    "envoy_protos",
    "fetch",
    "listener_view",
    "outbound_cluster",
    "passthrough_listener",
    "sni_cluster",
]
