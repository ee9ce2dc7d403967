"""Root CA rotation (``istio_mesh.rotation``, ``istio_mesh.trust_gate``): what each phase writes into
``cacerts``, the names it uses, and the gate that refuses a phase while a proxy would break.

The plan and the gate's judgement are pure and tested with real certificates (two roots, an intermediate
under each, workload certificates under the intermediates, Envoy config dumps as a proxy's agent writes
them); the composition is tested under the recording mocks, with the gate's cluster reads replaced by a
recorder (the lab's e2e tier runs the real gate against real proxies)."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from support.certs import ca_certificate, private_key_pem
from support.mesh import SECRET, b64d, build

from istio_mesh import trust_gate
from istio_mesh.fingerprint import pem_fingerprint
from istio_mesh.rotation import bundle, intermediate_name, phase_plan, root_ca_name, split_pems
from istio_mesh.trust_gate import ClusterTrust, ProxyTrust, Target, cacerts_trust, chain_root, gate_problems
from stack_config import ConfigError, parse_settings

NOW = datetime.datetime.now(datetime.UTC)
LATER = NOW + datetime.timedelta(days=30)


def _pem(cert: Any) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca(cn: str, issuer: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    return ca_certificate(key, cn=cn, issuer=issuer, not_before=NOW, not_after=LATER), key


OLD, OLD_KEY = _ca("Root CA")
NEW, NEW_KEY = _ca("Root CA")  # the same name, as every generated root has: only the keys tell them apart
OLD_INT, OLD_INT_KEY = _ca("Intermediate CA", (OLD, OLD_KEY))
NEW_INT, NEW_INT_KEY = _ca("Intermediate CA", (NEW, NEW_KEY))
OLD_PEM, NEW_PEM = _pem(OLD), _pem(NEW)
OLD_FP, NEW_FP = pem_fingerprint(OLD_PEM), pem_fingerprint(NEW_PEM)


def _workload(intermediate: tuple[Any, Any]) -> str:
    """A workload certificate under ``intermediate`` as an agent holds it: leaf, intermediate, root bundle."""
    leaf, _ = _ca("spiffe://cluster.local/ns/sample/sa/sleep", intermediate)
    return _pem(leaf) + _pem(intermediate[0])


def _dump(trusted: list[str], chain: str) -> dict[str, Any]:
    """``config_dump?resource=dynamic_active_secrets`` as Envoy answers it (istio-agent's two secrets)."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "configs": [
            {"name": "default", "secret": {"tls_certificate": {"certificate_chain": {"inline_bytes": b64(chain)}}}},
            {
                "name": "ROOTCA",
                "secret": {"validation_context": {"trusted_ca": {"inline_bytes": b64(bundle(trusted))}}},
            },
        ]
    }


def _pod(name: str, xds_agent: bool = True) -> dict[str, Any]:
    env = [{"name": "PROXY_CONFIG_XDS_AGENT", "value": "true"}] if xds_agent else []
    return {
        "metadata": {"name": name, "namespace": "sample"},
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy", "env": env}]},
        "status": {"phase": "Running"},
    }


def test_each_phase_writes_the_istio_sequence_and_finishing_writes_what_drop_old_wrote() -> None:
    one, two, three = (phase_plan(p, OLD_PEM, NEW_PEM) for p in ("trust-both", "sign-with-next", "drop-old"))
    assert (one.trust, one.next_signs) == ((OLD_PEM, NEW_PEM), False)
    # The same two roots in other bytes: istiod pushes the bundle again and every proxy re-requests.
    assert set(two.trust) == set(one.trust) and two.root_cert_pem != one.root_cert_pem and two.next_signs
    assert (three.trust, three.next_signs) == ((NEW_PEM,), True)
    assert three.root_cert_pem == bundle([NEW_PEM])
    assert [pem_fingerprint(p) for p in split_pems(one.root_cert_pem)] == [OLD_FP, NEW_FP]
    with pytest.raises(ValueError, match="trust-both, sign-with-next, drop-old"):
        phase_plan("swap", OLD_PEM, NEW_PEM)


def test_generation_zero_keeps_the_names_meshes_always_had() -> None:
    assert root_ca_name("mesh", 0) == "mesh-root-ca" and root_ca_name("mesh", 2) == "mesh-root-ca-g2"
    assert intermediate_name("mesh-cluster1-ca", 0) == "mesh-cluster1-ca"
    assert intermediate_name("mesh-cluster1-ca", 1) == "mesh-cluster1-ca-g1"


def test_a_proxy_is_read_from_its_envoy_secrets() -> None:
    p = trust_gate.proxy_trust(
        "cluster1", _pod("sleep-1"), _dump([NEW_PEM, OLD_PEM], _workload((OLD_INT, OLD_INT_KEY)))
    )
    assert set(p.trusted) == {OLD_FP, NEW_FP} and p.chains_to == OLD_FP and p.xds_agent and not p.error
    # The agent's chain ends with the whole root bundle: the root is found by signatures, not by position.
    both = _workload((NEW_INT, NEW_INT_KEY)) + bundle([OLD_PEM, NEW_PEM])
    assert chain_root(both) == NEW_FP
    empty = trust_gate.proxy_trust("cluster1", _pod("sleep-2", xds_agent=False), {"configs": []})
    assert empty.error == "its Envoy has no ROOTCA and default secret yet" and not empty.xds_agent


def test_a_live_cacerts_is_read_as_its_roots_and_its_signer() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    secret = {
        "data": {
            "root-cert.pem": b64(bundle([OLD_PEM, NEW_PEM])),
            "ca-cert.pem": b64(_pem(NEW_INT)),
            "cert-chain.pem": b64(_pem(NEW_INT) + NEW_PEM),
        }
    }
    assert cacerts_trust(secret) == ((OLD_FP, NEW_FP), NEW_FP)
    assert cacerts_trust(None) == (None, None)


def _cluster(
    proxies: list[ProxyTrust], trust: tuple[str, ...], signer: str, **published: tuple[str, ...]
) -> ClusterTrust:
    return ClusterTrust(
        "cluster1", trust, signer, {"istio-system": trust, "sample": trust, **published}, tuple(proxies)
    )


def _proxy(trusted: tuple[str, ...], chains_to: str, xds_agent: bool = True) -> ProxyTrust:
    return ProxyTrust("cluster1", "sample", "sleep-1", trusted, chains_to, xds_agent, "2026-12-08T03:00:00+00:00")


LABELS = {OLD_FP: "current", NEW_FP: "next"}


def test_the_gate_refuses_signing_with_a_root_a_proxy_does_not_trust_and_says_how_to_fix_it() -> None:
    sign = Target((NEW_FP, OLD_FP), NEW_FP, LABELS)
    state = [_cluster([_proxy((OLD_FP,), OLD_FP, xds_agent=False)], (OLD_FP, NEW_FP), OLD_FP)]
    assert trust_gate.changing(sign, state) == ["cluster1"]
    (problem,) = gate_problems(sign, state)
    assert "proxy sample/sleep-1 in cluster1 does not trust the next root" in problem
    assert (
        "PROXY_CONFIG_XDS_AGENT is not set" in problem and "kubectl --context cluster1 -n sample delete pod" in problem
    )
    assert "2026-12-08T03:00:00" in problem  # or wait for its own renewal
    # Once it trusts both, the phase may go ahead.
    assert gate_problems(sign, [_cluster([_proxy((OLD_FP, NEW_FP), OLD_FP)], (OLD_FP, NEW_FP), OLD_FP)]) == []


def test_the_gate_refuses_dropping_a_root_a_certificate_still_chains_to() -> None:
    drop = Target((NEW_FP,), NEW_FP, LABELS)
    stale = [_cluster([_proxy((OLD_FP, NEW_FP), OLD_FP)], (NEW_FP, OLD_FP), NEW_FP)]
    (problem,) = gate_problems(drop, stale)
    assert "the certificate of proxy sample/sleep-1 in cluster1 chains to the current root" in problem
    assert "which this phase stops trusting" in problem
    assert gate_problems(drop, [_cluster([_proxy((OLD_FP, NEW_FP), NEW_FP)], (NEW_FP, OLD_FP), NEW_FP)]) == []


def test_the_gate_waits_for_istiod_to_load_its_cacerts_and_publish_the_signing_root() -> None:
    sign = Target((NEW_FP, OLD_FP), NEW_FP, LABELS)
    proxy = _proxy((OLD_FP, NEW_FP), OLD_FP)
    not_loaded = [
        ClusterTrust("cluster1", (OLD_FP, NEW_FP), OLD_FP, {"istio-system": (OLD_FP,), "sample": (OLD_FP,)}, (proxy,))
    ]
    problems = gate_problems(sign, not_loaded)
    assert any("istiod in cluster1 has not loaded its cacerts yet" in p for p in problems), problems
    assert any("sample/istio-ca-root-cert in cluster1 does not hold the next root" in p for p in problems), problems


def test_the_gate_stops_on_what_it_cannot_read() -> None:
    target = Target((NEW_FP,), NEW_FP, LABELS)
    unreadable = [
        ClusterTrust("cluster2", error="cannot read its trust state: MaxRetryError: refused"),
        _cluster([ProxyTrust("cluster1", "sample", "sleep-1", error="exec failed")], (NEW_FP,), NEW_FP),
    ]
    problems = gate_problems(target, unreadable)
    assert problems == [
        "cluster cluster2: cannot read its trust state: MaxRetryError: refused",
        "cannot read what proxy sample/sleep-1 in cluster1 trusts: exec failed",
    ]


def test_nothing_changing_reads_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[bool] = []

    class Reader:
        def read(self, proxies: bool) -> ClusterTrust:
            reads.append(proxies)
            proxy = ProxyTrust("cluster1", "sample", "sleep-1", (NEW_FP,), NEW_FP, True)
            return ClusterTrust("cluster1", (NEW_FP,), NEW_FP, {}, (proxy,) if proxies else ())

    trust_gate.check(Target((NEW_FP,), NEW_FP), [Reader()], "finishing")  # type: ignore[list-item]
    assert reads == [False]
    with pytest.raises(trust_gate.RotationRefused, match=r"phase x: refused at .*, nothing was changed"):
        trust_gate.check(Target((OLD_FP,), OLD_FP), [Reader()], "phase x")  # type: ignore[list-item]
    assert reads == [False, False, True]


# --- the stack config and the composition -----------------------------------------------------------


def test_the_stack_config_declares_a_rotation(kubeconfigs: Any) -> None:
    raw = {"meshId": "mesh1", "clusters": kubeconfigs(2)}
    ca = parse_settings({**raw, "ca": {"rotation": {"phase": "sign-with-next"}}}).ca
    assert (
        ca.rotation is not None and ca.rotation.phase == "sign-with-next" and ca.rotation.next_root.source == "generate"
    )
    with pytest.raises(ConfigError) as e:
        parse_settings(
            {**raw, "ca": {"generation": -1, "rotation": {"phase": "swap", "nextRoot": {"source": "external"}}}}
        )
    text = str(e.value)
    assert "ca.rotation.phase: 'swap' is not a phase; the phases, one `up` each, in order: trust-both" in text
    assert "ca.rotation.nextRoot.rootCertPem: is required when the next root is external" in text
    assert "ca.generation" in text
    with pytest.raises(ConfigError, match="caNextRootKeyPem: is required when the next root is imported"):
        parse_settings(
            {
                **raw,
                "ca": {"rotation": {"phase": "trust-both", "nextRoot": {"source": "import", "rootCertPem": NEW_PEM}}},
            }
        )


@pytest.fixture
def gate_targets(monkeypatch: pytest.MonkeyPatch) -> list[Target]:
    """The gate's targets, recorded instead of read from clusters (the mocks have none)."""
    seen: list[Target] = []
    monkeypatch.setattr(trust_gate, "check", lambda target, readers, what: seen.append(target))
    return seen


def _cacerts(rec: Any) -> dict[str, dict[str, str]]:
    return {
        r.name.split("-")[1]: {k: b64d(v) for k, v in r.inputs["data"].items()}
        for r in rec.of_type(SECRET)
        if r.name.endswith("-ca-cacerts")
    }


def test_the_phases_under_the_mocks(mesh_settings: Any, gate_targets: list[Target]) -> None:
    before = build(mesh_settings(2))
    assert not gate_targets  # a mesh that never rotated: no gate, no extra read
    one = build(mesh_settings(2, ca={"rotation": {"phase": "trust-both"}}))
    two = build(mesh_settings(2, ca={"rotation": {"phase": "sign-with-next"}}))
    three = build(mesh_settings(2, ca={"rotation": {"phase": "drop-old"}}))
    done = build(mesh_settings(2, ca={"generation": 1}))
    old_root = before.outputs["rootCertificatePem"]
    next_pem = done.outputs["rootCertificatePem"]  # (the mocks sign the same inputs the same way every run)
    assert next_pem != old_root
    for rec, roots, signer in ((one, [old_root, next_pem], old_root), (two, [next_pem, old_root], next_pem)):
        for data in _cacerts(rec).values():
            assert split_pems(data["root-cert.pem"]) == [bundle([p]) for p in roots]
            x509.load_pem_x509_certificate(data["ca-cert.pem"].encode()).verify_directly_issued_by(
                x509.load_pem_x509_certificate(signer.encode())
            )
    # Phase 1 keeps each cluster's intermediate; phase 2 signs a new one (new key) under the next root.
    assert _cacerts(one)["cluster1"]["ca-key.pem"] == _cacerts(before)["cluster1"]["ca-key.pem"]
    assert _cacerts(two)["cluster1"]["ca-key.pem"] != _cacerts(one)["cluster1"]["ca-key.pem"]
    assert _cacerts(three) == _cacerts(done)  # finishing writes what drop-old wrote
    assert three.outputs["rootCertificatePem"] == old_root  # the root in use until the rotation is finished
    # The gate saw each phase's target.
    assert [(len(t.trust), t.signer) for t in gate_targets] == [
        (2, pem_fingerprint(old_root)),
        (2, pem_fingerprint(next_pem)),
        (1, pem_fingerprint(next_pem)),
        (1, pem_fingerprint(next_pem)),
    ]
    # istiod accepts root changes and pushes them; proxies take the push: from the first phase on.
    for rec, on in ((before, False), (one, True), (done, True)):
        values = rec.one("kubernetes:helm.sh/v4:Chart", name_contains="cluster1-istiod").inputs["values"]
        env = values.get("pilot", {}).get("env", {})
        metadata = values.get("meshConfig", {}).get("defaultConfig", {}).get("proxyMetadata", {})
        assert (env.get("ISTIO_MULTIROOT_MESH"), metadata.get("PROXY_CONFIG_XDS_AGENT")) == (
            ("true",) * 2 if on else (None,) * 2
        )
    # The old root, unused from drop-old on, is no longer protected, so finishing can delete it.
    assert three.one("tls:index/privateKey:PrivateKey", name_contains="mesh-root-ca-key").protect is False


def _intermediate_pem(issuer: tuple[Any, Any], cluster: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca_certificate(
        key, cn=f"Intermediate CA {cluster}", issuer=issuer, path_length=0, not_before=NOW, not_after=LATER
    )
    return _pem(cert), private_key_pem(key)


def test_an_offline_next_root_brings_its_own_intermediates_and_no_key(
    kubeconfigs: Any, gate_targets: list[Target]
) -> None:
    """``nextRoot.source: external``: the next root's certificate and, per cluster, an intermediate signed
    under it elsewhere with its key (secret config); from ``sign-with-next`` on they are what ``cacerts``
    holds, and nothing is signed here."""
    nxt = {c: _intermediate_pem((NEW, NEW_KEY), c) for c in ("cluster1", "cluster2")}
    rotation = {
        "phase": "sign-with-next",
        "nextRoot": {
            "source": "external",
            "rootCertPem": NEW_PEM,
            "intermediates": {c: {"certPem": v[0]} for c, v in nxt.items()},
        },
    }
    raw = {"meshId": "mesh1", "clusters": kubeconfigs(2), "ca": {"rotation": rotation}}
    keys = {c: v[1] for c, v in nxt.items()}
    with pytest.raises(ConfigError) as e:
        parse_settings(raw)
    assert "caNextIntermediateKeyPems.cluster1: is required when the next root is external" in str(e.value)
    with pytest.raises(ConfigError, match=r"caNextIntermediateKeyPems\.cluster2: does not match"):
        parse_settings({**raw, "caNextIntermediateKeyPems": {**keys, "cluster2": keys["cluster1"]}})
    settings = parse_settings({**raw, "caNextIntermediateKeyPems": keys}, secret_keys={"caNextIntermediateKeyPems"})
    assert settings.ca.rotation is not None and settings.ca.rotation.next_root.intermediate("cluster1") is not None
    rec = build(settings)
    for c, data in _cacerts(rec).items():
        assert (data["ca-cert.pem"], data["ca-key.pem"]) == nxt[c], c
        assert pem_fingerprint(split_pems(data["root-cert.pem"])[0]) == NEW_FP
    assert not [r for r in rec.of_type("tls:index/selfSignedCert:SelfSignedCert") if "root-ca-g1" in r.name]
    assert not [r for r in rec.of_type("pulumi-python:dynamic/istiomesh:IntermediateCertificate") if "-g1-" in r.name]
    assert gate_targets[-1].signer == NEW_FP


def test_a_new_intermediate_generation_gives_every_cluster_a_new_key_under_the_same_root(
    mesh_settings: Any, gate_targets: list[Target]
) -> None:
    before = build(mesh_settings(2))
    after = build(mesh_settings(2, ca={"intermediateGeneration": 1}))
    assert not gate_targets  # the same root: nothing for the gate to check
    root = x509.load_pem_x509_certificate(before.outputs["rootCertificatePem"].encode())
    assert after.outputs["rootCertificatePem"] == before.outputs["rootCertificatePem"]
    for c in ("cluster1", "cluster2"):
        old, new = _cacerts(before)[c], _cacerts(after)[c]
        assert new["ca-key.pem"] != old["ca-key.pem"] and new["root-cert.pem"] == old["root-cert.pem"]
        x509.load_pem_x509_certificate(new["ca-cert.pem"].encode()).verify_directly_issued_by(root)
        assert after.one("tls:index/privateKey:PrivateKey", name_contains=f"mesh-{c}-ca-k1-key")
