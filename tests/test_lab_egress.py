"""The lab's egress proxy: the CONNECT tunnels kube-apiserver opens for its "cluster" network context."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lab import egress, egress_routes
from lab.layout import REPO


class EchoServer:
    """A TCP server on 127.0.0.1 that reads until EOF and answers ``<tag>:<what it read>``, then closes.

    Answering only after the client's half-close proves that the proxy passes an EOF on without
    closing the other direction.
    """

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = ("127.0.0.1", self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(self.tag.encode() + b":" + data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def echo_a() -> Iterator[EchoServer]:
    s = EchoServer("A")
    yield s
    s.close()


@pytest.fixture
def echo_b() -> Iterator[EchoServer]:
    s = EchoServer("B")
    yield s
    s.close()


@pytest.fixture
def log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def proxy(tmp_path: Path, log: io.StringIO) -> Iterator[egress.EgressProxy]:
    with egress.EgressProxy(tmp_path / "egress.sock", log=log, dial_timeout=2.0) as p:
        yield p


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return int(s.getsockname()[1])


def open_tunnel(sock_path: Path, target: str) -> tuple[socket.socket, str, bytes]:
    """CONNECT the way kube-apiserver does (egress_selector.go tunnelHTTPConnect): the status line,
    and whatever else the proxy sent before the client spoke (must be nothing after a 200)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(sock_path))
    s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, extra = buf.partition(b"\r\n\r\n")
    return s, head.split(b"\r\n")[0].decode(), extra


def exchange(s: socket.socket, payload: bytes) -> bytes:
    """Send, half-close, read the answer to EOF."""
    with s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
        return out


def test_a_routed_target_reaches_the_mapped_address(proxy: egress.EgressProxy, echo_a: EchoServer) -> None:
    proxy.set_route(("198.19.1.10", 443), echo_a.address)
    s, status, extra = open_tunnel(proxy.socket_path, "198.19.1.10:443")
    # The API server refuses the tunnel if any byte follows the 200 response before TLS starts.
    assert status == "HTTP/1.1 200 Connection established" and extra == b""
    s.settimeout(0.3)
    with pytest.raises(TimeoutError):
        s.recv(1)
    s.settimeout(5)
    assert exchange(s, b"hello" * 50_000) == b"A:" + b"hello" * 50_000


def test_an_unrouted_target_passes_through(
    proxy: egress.EgressProxy, echo_a: EchoServer, echo_b: EchoServer, log: io.StringIO
) -> None:
    proxy.set_route(("198.19.1.10", 443), echo_a.address)
    s, status, _ = open_tunnel(proxy.socket_path, egress_routes.format_address(echo_b.address))
    assert status == "HTTP/1.1 200 Connection established"
    assert exchange(s, b"kubelet") == b"B:kubelet"
    wait_for(lambda: "closed:" in log.getvalue(), "the tunnel's closing log line")
    lines = log.getvalue().splitlines()
    port = echo_b.address[1]
    assert lines[-2].endswith(f" egress #1 CONNECT 127.0.0.1:{port} -> 127.0.0.1:{port} (direct) 200")
    assert " egress #1 closed: sent=7 received=9 after " in lines[-1]


def test_virtual_networks_are_never_dialled_without_a_route(tmp_path: Path, echo_a: EchoServer) -> None:
    # Nothing routes the lab's Service range; dialled as asked, 198.19.x.y leaves through the host's
    # default route (on a sandboxed host, a transparent proxy answered it with its own certificate).
    with egress.EgressProxy(
        tmp_path / "e.sock",
        {("198.19.1.10", 443): echo_a.address},
        virtual_networks=["198.19.0.0/16"],
        log=io.StringIO(),
    ) as p:
        s, status, _ = open_tunnel(p.socket_path, "198.19.1.11:443")
        s.close()
        assert status == "HTTP/1.1 502 Bad Gateway: no route for 198.19.1.11:443 (virtual network 198.19.0.0/16)"
        assert exchange(open_tunnel(p.socket_path, "198.19.1.10:443")[0], b"r") == b"A:r"


def test_a_failed_dial_answers_a_5xx_status_line_and_closes(proxy: egress.EgressProxy) -> None:
    dead = free_port()
    proxy.set_route(("198.19.1.10", 443), ("127.0.0.1", dead))
    for target in ("198.19.1.10:443", f"127.0.0.1:{dead}"):
        s, status, _ = open_tunnel(proxy.socket_path, target)
        with s:
            assert status == f"HTTP/1.1 503 Service Unavailable: dial 127.0.0.1:{dead}: connection refused"
            assert s.recv(1) == b""  # closed after the answer


def test_a_routed_destination_that_refuses_is_retried_for_refused_wait(tmp_path: Path) -> None:
    """istiod restarting behind the route: the CONNECT waits for it (up to refused_wait), where a rolling
    update in a cluster would keep the old pod serving; an unrouted target is still refused at once."""
    port = free_port()
    late: list[EchoServer] = []

    def listen_later() -> None:
        time.sleep(0.8)
        server = EchoServer("L")
        server.sock.close()  # rebind the chosen port instead
        server.sock = socket.create_server(("127.0.0.1", port))
        server.address = ("127.0.0.1", port)
        server._thread = threading.Thread(target=server._serve, daemon=True)
        server._thread.start()
        late.append(server)

    with egress.EgressProxy(
        tmp_path / "r.sock", {("198.19.1.10", 443): ("127.0.0.1", port)}, log=io.StringIO(), refused_wait=5.0
    ) as p:
        t = threading.Thread(target=listen_later)
        t.start()
        t0 = time.monotonic()
        s, status, _ = open_tunnel(p.socket_path, "198.19.1.10:443")
        assert status == "HTTP/1.1 200 Connection established" and 0.5 < time.monotonic() - t0 < 5
        assert exchange(s, b"x") == b"L:x"
        t.join()
        dead = free_port()
        t0 = time.monotonic()
        s, status, _ = open_tunnel(p.socket_path, f"127.0.0.1:{dead}")
        s.close()
        assert status.startswith("HTTP/1.1 503") and time.monotonic() - t0 < 0.5  # not routed: no wait
    for server in late:
        server.close()


def test_a_routed_destination_refusing_past_refused_wait_is_503(tmp_path: Path) -> None:
    dead = free_port()
    with egress.EgressProxy(
        tmp_path / "r.sock", {("198.19.1.10", 443): ("127.0.0.1", dead)}, log=io.StringIO(), refused_wait=0.5
    ) as p:
        t0 = time.monotonic()
        s, status, _ = open_tunnel(p.socket_path, "198.19.1.10:443")
        s.close()
        assert 0.4 < time.monotonic() - t0 < 3
        assert status == (
            f"HTTP/1.1 503 Service Unavailable: dial 127.0.0.1:{dead}: connection refused (retried for 0.5s)"
        )


def test_requests_other_than_connect_are_refused(proxy: egress.EgressProxy) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    with s:
        s.connect(str(proxy.socket_path))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 405 ")
    s, status, _ = open_tunnel(proxy.socket_path, "no-port")
    s.close()
    assert status.startswith("HTTP/1.1 400 Bad Request: 'no-port' is not HOST:PORT")


def test_route_updates_apply_to_new_connections_only(
    proxy: egress.EgressProxy, echo_a: EchoServer, echo_b: EchoServer
) -> None:
    target = ("198.19.1.10", 443)
    proxy.set_route(target, echo_a.address)
    before, status, _ = open_tunnel(proxy.socket_path, "198.19.1.10:443")
    assert status.startswith("HTTP/1.1 200 ")
    proxy.set_route(target, echo_b.address)
    after, _, _ = open_tunnel(proxy.socket_path, "198.19.1.10:443")
    assert exchange(after, b"x") == b"B:x"
    assert exchange(before, b"y") == b"A:y"  # an open tunnel keeps its destination
    proxy.remove_route(target)
    assert proxy.resolve(target) == (target, False)


def test_a_routes_file_is_followed_when_it_changes(tmp_path: Path, echo_a: EchoServer, echo_b: EchoServer) -> None:
    routes = tmp_path / "routes.json"
    target = ("198.19.1.10", 443)
    with egress.EgressProxy(tmp_path / "e.sock", {target: echo_a.address}, routes_file=routes, log=io.StringIO()) as p:
        assert exchange(open_tunnel(p.socket_path, "198.19.1.10:443")[0], b"1") == b"A:1"
        egress_routes.write_routes(routes, {target: echo_b.address})
        assert exchange(open_tunnel(p.socket_path, "198.19.1.10:443")[0], b"2") == b"B:2"
        routes.write_text("not json")  # a broken file keeps the table that was in effect
        assert exchange(open_tunnel(p.socket_path, "198.19.1.10:443")[0], b"3") == b"B:3"
        routes.unlink()
        assert exchange(open_tunnel(p.socket_path, "198.19.1.10:443")[0], b"4") == b"A:4"


def test_close_ends_tunnels_joins_threads_and_removes_the_socket(tmp_path: Path, echo_a: EchoServer) -> None:
    p = egress.EgressProxy(tmp_path / "egress.sock", log=io.StringIO())
    p.serve_in_background()
    tunnel, status, _ = open_tunnel(p.socket_path, egress_routes.format_address(echo_a.address))
    assert status.startswith("HTTP/1.1 200 ")
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # still in the handshake
    idle.connect(str(p.socket_path))
    wait_for(lambda: p.active_connections() == 2, "two connections")
    p.close(timeout=5)
    assert p.active_connections() == 0
    assert not [t.name for t in threading.enumerate() if t.name.startswith("egress-")]
    assert not p.socket_path.exists()
    tunnel.settimeout(5)
    assert tunnel.recv(1) == b""
    tunnel.close()
    idle.close()
    p.close()  # idempotent


def test_a_stale_socket_is_replaced_but_a_live_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "egress.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()  # the file stays, nobody listens
    with (
        egress.EgressProxy(path, log=io.StringIO()),
        pytest.raises(egress.EgressError, match="another process is serving"),
    ):
        egress.EgressProxy(path, log=io.StringIO()).start()
    (tmp_path / "plain").write_text("")
    with pytest.raises(egress.EgressError, match="is not a socket"):
        egress.EgressProxy(tmp_path / "plain", log=io.StringIO()).start()


def test_the_egress_selector_configuration_sends_cluster_traffic_to_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "egress-selector.yaml"
    egress.write_egress_selector_config(path, tmp_path / "egress.sock")
    doc = yaml.safe_load(path.read_text())
    # k8s.io/apiserver pkg/apis/apiserver/v1beta1 types.go and egressselector/config.go's validation.
    assert doc["apiVersion"] == "apiserver.k8s.io/v1beta1"
    assert doc["kind"] == "EgressSelectorConfiguration"
    assert doc["egressSelections"] == [
        {
            "name": "cluster",
            "connection": {
                "proxyProtocol": "HTTPConnect",
                "transport": {"uds": {"udsName": str(tmp_path / "egress.sock")}},
            },
        }
    ]


def test_addresses_and_routes_parse_strictly() -> None:
    assert egress_routes.parse_route("198.19.1.10:443=127.0.1.1:20117") == (("198.19.1.10", 443), ("127.0.1.1", 20117))
    assert egress_routes.parse_address("[::1]:443") == ("::1", 443)
    assert egress_routes.format_address(("::1", 443)) == "[::1]:443"
    for bad in ("10.0.0.1", "10.0.0.1:0", "10.0.0.1:http", ":443"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            egress_routes.parse_address(bad)
    with pytest.raises(ValueError, match="TARGET=DESTINATION"):
        egress_routes.parse_route("10.0.0.1:443")


def test_as_a_process_it_serves_until_sigterm(tmp_path: Path, echo_a: EchoServer) -> None:
    sock, log = tmp_path / "egress.sock", tmp_path / "egress.log"
    route = f"198.19.1.10:443={egress_routes.format_address(echo_a.address)}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.egress", "--socket", str(sock), "--log", str(log), "--route", route],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(sock.exists, f"{sock} (stderr: {proc.stderr})", 10)
        assert exchange(open_tunnel(sock, "198.19.1.10:443")[0], b"p") == b"A:p"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not sock.exists()
    text = log.read_text()
    assert (
        "listening on" in text
        and "-> 127.0.0.1:" in text
        and "(route) 200" in text
        and "closed: sent=1 received=3" in text
    )


def wait_for(check: object, what: str, timeout: float = 5.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
