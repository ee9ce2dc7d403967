"""``verify --roots`` (``verify.roots``): which roots each proxy trusts and presents, and the mixed state of a
root rotation named as a finding (pure: the facts are given, as ``trust_gate`` reads them)."""

from __future__ import annotations

from istio_mesh.trust_gate import ClusterTrust, ProxyTrust
from verify.roots import check_roots, roots_json, roots_lines

OLD, NEW = "AA:" * 31 + "AA", "BB:" * 31 + "BB"


def _proxy(cluster: str, pod: str, trusted: tuple[str, ...], chains_to: str | None) -> ProxyTrust:
    return ProxyTrust(cluster, "sample", pod, trusted, chains_to, True, None)


def test_a_proxy_that_does_not_trust_a_peer_certificates_root_is_named() -> None:
    mixed = [
        ClusterTrust("cluster1", (OLD, NEW), NEW, {}, (_proxy("cluster1", "sleep-1", (OLD,), OLD),)),
        ClusterTrust("cluster2", (OLD, NEW), NEW, {}, (_proxy("cluster2", "helloworld-1", (OLD, NEW), NEW),)),
    ]
    findings, warnings = check_roots(mixed)
    assert not warnings
    (f,) = findings
    assert (f.cluster, f.check) == ("cluster1", "roots")
    assert f.cause.startswith("proxy sample/sleep-1 in cluster1 does not trust root BB:BB:BB:BB...")
    assert "sample/helloworld-1 in cluster2" in f.cause and "mTLS between them fails" in f.cause


def test_one_root_everywhere_is_no_finding_and_unreadable_proxies_are_warnings() -> None:
    good = [
        ClusterTrust(
            "cluster1",
            (NEW,),
            NEW,
            {},
            (_proxy("cluster1", "sleep-1", (NEW,), NEW), ProxyTrust("cluster1", "sample", "new-1", error="no secret")),
        )
    ]
    findings, warnings = check_roots(good)
    assert findings == []
    assert [w.cause for w in warnings] == ["cannot read what proxy sample/new-1 in cluster1 trusts: no secret"]
    doc = roots_json(good, None)
    assert doc[0]["cacerts"] == {"trusts": [NEW], "signsUnder": NEW}
    assert doc[0]["proxies"][0]["trusted"] == [NEW] and doc[0]["proxies"][0]["chains_to"] == NEW
    text = "\n".join(roots_lines(doc, NEW))
    assert "roots of cluster1: cacerts trusts BB:BB:BB:BB... (the stack's root)" in text
    assert "sample/sleep-1: trusts BB:BB:BB:BB... (the stack's root); presents a certificate under BB" in text
    assert "sample/new-1: unreadable (no secret)" in text
