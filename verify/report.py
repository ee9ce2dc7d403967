"""The report: JSON (``--json``, the contract scripts and tests read) and the text rendering of it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .certs import issuer_name, pem_fingerprint
from .edit_checks import edits_in
from .facts import ClusterFacts, Finding, IstiodFacts, ProxyFacts, TrafficFacts, network_of
from .roots import roots_lines
from .traffic import instance_clusters, tally


def report_json(
    mesh_id: str | None,
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    findings: Sequence[Finding],
    service_host: str,
    root_pem: str | None,
    traffic: Sequence[TrafficFacts] | None = None,
    warnings: Sequence[Finding] = (),
) -> dict[str, Any]:
    """The machine-readable report (``--json``); ``traffic`` is the traffic test's results (``--traffic``),
    ``None`` when it was not run; ``warnings`` are shaped as findings and leave ``ok`` as it is."""
    gw_of = {}
    for i in istiods:
        per_network: dict[str, list[str]] = {}
        for g in i.gateways:
            per_network.setdefault(g["network"], []).append(f"{g['address']}:{g['port']}")
        gw_of[i.cluster] = {net: ", ".join(sorted(addrs)) for net, addrs in per_network.items()}
    net_of = {c.name: network_of(c) for c in clusters}
    doc: dict[str, Any] = {
        "ok": not findings,
        "meshId": mesh_id,
        "service": service_host,
        "rootFingerprintSha256": pem_fingerprint(root_pem) if root_pem else None,
        "istiods": [],
        # --traffic: per source cluster, the requests from its sleep pod and who answered them.
        "traffic": None if traffic is None else [_traffic_json(t, clusters) for t in traffic],
        "findings": [asdict(f) for f in findings],
        # Not failures (``ok`` ignores them): the program's objects changed by others, lists that failed.
        "warnings": [asdict(w) for w in warnings],
        # The program's objects changed by others, per object (None: not read, --no-edits).
        "edits": _edits_json(clusters),
    }
    for i in istiods:
        local_net = net_of.get(i.cluster)
        eps = []
        for e in i.endpoints:
            # Istio treats an endpoint without a network as on the proxy's own network: pod IP, no gateway.
            remote = bool(local_net) and bool(e["network"]) and e["network"] != local_net
            eps.append(
                {
                    "cluster": e["cluster"],
                    "network": e["network"],
                    "address": e["address"],
                    "port": e["port"],
                    "via": gw_of[i.cluster].get(e["network"]) if remote else "direct",
                }
            )
        doc["istiods"].append(
            {
                "cluster": i.cluster,
                "network": local_net,
                "address": i.address,
                "error": i.error,
                "syncedClusters": i.clusters,
                "ca": {
                    "issuer": issuer_name(i.serving_cert_pem) if i.serving_cert_pem else None,
                    "chainsToMeshRoot": i.serving_cert_pem is not None and i.tls_error is None,
                    "error": i.tls_error,
                },
                "gateways": i.gateways,
                "endpoints": eps,
                # --proxy-view: what istiod sends a sidecar of the client and the east-west gateway (xDS).
                "proxyView": _proxy_json(i.proxy) if i.proxy else None,
            }
        )
    return doc


def render_text(doc: Mapping[str, Any]) -> str:
    """The report for people: per istiod what it sees, then the findings (or OK)."""
    lines = [f"mesh {doc['meshId'] or '?'}: {len(doc['istiods'])} istiod(s); service {doc['service']}"]
    if doc["rootFingerprintSha256"]:
        lines.append(f"mesh root sha256 {doc['rootFingerprintSha256']}")
    for i in doc["istiods"]:
        lines.append("")
        lines.append(f"istiod of {i['cluster']} (network {i['network'] or '?'}) at {i['address']}")
        if i["error"]:
            lines.append(f"  unreachable: {i['error']}")
            continue
        synced = ", ".join(
            f"{e['id']} {e['syncStatus']}" + (f" via {e['secretName']}" if e["secretName"] else " (local)")
            for e in i["syncedClusters"]
        )
        lines.append(f"  clusters : {synced or 'none'}")
        ca = i["ca"]
        mark = (
            "chains to the mesh root" if ca["chainsToMeshRoot"] else f"DOES NOT chain to the mesh root ({ca['error']})"
        )
        lines.append(f"  CA       : issuer {ca['issuer'] or '-'}; {mark}")
        gws = "; ".join(f"{g['network']} -> {g['address']}:{g['port']} ({g['cluster']})" for g in i["gateways"])
        lines.append(f"  gateways : {gws or 'none'}")
        if not i["endpoints"]:
            lines.append("  endpoints: none")
        for e in i["endpoints"]:
            via = "direct" if e["via"] == "direct" else f"through gateway {e['via'] or 'NONE'}"
            lines.append(
                f"  endpoint : {e['cluster']}/{e['network'] or '<no network>'} {e['address']}:{e['port']} ({via})"
            )
        lines += _proxy_lines(i.get("proxyView"))
    for t in doc.get("traffic") or []:
        lines.append("")
        lines += _traffic_lines(t)
    if doc.get("roots") is not None:
        lines += roots_lines(doc["roots"], doc["rootFingerprintSha256"])
    lines.append("")
    if doc.get("warnings"):
        lines.append(f"WARNING: {len(doc['warnings'])} warning(s), which do not fail verify")
        for w in doc["warnings"]:
            lines.append(f"  - [{w['cluster']}] {w['check']}: {w['cause']}")
            lines.append(f"      fix: {w['fix']}")
    if doc["findings"]:
        lines.append(f"FAILED: {len(doc['findings'])} problem(s)")
        for f in doc["findings"]:
            lines.append(f"  - [{f['cluster']}] {f['check']}: {f['cause']}")
            lines.append(f"      fix: {f['fix']}")
    else:
        lines.append(
            "OK: every istiod syncs every cluster, signs under the mesh root, knows every network's gateway "
            "and sees the service in every cluster"
            + ("; every request from each cluster's sleep was answered" if doc.get("traffic") else "")
        )
    return "\n".join(lines)


def _edits_json(clusters: Sequence[ClusterFacts]) -> list[dict[str, Any]] | None:
    """Per object of the program changed by others: where, what, and per manager when and which fields."""
    if all(c.mesh_objects is None for c in clusters):
        return None
    return [
        {
            "cluster": e.cluster,
            "kind": e.obj.kind,
            "namespace": e.obj.namespace,
            "name": e.obj.name,
            "createdBy": e.obj.created_by,
            "changes": [
                {"manager": c.manager, "operation": c.operation, "time": c.time, "fields": list(c.fields)}
                for c in e.changes
            ],
        }
        for cl in clusters
        for e in edits_in(cl)
    ]


def _proxy_json(p: ProxyFacts) -> dict[str, Any]:
    return {
        "clientNode": p.client_node,
        "endpoints": p.endpoints,
        "notes": p.notes,
        "error": p.error,
        "gatewayNode": p.gateway_node,
        "listener": p.listener,
        "gatewayError": p.gateway_error,
    }


def _proxy_lines(p: Mapping[str, Any] | None) -> list[str]:
    """The proxy view of one istiod: the EDS a sidecar gets, the gateway's 15443 listener."""
    if not p:
        return []
    if p["error"]:
        return [f"  proxy    : unavailable: {p['error']}"]
    lines = [f"  proxy    : as {p['clientNode']}"]
    for name, eps in sorted(p["endpoints"].items()):
        sent = ", ".join(
            f"{e['address']}:{e['port']}"
            + (f" w{e['weight']}" if e["weight"] is not None else "")
            + f" ({e['tlsMode'] or 'no tlsMode'}{', ' + e['clusterId'] if e['clusterId'] else ''})"
            for e in eps
        )
        lines.append(f"    EDS {name}: {sent or 'no endpoints'}")
    for note in p["notes"]:
        lines.append(f"    note: {note}")
    if p["gatewayError"]:
        lines.append(f"  gateway listener: unavailable: {p['gatewayError']}")
    elif p["listener"]:
        lst = p["listener"]
        shape = (
            "AUTO_PASSTHROUGH"
            if lst["autoPassthrough"]
            else ("present, not AUTO_PASSTHROUGH" if lst["exists"] else "none")
        )
        routed = ", ".join(f"{name} {'routed' if ok else 'NOT routed'}" for name, ok in sorted(lst["routes"].items()))
        lines.append(f"  gateway listener {lst['port']}: {shape}; {routed or 'no service port'}")
    return lines


def _traffic_json(t: TrafficFacts, clusters: Sequence[ClusterFacts]) -> dict[str, Any]:
    """One source cluster's traffic test: requests sent, answered, failed; who answered (version, cluster)."""
    counted = tally(t, instance_clusters(clusters))
    running = [c.name for c in clusters if c.service_pods]
    return {
        "cluster": t.cluster,
        "pod": f"{t.namespace}/{t.pod}" if t.pod else None,
        "url": t.url,
        "sent": len(t.replies),
        "answered": counted.answered,
        "failed": counted.failed,
        "answers": [
            {"version": v, "cluster": c, "count": n, "instances": sorted(counted.instances[(v, c)])}
            for (v, c), n in sorted(counted.answers.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ],
        "failures": [{"reason": r, "count": n} for r, n in sorted(counted.failures.items(), key=lambda kv: -kv[1])],
        # Clusters running the service that never answered (on any network; the checks judge which matter).
        "notReached": [] if t.error else [c for c in running if c not in counted.reached],
        "error": t.error,
    }


def _traffic_lines(t: Mapping[str, Any]) -> list[str]:
    if t["error"]:
        return [f"traffic from {t['cluster']}: not run: {t['error']}"]
    lines = [
        f"traffic from {t['cluster']} (pod {t['pod']}): {t['sent']} request(s) to {t['url']}, "
        f"{t['answered']} answered, {t['failed']} failed"
    ]
    for a in t["answers"]:
        lines.append(f"  {a['version']} from {a['cluster'] or 'no known cluster'}: {a['count']}")
    for f in t["failures"]:
        lines.append(f"  failed {f['count']}x: {f['reason']}")
    if t["notReached"]:
        lines.append(f"  never answered: {', '.join(t['notReached'])}")
    return lines
