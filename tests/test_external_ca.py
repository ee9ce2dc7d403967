"""``ca.source: external``: intermediates signed elsewhere, checked, written into ``cacerts``; no root key."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.certs import ca_certificate, private_key_pem
from support.mocks import run_program
from support.program import mesh_program

from stack_config import ConfigError, parse_settings

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
KEYS = "caIntermediateKeyPems"


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


_key_pem = private_key_pem


def _ca(
    cn: str,
    key: Any,
    issuer: tuple[x509.Certificate, Any] | None = None,
    path_length: int | None = 0,
    days: float = 365,
) -> x509.Certificate:
    """A CA certificate for ``key``, self-signed or issued by ``issuer`` (cert, key)."""
    cert: x509.Certificate = ca_certificate(
        key,
        cn=cn,
        issuer=issuer,
        path_length=path_length,
        crl_sign=True,
        not_before=NOW - datetime.timedelta(days=1),
        not_after=NOW + datetime.timedelta(days=days),
    )
    return cert


@pytest.fixture(scope="module")
def pki() -> dict[str, Any]:
    """The offline procedure's output: a root (10 years), and per cluster an intermediate (1 year)."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("Root CA", root_key, path_length=None, days=3650)
    out: dict[str, Any] = {"root": root, "root_key": root_key}
    for c in ("cluster1", "cluster2"):
        key = ec.generate_private_key(ec.SECP256R1())
        out[c] = (_ca(f"Intermediate CA {c}", key, issuer=(root, root_key)), key)
    return out


def _raw(kubeconfigs: Any, pki: dict[str, Any], **intermediates: Any) -> dict[str, Any]:
    entries = {c: {"certPem": _pem(pki[c][0])} for c in ("cluster1", "cluster2")}
    keys = {c: _key_pem(pki[c][1]) for c in ("cluster1", "cluster2")}
    for c, override in intermediates.items():
        entries[c] = {**entries[c], **{k: v for k, v in override.items() if k != "key"}}
        if "key" in override:
            keys[c] = override["key"]
    return {
        "meshId": "mesh1",
        "clusters": kubeconfigs(2),
        "ca": {"source": "external", "rootCertPem": _pem(pki["root"]), "intermediates": entries},
        KEYS: keys,
    }


def _problems(raw: dict[str, Any], secret_keys: set[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, secret_keys={KEYS} if secret_keys is None else secret_keys)
    return err.value.problems


def test_external_intermediates_go_into_cacerts_and_no_root_key_exists(kubeconfigs: Any, pki: dict[str, Any]) -> None:
    settings = parse_settings(_raw(kubeconfigs, pki), secret_keys={KEYS})
    assert settings.ca.source == "external"
    rec = run_program(mesh_program(settings))
    # Nothing signs and nothing generates a CA: no root key, no intermediate key, no signer.
    assert not rec.of_type("tls:index/privateKey:PrivateKey")
    assert not rec.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert not rec.of_type("pulumi-python:dynamic/istiomesh:IntermediateCertificate")
    assert "root_key_pem" not in repr([r.inputs for r in rec.registrations])
    assert rec.outputs["rootCertificatePem"] == _pem(pki["root"])
    for c in ("cluster1", "cluster2"):
        secret = rec.one("kubernetes:core/v1:Secret", "istio-system/cacerts", f"mesh-{c}-")
        data = {k: base64.b64decode(v).decode() for k, v in secret.inputs["data"].items()}
        assert secret.is_secret("data")
        assert data["ca-cert.pem"] == _pem(pki[c][0])
        assert data["ca-key.pem"] == _key_pem(pki[c][1])
        assert data["root-cert.pem"] == _pem(pki["root"])
        assert x509.load_pem_x509_certificates(data["cert-chain.pem"].encode()) == [pki[c][0], pki["root"]]


def test_a_chain_through_another_ca_is_checked_and_written_in_order(kubeconfigs: Any, pki: dict[str, Any]) -> None:
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _ca("Issuing CA", middle_key, issuer=(pki["root"], pki["root_key"]), path_length=1)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _ca("Intermediate CA cluster1", key, issuer=(middle, middle_key))
    override = {"certPem": _pem(cert), "chainPem": _pem(middle) + _pem(pki["root"]), "key": _key_pem(key)}
    settings = parse_settings(_raw(kubeconfigs, pki, cluster1=override), secret_keys={KEYS})
    rec = run_program(mesh_program(settings))
    secret = rec.one("kubernetes:core/v1:Secret", "istio-system/cacerts", "mesh-cluster1-")
    chain = base64.b64decode(secret.inputs["data"]["cert-chain.pem"])
    assert x509.load_pem_x509_certificates(chain) == [cert, middle, pki["root"]]  # the root once, last
    # Without the issuing CA the intermediate does not lead to the root.
    problems = _problems(_raw(kubeconfigs, pki, cluster1={**override, "chainPem": ""}))
    assert len(problems) == 1 and problems[0].startswith(
        "ca.intermediates.cluster1.certPem: is not issued by ca.rootCertPem (CN=Root CA,O=Istio): "
    )
    assert problems[0].endswith("chainPem must hold the certificates between the intermediate and the root, in order")


def test_every_bad_intermediate_is_named(kubeconfigs: Any, pki: dict[str, Any]) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    stranger_root = _ca("Other Root", other_key, path_length=None)
    unconstrained_key = ec.generate_private_key(ec.SECP256R1())
    unconstrained = _ca("Intermediate", unconstrained_key, issuer=(pki["root"], pki["root_key"]), path_length=None)
    long_key = ec.generate_private_key(ec.SECP256R1())
    too_long = _ca("Intermediate", long_key, issuer=(pki["root"], pki["root_key"]), days=4000)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    foreign = _ca("Intermediate", stranger_key, issuer=(stranger_root, other_key))

    assert _problems(_raw(kubeconfigs, pki, cluster1={"key": _key_pem(other_key)})) == [
        "caIntermediateKeyPems.cluster1: does not match ca.intermediates.cluster1.certPem: the key's public key "
        "differs from the certificate's"
    ]
    assert _problems(
        _raw(kubeconfigs, pki, cluster1={"certPem": _pem(unconstrained), "key": _key_pem(unconstrained_key)})
    ) == [
        "ca.intermediates.cluster1.certPem: has no path length: its key could sign further CAs. Istio's tooling "
        "issues intermediates with pathlen:0 (basicConstraints critical, CA:true, pathlen:0); issue it so"
    ]
    end = too_long.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    root_end = pki["root"].not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert _problems(_raw(kubeconfigs, pki, cluster2={"certPem": _pem(too_long), "key": _key_pem(long_key)})) == [
        f"ca.intermediates.cluster2.certPem: is valid until {end}, after its root ({root_end}): an intermediate "
        "must not outlive its root; issue it to end by the root's end"
    ]
    foreign_problems = _problems(
        _raw(kubeconfigs, pki, cluster2={"certPem": _pem(foreign), "key": _key_pem(stranger_key)})
    )
    assert len(foreign_problems) == 1
    assert foreign_problems[0].startswith("ca.intermediates.cluster2.certPem: is not issued by ca.rootCertPem")
    assert _problems(_raw(kubeconfigs, pki, cluster1={"certPem": _pem(pki["cluster1"][0]) + _pem(pki["root"])})) == [
        "ca.intermediates.cluster1.certPem: holds 2 certificates; give exactly one here (the first of a chain is "
        "its leaf, not necessarily the CA you mean)"
    ]


def test_missing_extra_and_plain_text_keys_are_named(kubeconfigs: Any, pki: dict[str, Any]) -> None:
    raw = _raw(kubeconfigs, pki)
    del raw["ca"]["intermediates"]["cluster2"]
    del raw[KEYS]["cluster2"]
    raw["ca"]["intermediates"]["cluster9"] = raw["ca"]["intermediates"]["cluster1"]
    assert _problems(raw) == [
        "ca.intermediates.cluster9: no cluster of the mesh is named 'cluster9'; clusters: cluster1, cluster2",
        "ca.intermediates.cluster2.certPem: is required when ca.source is external (its intermediate, PEM)",
        "caIntermediateKeyPems.cluster2: is required when ca.source is external: `pulumi config set --secret "
        "--path 'istio-mesh:caIntermediateKeyPems.cluster2' \"$(cat ca-key.pem)\"`",
    ]
    assert _problems(_raw(kubeconfigs, pki), secret_keys=set()) == [
        "caIntermediateKeyPems: is stored in plain text in the stack's config file; private keys must be secrets: "
        "`pulumi config set --secret --path 'istio-mesh:caIntermediateKeyPems.<cluster>' \"$(cat ca-key.pem)\"` "
        "for each cluster"
    ]


def test_an_external_ca_takes_no_root_key(kubeconfigs: Any, pki: dict[str, Any]) -> None:
    raw = {**_raw(kubeconfigs, pki), "caRootKeyPem": _key_pem(pki["root_key"])}
    assert _problems(raw, secret_keys={KEYS, "caRootKeyPem"}) == [
        "caRootKeyPem: is given but ca.source is external: the root key stays offline and never enters the config "
        "or the state; remove it (`pulumi config rm istio-mesh:caRootKeyPem`)"
    ]
    # And intermediates are for the external source only.
    raw = _raw(kubeconfigs, pki)
    raw["ca"]["source"] = "generate"
    del raw["ca"]["rootCertPem"]
    assert _problems(raw) == [
        "ca.intermediates: is only used when ca.source is external (it is 'generate')",
        "caIntermediateKeyPems: is only used when ca.source is external (it is 'generate')",
    ]


def test_the_offline_procedure_in_the_readme_makes_what_the_checks_accept(kubeconfigs: Any, tmp_path: Any) -> None:
    """``scripts/offline-ca`` (openssl, on the machine that keeps the root key) -> config -> cacerts."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "offline-ca"
    subprocess.run([str(script), "root", str(tmp_path)], check=True, capture_output=True)
    for c in ("cluster1", "cluster2"):
        subprocess.run([str(script), "intermediate", str(tmp_path), c], check=True, capture_output=True)
    refused = subprocess.run([str(script), "root", str(tmp_path)], capture_output=True, text=True)
    assert refused.returncode == 1 and "refusing to overwrite a root key" in refused.stderr
    raw = {
        "meshId": "mesh1",
        "clusters": kubeconfigs(2),
        "ca": {
            "source": "external",
            "rootCertPem": (tmp_path / "root-cert.pem").read_text(),
            "intermediates": {
                c: {"certPem": (tmp_path / c / "ca-cert.pem").read_text()} for c in ("cluster1", "cluster2")
            },
        },
        KEYS: {c: (tmp_path / c / "ca-key.pem").read_text() for c in ("cluster1", "cluster2")},
    }
    settings = parse_settings(raw, secret_keys={KEYS})
    root = x509.load_pem_x509_certificate((tmp_path / "root-cert.pem").read_bytes())
    for c in ("cluster1", "cluster2"):
        ext = settings.ca.intermediate(c)
        assert ext is not None
        cert = x509.load_pem_x509_certificate(ext.cert_pem.encode())
        cert.verify_directly_issued_by(root)
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
        assert {a.oid: a.value for a in cert.subject} == {
            NameOID.ORGANIZATION_NAME: "Istio",
            NameOID.COMMON_NAME: "Intermediate CA",
            NameOID.LOCALITY_NAME: c,
        }
    rec = run_program(mesh_program(settings))
    assert len([r for r in rec.of_type("kubernetes:core/v1:Secret") if r.k8s_name == "istio-system/cacerts"]) == 2
    assert not rec.of_type("tls:index/privateKey:PrivateKey")
