"""The roots view (``--roots``): per cluster, which roots ``cacerts`` trusts and signs under, and per proxy
(sidecars and gateways) which roots its Envoy trusts and which root the certificate it presents chains to,
read as the rotation gate reads them (``istio_mesh.trust_gate``: ``pilot-agent request GET config_dump``
in each ``istio-proxy`` container).

A mixed state that breaks mTLS is a finding: a proxy that does not trust the root another proxy's
certificate chains to rejects that proxy (as a client and as a server), wherever the two are. A proxy that
cannot be read is a warning (a pod still starting has no secrets yet).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from istio_mesh.fingerprint import pem_fingerprint
from istio_mesh.trust_gate import ClusterReader, ClusterTrust

from .facts import Finding, Target


def collect_roots(t: Target) -> ClusterTrust:
    """One cluster's ``cacerts`` and proxies (errors are recorded, never raised)."""
    return ClusterReader(t.name, t.kubeconfig, t.context).read(proxies=True)


def _short(fp: str | None, mesh_root: str | None) -> str:
    if fp is None:
        return "no root found"
    return f"{fp[:11]}..." + (" (the stack's root)" if fp == mesh_root else "")


def check_roots(trust: Sequence[ClusterTrust]) -> tuple[list[Finding], list[Finding]]:
    """(findings, warnings): every proxy that would reject another's certificate; what could not be read."""
    findings: list[Finding] = []
    warnings: list[Finding] = []
    proxies = [p for c in trust for p in c.proxies if not p.error]
    for c in trust:
        if c.error:
            warnings.append(Finding(c.cluster, "roots", c.error, "check the cluster's API server and credentials"))
        for p in c.proxies:
            if p.error:
                warnings.append(
                    Finding(
                        c.cluster, "roots", f"cannot read what proxy {p.name} trusts: {p.error}", "rerun once it runs"
                    )
                )
    presented: dict[str | None, list[str]] = {}
    for p in proxies:
        presented.setdefault(p.chains_to, []).append(p.name)
    for root, holders in presented.items():
        if root is None:
            for name in holders:
                cluster = name.rsplit(" in ", 1)[-1]
                findings.append(
                    Finding(
                        cluster,
                        "roots",
                        f"the certificate of proxy {name} chains to no root it carries",
                        "restart the proxy so it requests a certificate from istiod again",
                    )
                )
            continue
        for p in proxies:
            if root not in p.trusted:
                shown = ", ".join(holders[:3]) + (f" and {len(holders) - 3} more" if len(holders) > 3 else "")
                findings.append(
                    Finding(
                        p.cluster,
                        "roots",
                        f"proxy {p.name} does not trust root {root[:11]}..., to which the certificates of {shown} "
                        "chain: mTLS between them fails (a mixed state of a root rotation)",
                        "finish the rotation's current phase (the `up` that is refused says what is missing), or "
                        f"restart {p.name} so it gets the roots istiod now holds",
                    )
                )
    return findings, warnings


def roots_json(trust: Sequence[ClusterTrust], root_pem: str | None) -> list[dict[str, Any]]:
    mesh_root = pem_fingerprint(root_pem) if root_pem else None
    return [
        {
            "cluster": c.cluster,
            "error": c.error,
            "cacerts": {"trusts": list(c.cacerts_trust or []), "signsUnder": c.cacerts_signer},
            "proxies": [
                {k: v for k, v in asdict(p).items() if k != "cluster"}
                | {"trusted": list(p.trusted), "meshRootTrusted": mesh_root in p.trusted}
                for p in c.proxies
            ],
        }
        for c in trust
    ]


def roots_lines(roots: Sequence[Mapping[str, Any]], mesh_root: str | None) -> list[str]:
    lines = []
    for c in roots:
        lines.append("")
        if c["error"]:
            lines.append(f"roots of {c['cluster']}: {c['error']}")
            continue
        ca = c["cacerts"]
        trusts = ", ".join(_short(f, mesh_root) for f in ca["trusts"]) or "no cacerts"
        lines.append(
            f"roots of {c['cluster']}: cacerts trusts {trusts}; signs under {_short(ca['signsUnder'], mesh_root)}"
        )
        for p in c["proxies"]:
            if p["error"]:
                lines.append(f"  {p['namespace']}/{p['pod']}: unreadable ({p['error']})")
                continue
            trusted = ", ".join(_short(f, mesh_root) for f in p["trusted"])
            presented = _short(p["chains_to"], mesh_root)
            lines.append(f"  {p['namespace']}/{p['pod']}: trusts {trusted}; presents a certificate under {presented}")
    return lines
