"""Checks on each istiod's view (pure): what it reports from its debug endpoints and its xDS TLS port.

For every istiod: the clusters it has synced (``/debug/clusterz``: its own and every other one, and no
cluster outside the mesh); the CA it signs with (the certificate it serves on 15012 chains to the mesh
root and is issued by its cluster's intermediate in ``cacerts``); the gateway it knows for every network
(``/debug/networkz``, on 15443); the service's endpoints from every cluster, on that cluster's network
(``/debug/endpointShardz``). ``verify.checks.diagnose`` runs them after the checks of the clusters' own
objects, whose findings name the causes these point to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from istio_mesh.constants import CROSS_NETWORK_PORT, ISTIO_NAMESPACE, NETWORK_LABEL

from .certs import chains, is_self_signed_istiod_ca, issuer_name
from .facts import ClusterFacts, Finding, IstiodFacts, network_of, stale_network_pods


def check_sync(i: IstiodFacts, names: Sequence[str]) -> list[Finding]:
    """istiod has synced its own cluster and every other one, and knows no cluster outside the mesh."""
    out: list[Finding] = []
    seen = {e["id"]: e for e in i.clusters}
    for other in names:
        entry = seen.get(other)
        if other == i.cluster:
            if entry is None or entry["syncStatus"] != "synced":
                out.append(
                    Finding(
                        i.cluster,
                        "sync",
                        f"istiod of {i.cluster} has not synced its own cluster "
                        f"(status {entry and entry['syncStatus']})",
                        "check istiod's RBAC and logs",
                    )
                )
            continue
        if entry is None or entry["syncStatus"] != "synced":
            state = f"status '{entry['syncStatus']}'" if entry else "not listed"
            out.append(
                Finding(
                    i.cluster,
                    "sync",
                    f"istiod of {i.cluster} has not synced {other} ({state}); see the remote-secret / remote-access "
                    "findings for the cause",
                    "fix the cause; istiod retries on its own",
                    about=(other,),
                )
            )
    for cid, e in seen.items():
        if cid not in names:
            out.append(
                Finding(
                    i.cluster,
                    "sync",
                    f"istiod of {i.cluster} knows a cluster '{cid}' that is not in the mesh "
                    f"(from {e['secretName'] or '?'})",
                    "remove that secret or its key; pulumi up --refresh restores the program's secrets",
                    about=(cid,),
                )
            )
    return out


def check_istiod_ca(i: IstiodFacts, cluster: ClusterFacts | None) -> list[Finding]:
    """istiod serves a certificate that chains to the mesh root, issued by its cluster's intermediate."""
    if i.serving_cert_pem is None:
        return [
            Finding(
                i.cluster,
                "ca",
                f"istiod of {i.cluster} serves no certificate on its xDS TLS port: {i.tls_error}",
                "check istiod's logs",
            )
        ]
    if i.tls_error:
        if is_self_signed_istiod_ca(i.serving_cert_pem):
            cause = (
                f"istiod of {i.cluster} signs with its own self-signed CA "
                f"(issuer {issuer_name(i.serving_cert_pem)}): "
                f"Secret cacerts was missing when it started, so its workloads do not trust other clusters"
            )
        else:
            cause = (
                f"istiod of {i.cluster}'s certificate (issuer {issuer_name(i.serving_cert_pem)}) "
                f"does not chain to the mesh root: {i.tls_error}"
            )
        return [
            Finding(
                i.cluster,
                "ca",
                cause,
                "make sure cacerts holds the cluster's intermediate (pulumi up --refresh also rolls istiod); "
                "without Pulumi: kubectl -n istio-system rollout restart deploy/istiod",
            )
        ]
    if cluster and cluster.intermediate_pem and not chains(i.serving_cert_pem, cluster.intermediate_pem):
        return [
            Finding(
                i.cluster,
                "ca",
                f"istiod of {i.cluster} signs with a CA other than the intermediate in its cacerts "
                f"(issuer {issuer_name(i.serving_cert_pem)})",
                "restart istiod so it loads the current cacerts",
            )
        ]
    return []


def check_istiod_gateways(i: IstiodFacts, clusters: Sequence[ClusterFacts]) -> list[Finding]:
    """istiod knows a gateway on 15443 for every network. A network may have several gateways (clusters
    sharing it, or a Service with both a load-balancer address and externalIPs): one usable is enough."""
    out: list[Finding] = []
    gateway_addr = {network_of(c): (c.gateway_addresses[0] if c.gateway_addresses else None) for c in clusters}
    known: dict[str, list[dict[str, Any]]] = {}
    for g in i.gateways:
        if g.get("address"):
            known.setdefault(g["network"], []).append(g)
    for c in clusters:
        net = network_of(c)
        if not net:
            continue
        gws = known.get(net, [])
        if not gws:
            out.append(
                Finding(
                    i.cluster,
                    "gateway",
                    f"istiod of {i.cluster} knows no gateway for network {net}"
                    + ("" if gateway_addr.get(net) else f" ({c.name}'s east-west gateway has no address)"),
                    "see the gateway / sync findings for the cause",
                    about=(c.name,),
                )
            )
        elif not any(g.get("port") == CROSS_NETWORK_PORT for g in gws):
            out.append(
                Finding(
                    i.cluster,
                    "gateway",
                    f"istiod of {i.cluster} has the gateway(s) of {net} on port(s) "
                    f"{sorted({g.get('port') for g in gws}, key=str)}, not {CROSS_NETWORK_PORT}",
                    "pulumi up --refresh",
                    about=(c.name,),
                )
            )
    return out


def check_istiod_endpoints(i: IstiodFacts, clusters: Sequence[ClusterFacts], service_host: str) -> list[Finding]:
    """istiod has the service's endpoints from every cluster that has ready ones, on that cluster's network."""
    out: list[Finding] = []
    have: dict[str, list[dict[str, Any]]] = {}
    for e in i.endpoints:
        have.setdefault(e["cluster"], []).append(e)
    for c in clusters:
        if not c.service_endpoints:
            continue
        got = have.get(c.name, [])
        if not got:
            out.append(
                Finding(
                    i.cluster,
                    "endpoints",
                    f"istiod of {i.cluster} has no endpoint of {service_host} from {c.name} "
                    f"({len(c.service_endpoints)} ready there)",
                    "see the sync findings for the cause",
                    about=(c.name,),
                )
            )
            continue
        net = network_of(c)
        wrong = sorted({e["network"] or "<none>" for e in got if e["network"] != net})
        if net and wrong:
            stale = stale_network_pods(c)
            fix = (
                f"recreate the pods that carry {NETWORK_LABEL}={', '.join(w for w in wrong if w in stale)} "
                f"in {c.name} (see the pod-network finding)"
                if set(wrong) <= set(stale)
                else f"label namespace {ISTIO_NAMESPACE} in {c.name} with {NETWORK_LABEL}={net} (pulumi up --refresh)"
            )
            out.append(
                Finding(
                    i.cluster,
                    "endpoints",
                    f"istiod of {i.cluster} puts {service_host}'s endpoints from {c.name} on network "
                    f"{', '.join(wrong)}, not {net}",
                    fix,
                    about=(c.name,),
                )
            )
    return out
