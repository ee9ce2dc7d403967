"""One CONNECT through the egress proxy: read the request head, dial the destination, pump both ways.

kube-apiserver writes ``CONNECT <host>:<port> HTTP/1.1`` and takes any status but 200 as a failed dial
(k8s.io/apiserver ``pkg/server/egressselector/egress_selector.go``, ``tunnelHTTPConnect``), so every way
a CONNECT can fail before the tunnel is a ``ConnectError`` carrying the status to answer with. Where a
target is dialled, the open sockets and the log are the proxy's (``EgressProxy``, ``lab/egress.py``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from .egress_routes import Address, format_address
from .wait import wait_until

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
_HEAD_LIMIT = 16 * 1024
_CHUNK = 64 * 1024


class ConnectError(Exception):
    """A CONNECT answered with an error status (``status`` is the whole status line's tail)."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def read_connect(client: socket.socket, handshake_timeout: float) -> tuple[str, bytes]:
    """The CONNECT target and any bytes the client sent after the request head."""
    deadline = time.monotonic() + handshake_timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectError("408 Request Timeout: no complete CONNECT request head")
        client.settimeout(remaining)
        try:
            chunk = client.recv(4096)
        except TimeoutError:
            raise ConnectError("408 Request Timeout: no complete CONNECT request head") from None
        if not chunk:
            raise OSError("closed before sending a complete request head")
        buf += chunk
        if len(buf) > _HEAD_LIMIT and b"\r\n\r\n" not in buf[:_HEAD_LIMIT]:
            raise ConnectError(f"431 Request Header Fields Too Large: more than {_HEAD_LIMIT} bytes")
    head, _, rest = buf.partition(b"\r\n\r\n")
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ConnectError(f"400 Bad Request: malformed request line {request_line[:200]!r}")
    method, target, _ = parts
    if method != "CONNECT":
        raise ConnectError(f"405 Method Not Allowed: only CONNECT is served, not {method[:20]}")
    return target, rest


def dial(dest: Address, dial_timeout: float, refused_wait: float, stopping: threading.Event) -> socket.socket:
    """A connection to ``dest``; one that refuses is retried for ``refused_wait`` seconds (not while stopping)."""
    where = format_address(dest)

    def refused() -> ConnectError:
        waited = f" (retried for {refused_wait:g}s)" if refused_wait else ""
        return ConnectError(f"503 Service Unavailable: dial {where}: connection refused{waited}")

    def attempt() -> socket.socket | None:
        try:
            return socket.create_connection(dest, timeout=dial_timeout)
        except TimeoutError:
            raise ConnectError(f"504 Gateway Timeout: dial {where}: no answer within {dial_timeout:g}s") from None
        except ConnectionRefusedError:
            if stopping.is_set():
                raise refused() from None
            return None
        except OSError as e:
            raise ConnectError(f"502 Bad Gateway: dial {where}: {e.strerror or e}") from None

    return wait_until(f"{where} to accept", attempt, refused_wait, 0.1, refused)


def tunnel(client: socket.socket, upstream: socket.socket, counts: list[int]) -> None:
    """Pump both ways until both have ended; an EOF is passed on as a half-close."""
    back = threading.Thread(
        target=_pump,
        args=(upstream, client, counts, 1),
        name=f"{threading.current_thread().name}-back",
        daemon=True,
    )
    back.start()
    _pump(client, upstream, counts, 0)
    back.join()


def _pump(src: socket.socket, dst: socket.socket, counts: list[int], index: int) -> None:
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
            counts[index] += len(data)
    except OSError:
        # A reset or close() on either side: end both directions so the other pump returns too.
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        return
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def status_line_safe(status: str) -> str:
    return "".join(ch if " " <= ch <= "~" else "?" for ch in status)[:300]
