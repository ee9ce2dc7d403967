"""Checks on the proxy view (pure): would a request from the client's sidecar reach the service in every
cluster, and does each east-west gateway pass it on?

Expected, for a sidecar in cluster L on network N (pilot/pkg/xds/endpoints/ep_filters.go
``EndpointsByNetworkFilter``): the service's pods on N (in L and in any other cluster on N) by their own
addresses; for every other network R, R's east-west gateway on 15443 standing for R's mTLS-capable
endpoints; nothing else. istiod drops endpoints of other networks that are not mTLS-capable (no sidecar:
TLS mode ``disabled``). Weights (``expected_gateway_weights``): istiod scales every weight by the least
common multiple of the gateway counts per network and per (network, cluster) (``NetworkGateways.lcm``)
and splits each remote endpoint's scaled weight evenly over the gateways it goes through
(``splitWeightAmongGateways``): with one gateway per network, a gateway's weight is the number of mTLS
endpoints behind it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from istio_mesh.constants import CROSS_NETWORK_PORT, ISTIO_NAMESPACE, NETWORK_LABEL

from .facts import ClusterFacts, Finding, IstiodFacts, network_of

_FIX_INJECTION = (
    "enable sidecar injection for the service's namespace (label istio-injection=enabled; the program's "
    "samples do) with istiod's injector reachable, then restart the pods"
)


def expected_gateway_weights(
    gateways: Sequence[dict[str, Any]], network: str, mtls_per_cluster: dict[str, int]
) -> dict[str, int]:
    """Per gateway address of ``network`` on 15443: the load-balancing weight istiod gives it, for the
    given number of mTLS endpoints in each of the network's clusters (pilot/pkg/model/network.go ``lcm``;
    pilot/pkg/xds/endpoints/ep_filters.go: gateways of the endpoint's (network, cluster) if any, else of
    its network; weight ``scale // len(gateways)`` per endpoint and gateway)."""
    by_net: dict[str, set[str]] = {}
    by_net_cluster: dict[tuple[str, str], set[str]] = {}
    for g in gateways:
        if g.get("address") and g.get("port") == CROSS_NETWORK_PORT:
            by_net.setdefault(g["network"], set()).add(g["address"])
            if g.get("cluster"):
                by_net_cluster.setdefault((g["network"], g["cluster"]), set()).add(g["address"])
    scale = 1
    for n in [len(v) for v in by_net.values()] + [len(v) for v in by_net_cluster.values()]:
        scale = scale * n // math.gcd(scale, n)
    out: dict[str, int] = {}
    for cluster, count in mtls_per_cluster.items():
        selected = by_net_cluster.get((network, cluster)) or by_net.get(network) or set()
        for address in selected:
            out[address] = out.get(address, 0) + count * (scale // len(selected))
    return out


def check_proxy_endpoints(i: IstiodFacts, clusters: Sequence[ClusterFacts], service_host: str) -> list[Finding]:
    """The EDS a sidecar in ``i.cluster`` receives for the service, against what the clusters hold."""
    p = i.proxy
    if p is None:
        return []
    if p.error:
        return [
            Finding(
                i.cluster,
                "proxy",
                f"cannot get {i.cluster}'s proxy view from istiod: {p.error}",
                "check that istiod runs and its port 15010 is reachable",
            )
        ]
    local = next((c for c in clusters if c.name == i.cluster), None)
    net = network_of(local) if local else None
    if not net:
        return []
    out: list[Finding] = [
        Finding(i.cluster, "proxy-endpoints", f"a sidecar in {i.cluster}: {note}", "see the endpoints / sync findings")
        for note in p.notes
    ]
    by_network: dict[str, list[ClusterFacts]] = {}
    for c in clusters:
        by_network.setdefault(network_of(c) or c.name, []).append(c)
    shard_rows = i.endpoints  # istiod's own registry: TLS mode per endpoint
    gateways: dict[str, set[str]] = {}
    for g in i.gateways:
        if g.get("address") and g.get("port") == CROSS_NETWORK_PORT:
            gateways.setdefault(g["network"], set()).add(g["address"])
    all_gateways = set().union(*gateways.values()) if gateways else set()
    for name, eps in sorted(p.endpoints.items()):
        port = _port_of(name)
        sent = {e["address"] for e in eps}
        expected: set[str] = set()
        # Same network: every ready pod, by its own address.
        for c in by_network.get(net, []):
            if port not in c.service_ports or not c.service_endpoints:
                continue
            expected |= set(c.service_endpoints)
            missing = sorted(set(c.service_endpoints) - sent)
            if missing:
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"a sidecar in {i.cluster} is not sent {c.name}'s {service_host} endpoint(s) "
                        f"{', '.join(missing)} (port {port}) although they are ready: requests to them from "
                        f"{i.cluster} fail",
                        "see the sync / endpoints findings; istiod pushes once it has synced the cluster",
                        about=(c.name,),
                    )
                )
        # Other networks: their gateway, standing for their mTLS-capable endpoints.
        for other_net, members in sorted(by_network.items()):
            if other_net == net:
                continue
            names = [c.name for c in members if port in c.service_ports and c.service_endpoints]
            if not names:
                continue
            pods = {a for c in members for a in c.service_endpoints}
            leaked = sorted(pods & sent)
            expected |= set(leaked)  # named below as leaked, not again as strays
            if leaked:
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"a sidecar in {i.cluster} (network {net}) is sent pod address(es) {', '.join(leaked)} of "
                        f"{', '.join(names)} on network {other_net} directly, not through its gateway: unreachable "
                        "across networks",
                        f"check the {NETWORK_LABEL} label on {ISTIO_NAMESPACE} in every cluster (pulumi up --refresh)",
                        about=tuple(names),
                    )
                )
            # istiod's registry (endpointShardz) for those clusters; its rows carry the target port, not the
            # service port, so they are not told apart by port (a multi-port service counts each pod once).
            rows = [r for r in shard_rows if r["cluster"] in names]
            mtls = [r for r in rows if r.get("tlsMode") == "istio"]
            gw_addrs = gateways.get(other_net, set())
            via = [e for e in eps if e["address"] in gw_addrs and e["port"] == CROSS_NETWORK_PORT]
            expected |= {e["address"] for e in via}
            where = f"{', '.join(names)} (network {other_net})"
            if not rows:
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"{where}'s {service_host} endpoints are missing from {i.cluster}'s EDS (port {port}): istiod "
                        f"of {i.cluster} has none of them although they are ready there (it has not synced "
                        f"{', '.join(names)})",
                        "see the sync / remote-secret findings for the cause",
                        about=tuple(names),
                    )
                )
            elif not mtls:
                modes = sorted({r.get("tlsMode") or "none" for r in rows})
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"{where}'s {service_host} endpoints are missing from {i.cluster}'s EDS (port {port}): they "
                        f"are not mTLS-capable (TLS mode {', '.join(modes)}: no sidecar), and istiod sends only mTLS "
                        "endpoints across networks",
                        _FIX_INJECTION,
                        about=tuple(names),
                    )
                )
            elif mtls and not gw_addrs:
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"{where}'s {service_host} endpoints are missing from {i.cluster}'s EDS (port {port}): istiod "
                        f"of {i.cluster} knows no gateway on {CROSS_NETWORK_PORT} for {other_net}",
                        "see the gateway findings (the east-west gateway's address, its network label)",
                        about=tuple(names),
                    )
                )
            elif mtls and not via:
                out.append(
                    Finding(
                        i.cluster,
                        "proxy-endpoints",
                        f"{where}'s {service_host} endpoints are missing from {i.cluster}'s EDS (port {port}): "
                        f"expected {other_net}'s gateway {', '.join(sorted(gw_addrs))}:{CROSS_NETWORK_PORT} "
                        f"standing for {len(mtls)} endpoint(s); sent {_listing(eps)}",
                        "pulumi up --refresh; check istiod's logs",
                        about=tuple(names),
                    )
                )
            elif mtls:
                per_cluster: dict[str, int] = {}
                for r in mtls:
                    per_cluster[r["cluster"]] = per_cluster.get(r["cluster"], 0) + 1
                want = expected_gateway_weights(i.gateways, other_net, per_cluster)
                for e in via:
                    if (e["weight"] or 1) != want.get(e["address"]):
                        out.append(
                            Finding(
                                i.cluster,
                                "proxy-endpoints",
                                f"{i.cluster}'s EDS sends {other_net}'s gateway {e['address']}:{CROSS_NETWORK_PORT} "
                                f"with weight {e['weight']}, but {where} has {len(mtls)} mTLS endpoint(s) behind "
                                f"{len(gw_addrs)} gateway address(es), which makes it {want.get(e['address'])}: "
                                "traffic is balanced wrongly across networks",
                                "check istiod's logs (endpoint shards of the remote cluster)",
                                about=tuple(names),
                            )
                        )
        strays = sorted(sent - expected - all_gateways)
        if strays:
            out.append(
                Finding(
                    i.cluster,
                    "proxy-endpoints",
                    f"{i.cluster}'s EDS for {name} holds address(es) {', '.join(strays)} that are neither a ready "
                    f"pod of {service_host} nor a gateway istiod knows: requests sent there fail",
                    "check the clusters' EndpointSlices and the gateways' addresses (pulumi up --refresh)",
                )
            )
    return out


def check_gateway_listener(i: IstiodFacts, service_host: str) -> list[Finding]:
    """The east-west gateway of ``i.cluster`` is given an AUTO_PASSTHROUGH listener on 15443 that routes the
    service's SNI (``outbound_.<port>_._.<host>``) to the service."""
    p = i.proxy
    if p is None or p.error:
        return []
    if p.gateway_error:
        return [
            Finding(
                i.cluster,
                "proxy-listener",
                f"cannot get the listeners istiod sends {i.cluster}'s east-west gateway: {p.gateway_error}",
                "check that istiod runs and its port 15010 is reachable",
            )
        ]
    lst = p.listener or {}
    if not lst.get("exists") or not lst.get("autoPassthrough"):
        problems = "; ".join(lst.get("problems") or []) or "unknown"
        return [
            Finding(
                i.cluster,
                "proxy-listener",
                f"the east-west gateway of {i.cluster} is given no AUTO_PASSTHROUGH listener on "
                f"{CROSS_NETWORK_PORT} ({problems}): other networks' requests are not passed on",
                "pulumi up --refresh restores the cross-network Gateway (tls.mode AUTO_PASSTHROUGH, hosts *.local)",
            )
        ]
    missing = sorted(name for name, ok in (lst.get("routes") or {}).items() if not ok)
    if missing:
        return [
            Finding(
                i.cluster,
                "proxy-listener",
                f"the east-west gateway of {i.cluster} passes nothing on for {', '.join(missing)}: requests from "
                f"other networks to {service_host} stop there",
                "check that the service exists in this cluster and the Gateway's hosts include it",
            )
        ]
    return []


def _port_of(cluster_name: str) -> int:
    """``outbound|5000||host`` -> 5000."""
    parts = cluster_name.split("|")
    return int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else 0


def _listing(eps: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['address']}:{e['port']}" for e in eps) or "nothing"
