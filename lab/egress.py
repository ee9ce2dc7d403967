"""The API server's way into a lab cluster's network: an HTTP CONNECT proxy on a Unix socket.

In the lab, Service IPs are virtual (nothing routes ``10.10x.0.0/16``) and istiod runs as a local
process on the cluster's loopback address, so an admission webhook that names a Service (istiod's
``sidecar-injector``: ``istiod.istio-system:443``) is unreachable, and Endpoints cannot point at a
loopback address. kube-apiserver's egress selector is the way round it: with
``--egress-selector-config-file`` naming a ``cluster`` egress over ``transport.uds`` with
``proxyProtocol: HTTPConnect``, the API server opens one connection to the socket per dial of its
"cluster" network context and writes ``CONNECT <ClusterIP>:<service port> HTTP/1.1``; any status but
200 fails the dial (k8s.io/apiserver ``pkg/server/egressselector/egress_selector.go``,
``tunnelHTTPConnect``). That context carries Service-backed admission webhooks, kubelet traffic
(logs, exec, port-forward; here KWOK on the node address) and the ``pods``/``services`` proxy.

``EgressProxy`` answers those CONNECTs: a destination in its routing table (``ClusterIP:443`` ->
``127.0.<i>.1:<istiod webhook port>``) is dialled at the mapped address, any other destination as
asked, so kubelet traffic keeps working. One proxy per cluster; run it in a thread or as a process::

    python -m lab.egress --socket PATH [--route 198.19.1.10:443=127.0.1.1:20117 ...] [--routes-file F]

A process re-reads ``--routes-file`` (JSON, ``lab/egress_routes.py``) whenever it changes, so the route to
istiod can be added once the Istio chart has given its Service a ClusterIP.

The API server's side (the ``--egress-selector-config-file`` that points it here) is ``lab/egress_config.py``;
one CONNECT (read the request head, dial, pump both ways) is ``lab/egress_tunnel.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TextIO

from .egress_config import (
    CLUSTER_EGRESS,
    EGRESS_SELECTOR_API_VERSION,
    egress_selector_config,
    write_egress_selector_config,
)
from .egress_routes import Address, canonical_host, format_address, parse_address, parse_route, read_routes
from .egress_tunnel import ESTABLISHED, ConnectError, dial, read_connect, status_line_safe, tunnel

# What lab.egress offers: the proxy and its command line; the API server's side from egress_config (lab/agents.py
# and the tests take it from here) and the CONNECT's 200 answer from egress_tunnel.
__all__ = [
    "CLUSTER_EGRESS",
    "EGRESS_SELECTOR_API_VERSION",
    "ESTABLISHED",
    "EgressError",
    "EgressProxy",
    "egress_selector_config",
    "main",
    "write_egress_selector_config",
]

# sockaddr_un.sun_path holds 108 bytes with the terminating NUL.
_SUN_PATH_MAX = 107


class EgressError(Exception):
    """The proxy cannot start (the message names the socket and what is in the way)."""


# ---- the proxy -----------------------------------------------------------------------------------
class EgressProxy:
    """An HTTP CONNECT proxy on the Unix socket ``socket_path`` with a routing table.

    ``routes`` maps a CONNECT target to the address actually dialled; other targets are dialled as
    asked, except in ``virtual_networks`` (CIDRs nothing routes, like the lab's Service and pod ranges:
    dialled as asked, such an address would leave through the host's default route), where a target
    without a route is answered 502. ``routes_file`` (optional, JSON from ``egress_routes.write_routes``) is re-read
    whenever it changes and overrides ``routes``. ``log`` (default stderr) gets a line per CONNECT and
    one more when a tunnel ends. ``refused_wait``: seconds to keep retrying a routed destination that
    refuses the connection (the local process behind the route restarting, where a rolling update in a
    cluster keeps the old pod serving until the new one is ready); 0 answers 503 at once.

    Lifecycle: ``start()`` binds (the socket exists when it returns), ``serve_forever()`` accepts until
    ``stop()``/``close()``; ``close()`` also ends every open tunnel, joins every thread and removes the
    socket. ``with EgressProxy(...) as p:`` serves from a background thread.
    """

    def __init__(
        self,
        socket_path: Path | str,
        routes: Mapping[Address, Address] | None = None,
        *,
        routes_file: Path | None = None,
        log: TextIO | None = None,
        virtual_networks: Iterable[str] = (),
        dial_timeout: float = 5.0,
        handshake_timeout: float = 10.0,
        refused_wait: float = 0.0,
    ) -> None:
        self.socket_path = Path(socket_path).absolute()
        if len(os.fsencode(self.socket_path)) > _SUN_PATH_MAX:
            raise EgressError(f"socket path {self.socket_path} is longer than {_SUN_PATH_MAX} bytes (AF_UNIX limit)")
        self.routes_file = routes_file
        self.virtual_networks = tuple(ipaddress.ip_network(n) for n in virtual_networks)
        self.dial_timeout = dial_timeout
        self.handshake_timeout = handshake_timeout
        self.refused_wait = refused_wait
        self._log_file = log if log is not None else sys.stderr
        self._lock = threading.Lock()
        self._routes: dict[Address, Address] = {}
        self._file_routes: dict[Address, Address] = {}
        self._file_stamp: tuple[int, int, int] | None = None
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._loop_running = False
        self._loop_done = threading.Event()
        self._loop_done.set()
        self._closed = False
        self._sockets: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._serve_thread: threading.Thread | None = None
        self._ids = itertools.count(1)
        for target, dest in (routes or {}).items():
            self.set_route(target, dest)

    # -- routing table ---------------------------------------------------------------------------
    def set_route(self, target: Address, destination: Address) -> None:
        """CONNECTs to ``target`` opened from now on are dialled at ``destination``."""
        key = (canonical_host(target[0]), int(target[1]))
        with self._lock:
            self._routes[key] = (canonical_host(destination[0]), int(destination[1]))

    def remove_route(self, target: Address) -> None:
        with self._lock:
            self._routes.pop((canonical_host(target[0]), int(target[1])), None)

    @property
    def routes(self) -> dict[Address, Address]:
        """The table in effect: ``routes`` overridden by the routes file."""
        self._reload_routes_file()
        with self._lock:
            return {**self._routes, **self._file_routes}

    def resolve(self, target: Address) -> tuple[Address, bool]:
        """The address to dial for ``target`` and whether a route applied."""
        table = self.routes
        dest = table.get(target)
        return (dest, True) if dest is not None else (target, False)

    def _reload_routes_file(self) -> None:
        if self.routes_file is None:
            return
        try:
            st = self.routes_file.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if stamp == self._file_stamp:
                return
        try:
            table = read_routes(self.routes_file) if stamp is not None else {}
        except (OSError, ValueError) as e:
            # Keep serving with the table we had; say so once per version of the file.
            self._write_log(f"routes file {self.routes_file} not loaded, keeping the previous routes: {e}")
            table = None
        with self._lock:
            self._file_stamp = stamp
            if table is not None:
                self._file_routes = table
        if table is not None:
            shown = ", ".join(f"{format_address(t)}={format_address(d)}" for t, d in sorted(table.items()))
            self._write_log(f"routes file {self.routes_file}: {shown or 'no routes'}")

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind and listen on the socket (a stale socket file from a dead proxy is replaced)."""
        if self._closed:
            raise EgressError(f"the proxy on {self.socket_path} is closed")
        if self._listener is not None:
            return
        self._clear_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            # The API server runs as the same user; nobody else may open tunnels through the proxy.
            os.chmod(self.socket_path, 0o600)
            listener.listen(128)
            listener.setblocking(False)
        except OSError as e:
            listener.close()
            raise EgressError(f"cannot listen on {self.socket_path}: {e}") from e
        self._listener = listener
        self._reload_routes_file()
        shown = ", ".join(f"{format_address(t)}={format_address(d)}" for t, d in sorted(self.routes.items()))
        virtual = ", ".join(str(n) for n in self.virtual_networks)
        self._write_log(
            f"listening on {self.socket_path}; routes: {shown or 'none'}; "
            f"refused without a route: {virtual or 'nothing (unrouted targets are dialled as asked)'}"
        )

    def _clear_stale_socket(self) -> None:
        try:
            mode = os.lstat(self.socket_path).st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise EgressError(f"{self.socket_path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.socket_path))
        except (ConnectionRefusedError, FileNotFoundError):
            self.socket_path.unlink(missing_ok=True)  # nobody listens: left by a proxy that died
            return
        except OSError as e:
            raise EgressError(f"{self.socket_path} exists and cannot be probed: {e}") from e
        finally:
            probe.close()
        raise EgressError(f"another process is serving on {self.socket_path}")

    def serve_forever(self) -> None:
        """Accept connections until ``stop()``/``close()``; each is handled in its own thread."""
        self.start()
        listener = self._listener
        assert listener is not None
        with self._lock:
            if self._loop_running:
                raise EgressError(f"the proxy on {self.socket_path} is already serving")
            if self._stopping.is_set():
                return  # stopped before it began (close() then needs no wait for this loop)
            self._loop_running = True
            self._loop_done.clear()
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(listener, selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                while not self._stopping.is_set():
                    for key, _ in sel.select():
                        if key.fileobj is listener and not self._stopping.is_set():
                            self._accept(listener)
        finally:
            with self._lock:
                self._loop_running = False
            self._loop_done.set()

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        cid = next(self._ids)
        t = threading.Thread(target=self._handle, args=(conn, cid), name=f"egress-{cid}", daemon=True)
        with self._lock:
            self._sockets.add(conn)
            self._handlers.add(t)
        t.start()

    def serve_in_background(self) -> threading.Thread:
        """Bind now, then serve from a daemon thread (returned); ``close()`` ends it."""
        self.start()
        t = threading.Thread(target=self.serve_forever, name="egress-accept", daemon=True)
        self._serve_thread = t
        t.start()
        return t

    def stop(self) -> None:
        """Ask ``serve_forever`` to return (safe from a signal handler; does not wait)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting, end every tunnel, join every thread and remove the socket. Idempotent.

        Not from a signal handler while ``serve_forever`` runs in the same thread: use ``stop()`` there.
        """
        if self._closed:
            return
        self.stop()
        wait = timeout if timeout is not None else self.dial_timeout + 5.0
        if not self._loop_done.wait(wait):
            raise EgressError(f"the accept loop of {self.socket_path} did not stop within {wait:.0f}s")
        if self._serve_thread is not None:
            self._serve_thread.join(wait)
        self._closed = True
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            self.socket_path.unlink(missing_ok=True)
        with self._lock:
            open_sockets = list(self._sockets)
            handlers = list(self._handlers)
        for s in open_sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + wait
        for t in handlers:
            t.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()
        alive = [t.name for t in handlers if t.is_alive()]
        if alive:
            raise EgressError(f"connections {', '.join(alive)} of {self.socket_path} did not end within {wait:.0f}s")

    def active_connections(self) -> int:
        """Connections being handled (handshake, dial or tunnel)."""
        with self._lock:
            return len(self._handlers)

    def __enter__(self) -> EgressProxy:
        self.serve_in_background()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self.close()

    # -- one connection --------------------------------------------------------------------------
    def _handle(self, client: socket.socket, cid: int) -> None:
        """One line when the CONNECT is answered; a tunnel adds one more when it ends."""
        started = time.monotonic()
        what = f"#{cid} CONNECT -"
        counts = [0, 0]  # bytes client -> upstream, upstream -> client
        upstream: socket.socket | None = None
        established = False
        try:
            try:
                target_text, rest = read_connect(client, self.handshake_timeout)
                what = f"#{cid} CONNECT {target_text}"
                target = parse_address(target_text)
            except ValueError as e:
                raise ConnectError(f"400 Bad Request: {e}") from None
            dest, routed = self.resolve(target)
            network = None if routed else self._virtual_network_of(target[0])
            if network is not None:
                raise ConnectError(f"502 Bad Gateway: no route for {target_text} (virtual network {network})")
            what += f" -> {format_address(dest)} ({'route' if routed else 'direct'})"
            upstream = dial(dest, self.dial_timeout, self.refused_wait if routed else 0.0, self._stopping)
            with self._lock:
                self._sockets.add(upstream)
            client.settimeout(None)  # a tunnel (port-forward, logs -f) may idle for as long as it likes
            upstream.settimeout(None)
            client.sendall(ESTABLISHED)
            established = True
            self._write_log(f"{what} 200")
            if rest:
                upstream.sendall(rest)
                counts[0] += len(rest)
            tunnel(client, upstream, counts)
        except ConnectError as r:
            self._write_log(f"{what} {r.status} ({time.monotonic() - started:.3f}s)")
            with contextlib.suppress(OSError):
                client.sendall(
                    f"HTTP/1.1 {status_line_safe(r.status)}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
                )
        except OSError as e:
            if not established:
                self._write_log(f"{what} not answered: {e}")
        finally:
            for s in (client, upstream):
                if s is not None:
                    s.close()
            with self._lock:
                self._sockets.discard(client)
                if upstream is not None:
                    self._sockets.discard(upstream)
                self._handlers.discard(threading.current_thread())
            if established:
                self._write_log(
                    f"#{cid} closed: sent={counts[0]} received={counts[1]} after {time.monotonic() - started:.3f}s"
                )

    def _virtual_network_of(self, host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return None
        return next((n for n in self.virtual_networks if ip in n), None)

    def _write_log(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} egress {message}\n"
        with self._lock:
            try:
                self._log_file.write(line)
                self._log_file.flush()
            except (OSError, ValueError):
                pass  # a closed log must not take the tunnels down


# ---- as a process --------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m lab.egress", description="HTTP CONNECT proxy on a Unix socket for kube-apiserver's egress"
    )
    ap.add_argument("--socket", required=True, type=Path, help="Unix socket to listen on")
    ap.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="TARGET=DEST",
        help="dial DEST (HOST:PORT) for CONNECTs to TARGET (HOST:PORT); repeatable",
    )
    ap.add_argument("--routes-file", type=Path, help="JSON {TARGET: DEST}, re-read when it changes; overrides --route")
    ap.add_argument(
        "--virtual-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="refuse (502) CONNECTs without a route to addresses in CIDR instead of dialling them; repeatable",
    )
    ap.add_argument("--log", type=Path, help="append the connection log here (default: stderr)")
    ap.add_argument("--dial-timeout", type=float, default=5.0, help="seconds allowed to connect to a destination")
    ap.add_argument(
        "--refused-wait",
        type=float,
        default=0.0,
        help="seconds to keep retrying a routed destination that refuses (its process restarting); default 0",
    )
    args = ap.parse_args(argv)
    try:
        routes = dict(parse_route(r) for r in args.route)
        for n in args.virtual_network:
            ipaddress.ip_network(n)
    except ValueError as e:
        ap.error(str(e))
    log = open(args.log, "a", buffering=1) if args.log else sys.stderr  # noqa: SIM115 (closed below)
    try:
        proxy = EgressProxy(
            args.socket,
            routes,
            routes_file=args.routes_file,
            log=log,
            virtual_networks=args.virtual_network,
            dial_timeout=args.dial_timeout,
            refused_wait=args.refused_wait,
        )
        proxy.start()
    except EgressError as e:
        print(f"lab.egress: {e}", file=sys.stderr)
        if log is not sys.stderr:
            log.close()
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: proxy.stop())
    try:
        proxy.serve_forever()
    finally:
        proxy.close()
        if log is not sys.stderr:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
