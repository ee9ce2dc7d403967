"""The relay that lets a network's pods reach their istiod: a TCP listener inside the network namespace,
on istiod's Service address, whose connections are dialled on the host to the lab's istiod.

istiod runs on the host's loopback (``lab/istiod.py``) and the lab's networks have no link to the
host (``lab/network.py``), so a pod's ``istiod.istio-system.svc:15012`` (xDS and certificate signing,
what pilot-agent dials) would lead nowhere. The relay binds its listeners after entering the network
namespace (``setns``), returns to the host's namespace, and pumps every accepted connection to the
mapped host address: the only path between a network and the host, one port per mapping.

    python -m lab.relay --netns imlab-net1 --map 198.19.1.10:15012=127.0.1.1:20112 [--map ...]

Runs until SIGTERM; logs one line per connection.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading
import time

CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_in(netns_path: str, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets bound inside the network namespace at ``netns_path``; this thread returns to its
    own namespace afterwards (a socket stays in the namespace it was made in)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        _setns(target)
        out = []
        try:
            for host, port in addresses:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(128)
                out.append(s)
        finally:
            _setns(own)
        return out
    finally:
        os.close(own)
        os.close(target)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                s.shutdown(how)


def _serve(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        conn, peer = listener.accept()
        threading.Thread(target=_connect, args=(conn, peer, target), daemon=True).start()


def _connect(conn: socket.socket, peer: tuple[str, int], target: tuple[str, int]) -> None:
    try:
        up = socket.create_connection(target, timeout=5)
    except OSError as e:
        print(f"{time.strftime('%H:%M:%S')} {peer[0]}:{peer[1]} -> {target[0]}:{target[1]}: {e}", flush=True)
        conn.close()
        return
    up.settimeout(None)
    print(f"{time.strftime('%H:%M:%S')} {peer[0]}:{peer[1]} -> {target[0]}:{target[1]}", flush=True)
    t = threading.Thread(target=_pump, args=(conn, up), daemon=True)
    t.start()
    _pump(up, conn)
    t.join()
    conn.close()
    up.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.relay", description=__doc__.split("\n\n")[0])
    ap.add_argument("--netns", required=True, help="the network namespace (a name under /run/netns)")
    ap.add_argument(
        "--map", action="append", required=True, help="LISTEN=TARGET, e.g. 198.19.1.10:15012=127.0.1.1:20112"
    )
    args = ap.parse_args(argv)
    pairs = [(_addr(m.split("=", 1)[0]), _addr(m.split("=", 1)[1])) for m in args.map]
    listeners = listen_in(f"/run/netns/{args.netns}", [listen for listen, _ in pairs])
    for s, (listen, target) in zip(listeners, pairs, strict=True):
        print(f"relaying {args.netns} {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
        threading.Thread(target=_serve, args=(s, target), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
