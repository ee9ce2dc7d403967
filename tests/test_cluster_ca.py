"""Each cluster's CA (``ClusterCA``): its intermediate signed by the one root, ``cacerts`` and the root key
kept out of every cluster.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from support.mesh import INTERMEDIATE, ROOT_KEY, SECRET, b64d, build
from support.mocks import Recorded, mock_private_key_pem


def _pem_public(pem: str) -> bytes:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_each_cluster_gets_an_intermediate_signed_by_the_one_root(mesh_settings: Any) -> None:
    rec = build(mesh_settings(3))
    root_pem = rec.outputs["rootCertificatePem"]
    root = x509.load_pem_x509_certificate(root_pem.encode())
    signed = rec.of_type(INTERMEDIATE)
    assert len(signed) == 3
    assert len(rec.of_type("tls:index/selfSignedCert:SelfSignedCert")) == 1
    serials = set()
    for cluster in ("cluster1", "cluster2", "cluster3"):
        own_key = rec.one("tls:index/privateKey:PrivateKey", name_contains=f"-{cluster}-ca-")
        assert (own_key.inputs["algorithm"], own_key.inputs["rsaBits"]) == ("RSA", 4096)
        reg = rec.one(INTERMEDIATE, name_contains=f"-{cluster}-ca-")
        assert reg.inputs["root_cert_pem"] == root_pem
        assert reg.inputs["root_key_pem"] == ROOT_KEY and reg.is_secret("root_key_pem")
        assert reg.inputs["cluster_name"] == cluster and reg.inputs["validity_days"] == 3650
        # The certificate itself, as the signer made it (ISTIO_FACTS, intermediate column).
        ca = _intermediate_of(rec, cluster)
        ca.verify_directly_issued_by(root)
        assert ca.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == _pem_public(mock_private_key_pem(own_key.name, 4096))
        assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
        assert {a.oid: a.value for a in ca.subject} == {
            NameOID.ORGANIZATION_NAME: "Istio",
            NameOID.COMMON_NAME: "Intermediate CA",
            NameOID.LOCALITY_NAME: cluster,
        }
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == 0
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert (ku.value.digital_signature, ku.value.content_commitment) == (True, True)
        assert (ku.value.key_encipherment, ku.value.key_cert_sign) == (True, True)
        assert not (ku.value.crl_sign or ku.value.data_encipherment or ku.value.key_agreement)
        san = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
        # 3650 days, but never past the root (made moments earlier with the same validity).
        ten_years = ca.not_valid_before_utc + datetime.timedelta(days=3650)
        assert ca.not_valid_after_utc == min(ten_years, root.not_valid_after_utc)
        assert ten_years - ca.not_valid_after_utc < datetime.timedelta(minutes=1)
        serials.add(ca.serial_number)
    assert len(serials) == 3


def _intermediate_of(rec: Recorded, cluster: str) -> x509.Certificate:
    secret = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
    return x509.load_pem_x509_certificate(base64.b64decode(secret.inputs["data"]["ca-cert.pem"]))


def test_cacerts_holds_the_four_keys_with_chain_intermediate_then_root(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    root_pem = rec.outputs["rootCertificatePem"]
    for cluster in ("cluster1", "cluster2"):
        secret = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        assert rec.provider_of(secret) == f"k8s-{cluster}"
        data = {k: b64d(v) for k, v in secret.inputs["data"].items()}
        assert sorted(data) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
        intermediate = data["ca-cert.pem"]
        assert "BEGIN CERTIFICATE" in intermediate and intermediate.endswith("\n")
        assert data["ca-key.pem"] == mock_private_key_pem(f"mesh-{cluster}-ca-key", 4096)
        assert data["root-cert.pem"] == root_pem
        assert data["cert-chain.pem"] == intermediate + root_pem
        assert secret.is_secret("data")
        # Applied over other field managers (drift repair; a take-back after a lost state under the same root).
        assert secret.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"


def test_intermediate_state_never_holds_the_root_key(mesh_settings: Any) -> None:
    """The signer's outputs (what the engine stores as the resource's state) leave the root key out."""
    from support.mocks import run_dynamic_create

    rec = build(mesh_settings())
    for reg in rec.of_type(INTERMEDIATE):
        _, outs = run_dynamic_create(reg.inputs)
        assert "root_key_pem" not in outs and ROOT_KEY not in repr(outs)
        assert "BEGIN CERTIFICATE" in outs["cert_pem"]


def test_root_key_is_written_into_no_cluster(mesh_settings: Any) -> None:
    rec = build(mesh_settings(3))
    k8s_objects = [r for r in rec.registrations if r.type.startswith("kubernetes:")]
    assert k8s_objects
    for reg in k8s_objects:
        text = repr(reg.inputs)
        decoded = [b64d(v) for v in (reg.inputs.get("data") or {}).values()]
        assert ROOT_KEY not in text and all(ROOT_KEY not in d for d in decoded), reg.name


def test_intermediates_carry_the_renewal_window(mesh_settings: Any) -> None:
    for settings, days in ((mesh_settings(), 30), (mesh_settings(ca={"renewBeforeDays": 90}), 90)):
        for reg in build(settings).of_type(INTERMEDIATE):
            assert reg.inputs["renew_before_days"] == days
