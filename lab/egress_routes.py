"""The egress proxy's routing table and the file it travels in: ``TARGET -> DESTINATION`` addresses.

A route sends a CONNECT to ``TARGET`` (``HOST:PORT``, e.g. istiod's Service ``ClusterIP:443``) to
``DESTINATION`` (the local istiod's webhook port). The follower (``lab/follower.py``) writes a cluster's
routes as a JSON object ``{"TARGET": "DESTINATION"}`` (``write_routes``); the proxy (``lab/egress.py``)
re-reads the file whenever it changes (``read_routes``) and takes ``--route TARGET=DESTINATION`` on its
command line (``parse_route``).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path

#: ``(host, port)``; an IP host in canonical form (``canonical_host``).
Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (IPv6 in brackets) -> ``(host, port)``, with IP addresses in canonical form."""
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT (port 1-65535, IPv6 hosts in brackets)")
    return canonical_host(host), int(port)


def canonical_host(host: str) -> str:
    """An IP address in its canonical form (``::1``, not ``0:0::1``); a name in lower case."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def format_address(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_route(text: str) -> tuple[Address, Address]:
    """``TARGET=DESTINATION``, both ``HOST:PORT``: CONNECTs to TARGET are dialled at DESTINATION."""
    target, sep, dest = text.partition("=")
    if not sep:
        raise ValueError(f"route {text!r} is not TARGET=DESTINATION (e.g. 198.19.1.10:443=127.0.1.1:20117)")
    return parse_address(target), parse_address(dest)


def write_routes(path: Path, routes: Mapping[Address, Address]) -> None:
    """Replace the routes file a proxy process follows (atomically: it never reads half a file)."""
    doc = {format_address(t): format_address(d) for t, d in sorted(routes.items())}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def read_routes(path: Path) -> dict[Address, Address]:
    """The routes file as a table; a missing file is an empty table."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object of TARGET: DESTINATION, got {type(doc).__name__}")
    return {parse_address(str(t)): parse_address(str(d)) for t, d in doc.items()}
