"""One ADS stream to istiod: subscribe as Envoy does, ACK, never NACK, one deadline for all of it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .node import ProxyNode, XdsRequest
from .protos import (
    ADS_METHOD,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    XdsError,
    decode_resources,
    envoy_protos,
    short_type,
)
from .views import ClusterView, ListenerView, ProxyView, XdsEndpoint, cluster_view, endpoints_from_cla, listener_view

if TYPE_CHECKING:
    import grpc
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

DEFAULT_TIMEOUT = 10.0
#: istiod's CDS/LDS for a large mesh exceed gRPC's default 4 MiB receive limit; Envoy has none.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: After the last ACK the stream is half-closed and istiod ends it; this long at most, then cancelled.
CLOSE_GRACE_SECONDS = 2.0


def fetch(
    address: str,
    node: ProxyNode,
    request: XdsRequest,
    timeout: float = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    *,
    server_name: str | None = None,
) -> ProxyView:
    """Ask istiod at ``address`` (``host:port``) what it would send ``node``, on one ADS stream.

    Plaintext without ``credentials`` (istiod's 15010); with them TLS (15012: ``grpc.ssl_channel_
    credentials(root, key, chain)``, ``server_name`` ``istiod.istio-system.svc`` when the address is not
    that name). The whole exchange has one deadline, ``timeout`` seconds; every failure raises
    ``XdsError`` naming the address, the node and what was asked. Responses are ACKed (version and nonce
    echoed) and never NACKed: istiod counts NACKs as proxy rejections (pkg/xds/server.go
    ``ShouldRespond``: ``pilot_total_xds_rejects``), so a response this client cannot decode raises instead.
    """
    if timeout <= 0:
        raise ValueError(f"timeout: {timeout!r} must be positive")
    if not (request.clusters or request.endpoints or request.listeners):
        raise ValueError("request: asks for nothing (clusters, endpoints or listeners)")
    import grpc

    what = f"xDS {request.describe()} from {address} for node {node.node_id}"
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    channel = (
        grpc.secure_channel(address, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(address, options=options)
    )
    with channel:
        stream = _AdsStream(channel, node, timeout)
        try:
            view = _exchange(stream, address, node, request)
        except grpc.RpcError as exc:
            raise XdsError(f"{what}: {_rpc_failure(exc, address, timeout, stream.waiting_for)}") from exc
        except XdsError as exc:
            raise XdsError(f"{what}: {exc}") from exc
        finally:
            stream.close()
    return view


def _exchange(stream: _AdsStream, address: str, node: ProxyNode, request: XdsRequest) -> ProxyView:
    errors: list[str] = []
    clusters: tuple[ClusterView, ...] = ()
    if request.clusters:
        resp = stream.subscribe(CLUSTER_TYPE, ())
        clusters = tuple(cluster_view(c) for c in decode_resources(resp, CLUSTER_TYPE))

    endpoints: dict[str, tuple[XdsEndpoint, ...]] = {}
    if request.endpoints:
        eds_names: list[str] = []
        if request.clusters:
            by_name = {c.name: c for c in clusters}
            for name in request.endpoints:
                c = by_name.get(name)
                if c is None:
                    errors.append(f"CDS has no cluster {name}: the proxy would not ask for its endpoints")
                elif c.eds_name is None:
                    errors.append(f"cluster {name} is {c.type}, not EDS: it has no endpoints to ask for")
                else:
                    eds_names.append(c.eds_name)
        else:
            eds_names = list(request.endpoints)
        eds_names = list(dict.fromkeys(eds_names))
        if eds_names:  # an EDS request without names would unsubscribe (pkg/xds/server.go shouldUnsubscribe)
            resp = stream.subscribe(ENDPOINT_TYPE, eds_names)
            for cla in decode_resources(resp, ENDPOINT_TYPE):
                endpoints[cla.cluster_name] = endpoints_from_cla(cla)
            for name in eds_names:
                if name not in endpoints:
                    errors.append(f"EDS response has no ClusterLoadAssignment for {name}")

    listeners: tuple[ListenerView, ...] = ()
    if request.listeners:
        resp = stream.subscribe(LISTENER_TYPE, ())
        listeners = tuple(listener_view(lst) for lst in decode_resources(resp, LISTENER_TYPE))

    return ProxyView(
        address=address,
        node_id=node.node_id,
        clusters=clusters,
        endpoints=endpoints,
        listeners=listeners,
        errors=tuple(errors),
    )


class _AdsStream:
    """One SotW ADS call: requests go through a queue (gRPC sends them from its own thread), responses
    are read in order; the call's deadline bounds every wait."""

    def __init__(self, channel: grpc.Channel, node: ProxyNode, timeout: float) -> None:
        self._node = node
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._first = True
        self._closed = False
        self._names: dict[str, list[str]] = {}  # subscribed type -> resource names
        self.waiting_for = "the stream to open"
        self._deadline = time.monotonic() + timeout
        call = channel.stream_stream(ADS_METHOD, request_serializer=None, response_deserializer=None)
        self._call: Any = call(self._requests(), timeout=timeout)
        self._responses: Iterator[bytes] = self._call

    def _requests(self) -> Iterator[bytes]:
        while (item := self._out.get()) is not None:
            yield item

    def _send(self, type_url: str, names: Sequence[str], version: str = "", nonce: str = "") -> None:
        req = envoy_protos().DiscoveryRequest(
            node=self._node.to_proto() if self._first else None,  # istiod reads the node once per stream
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        self._first = False
        self._out.put(bytes(req))

    def subscribe(self, type_url: str, names: Sequence[str]) -> DiscoveryResponse:
        """Subscribe to ``type_url`` (``names``, or all for CDS/LDS), return its first response, ACKed.

        Responses of other subscribed types (istiod pushes when config changes) are ACKed and skipped.
        """
        parse = envoy_protos().DiscoveryResponse.parse
        self._names[type_url] = list(names)
        self._send(type_url, names)
        self.waiting_for = f"a {short_type(type_url)} response"
        for raw in self._responses:
            try:
                resp = parse(raw)
            except Exception as exc:
                raise XdsError(f"could not decode a DiscoveryResponse while waiting for {self.waiting_for}") from exc
            if resp.type_url in self._names:
                self._send(resp.type_url, self._names[resp.type_url], resp.version_info, resp.nonce)
            if resp.type_url == type_url:
                return resp
        raise XdsError(f"istiod ended the stream while we waited for {self.waiting_for}")

    def close(self) -> None:
        """Half-close (after the last ACK), give istiod a moment to end the call, then cancel it."""
        if self._closed:
            return
        self._closed = True
        self._out.put(None)
        done = threading.Event()
        self._call.add_done_callback(lambda _call: done.set())
        done.wait(max(0.0, min(CLOSE_GRACE_SECONDS, self._deadline - time.monotonic())))
        self._call.cancel()


def _rpc_failure(exc: grpc.RpcError, address: str, timeout: float, waiting_for: str) -> str:
    import grpc

    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"timed out after {timeout:g} s waiting for {waiting_for}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"{address} is unreachable ({details})"
    name = code.name if code is not None else "error"
    return f"istiod ended the stream with {name} while we waited for {waiting_for}: {details}"
