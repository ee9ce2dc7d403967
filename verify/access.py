"""How verify reaches one istiod: its HTTP debug port (8080), its xDS TLS port (15012) and its plaintext
xDS port (15010, for the proxy view).

``DirectAccess``: istiod is reachable from here (the lab runs istiods as local processes; or a VPN).
``PortForwardAccess``: through the cluster's API server (what ``kubectl port-forward`` does) to a ready
istiod pod. Every call has a timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from istio_mesh.constants import ISTIO_NAMESPACE, ISTIOD_HTTP_PORT, ISTIOD_XDS_PORT, ISTIOD_XDS_TLS_PORT

from .kube import client_for, read

#: Seconds allowed for a connection to istiod and for each read on it.
ISTIOD_TIMEOUT = 10.0


class IstiodAccess(Protocol):
    """How to reach one istiod."""

    address: str

    def http_get(self, path: str) -> bytes: ...

    def tls_socket(self) -> socket.socket: ...

    def xds_address(self) -> str:
        """``HOST:PORT`` on this machine where istiod's plaintext xDS (15010) answers."""
        ...


def hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) as a tuple; ValueError naming the value otherwise."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


T = TypeVar("T")


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()``, or TimeoutError naming ``what`` after ``timeout`` seconds: for client calls that take no
    timeout of their own. An abandoned call finishes in its daemon thread (it cannot delay exit)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=run, name="verify-bounded", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{what}: no answer within {timeout:.0f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def http_get(conn: http.client.HTTPConnection, path: str) -> bytes:
    """GET ``path`` on an istiod HTTP connection; anything but 200 is an OSError naming the status."""
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


class DirectAccess:
    """istiod reachable from here at the given addresses of its 8080 and 15012 (and 15010, if given)."""

    def __init__(
        self, http_hostport: str, tls_hostport: str, xds_hostport: str | None = None, timeout: float = ISTIOD_TIMEOUT
    ) -> None:
        self.http = hostport(http_hostport)
        self.tls = hostport(tls_hostport)
        self.xds = xds_hostport
        if xds_hostport:
            hostport(xds_hostport)
        self.timeout = timeout
        self.address = f"http://{http_hostport}"

    def xds_address(self) -> str:
        if not self.xds:
            raise OSError(f"no address of istiod's plaintext xDS ({ISTIOD_XDS_PORT}) was given for {self.address}")
        return self.xds

    def http_get(self, path: str) -> bytes:
        return http_get(http.client.HTTPConnection(*self.http, timeout=self.timeout), path)

    def tls_socket(self) -> socket.socket:
        return socket.create_connection(self.tls, timeout=self.timeout)


class PortForwardAccess:
    """istiod reached through the Kubernetes API server (``kubectl port-forward`` to a ready istiod pod)."""

    def __init__(self, kubeconfig: Mapping[str, Any], context: str | None, timeout: float = ISTIOD_TIMEOUT) -> None:
        from kubernetes import client

        self.api = client_for(kubeconfig, context)
        self.core = client.CoreV1Api(self.api)
        self.timeout = timeout
        pods = read(self.core.list_namespaced_pod, ISTIO_NAMESPACE, label_selector="app=istiod")
        ready = [
            str(p["metadata"]["name"])
            for p in pods.get("items") or []
            if (p.get("status") or {}).get("phase") == "Running"
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions") or [])
        ]
        if not ready:
            raise OSError(f"no ready istiod pod (label app=istiod) in {ISTIO_NAMESPACE}")
        self.pod = sorted(ready)[0]
        self._sessions: list[Any] = []
        self._relay: Relay | None = None
        self.address = f"pod {ISTIO_NAMESPACE}/{self.pod} (port-forward)"

    def _socket(self, port: int) -> socket.socket:
        from kubernetes.stream import portforward

        # The client opens the websocket without a timeout (kubernetes.stream.ws_client.create_websocket
        # takes none): bounded here instead.
        pf = bounded(
            lambda: portforward(
                self.core.connect_get_namespaced_pod_portforward, self.pod, ISTIO_NAMESPACE, ports=str(port)
            ),
            self.timeout,
            f"port-forward to {ISTIO_NAMESPACE}/{self.pod}:{port}",
        )
        # The client's wrapper hides one socketopt; TLS needs the real socket (one end of a socketpair
        # whose other end the client proxies over the API server's websocket).
        wrapped = pf.socket(port)
        sock: socket.socket = getattr(wrapped, "_socket", wrapped)
        sock.settimeout(self.timeout)
        self._sessions.append(pf)  # the proxy thread lives as long as the session object
        return sock

    def http_get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("istiod", timeout=self.timeout)
        conn.sock = self._socket(ISTIOD_HTTP_PORT)
        return http_get(conn, path)

    def tls_socket(self) -> socket.socket:
        return self._socket(ISTIOD_XDS_TLS_PORT)

    def xds_address(self) -> str:
        """A local relay: each connection to it is one port-forward to istiod's 15010 (gRPC needs an address)."""
        if self._relay is None:
            self._relay = Relay(lambda: self._socket(ISTIOD_XDS_PORT))
        return self._relay.address


class Relay:
    """A TCP listener on 127.0.0.1 (ephemeral port) whose every connection is pumped to a socket from
    ``connect`` (a port-forward). Daemon threads: nothing outlives the command."""

    def __init__(self, connect: Callable[[], socket.socket]) -> None:
        self._connect = connect
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, name="verify-relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = self._connect()
            except Exception:  # the client sees the connection close; its own timeout names the address
                client.close()
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), name="verify-relay-pump", daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
