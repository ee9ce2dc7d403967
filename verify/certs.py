"""Certificate helpers: fingerprints (``pem_fingerprint``: the package's, so the report shows the format of
the stack output ``rootCertificateFingerprint``), names, and whether one certificate issued another."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from istio_mesh.fingerprint import pem_fingerprint

__all__ = ["chains", "der_to_pem", "is_self_signed_istiod_ca", "issuer_name", "pem_fingerprint"]


def der_to_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode()


def issuer_name(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string() or "<empty>"


def chains(cert_pem: str | None, issuer_pem: str | None) -> bool:
    """True when ``issuer_pem``'s key signed ``cert_pem``."""
    if not cert_pem or not issuer_pem:
        return False
    try:
        x509.load_pem_x509_certificate(cert_pem.encode()).verify_directly_issued_by(
            x509.load_pem_x509_certificate(issuer_pem.encode())
        )
        return True
    except Exception:  # InvalidSignature, unsupported key types: not issued by it
        return False


def is_self_signed_istiod_ca(cert_pem: str) -> bool:
    """istiod's own CA (no ``cacerts``) issues as ``O=cluster.local`` (the trust domain), no CN; a plugged-in
    CA made by this project (and by Istio's tools) names the organisation ``Istio``."""
    issuer = x509.load_pem_x509_certificate(cert_pem.encode()).issuer
    orgs = [a.value for a in issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return "Istio" not in orgs
