"""Certificates and keys built by hand: CA certificates varying each field a check looks at, an EC root
for the signer's tests (at a fixed ``NOW``), and keys as PEM."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def ca_certificate(
    key: Any,
    *,
    cn: str = "Root CA",
    issuer: tuple[Any, Any] | None = None,
    ca: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool | None = True,
    crl_sign: bool = False,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> Any:
    """A (CA) certificate for ``key``, O=Istio CN=``cn``: self-signed, or issued by ``issuer`` (cert, key).
    ``key_cert_sign`` None leaves out keyUsage; tests vary each field a check looks at."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    signer_cert, signer_key = issuer or (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    )
    if key_cert_sign is not None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return builder.sign(signer_key, hashes.SHA256())


def private_key_pem(key: Any) -> str:
    """A private key as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


#: The moment the signer tests sign at.
NOW = datetime.datetime(2026, 11, 26, 12, 0, 0, tzinfo=datetime.UTC)


def public_key_pem(key: Any) -> str:
    """A public key as SubjectPublicKeyInfo PEM."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def ec_root_ca(with_ski: bool = True, days: float = 3650) -> tuple[str, str, x509.Certificate]:
    """An EC root CA (O=Istio, CN=Root CA) valid from a day before ``NOW`` for ``days``: (cert PEM, key PEM, cert)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"), x509.NameAttribute(NameOID.COMMON_NAME, "Root CA")]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if with_ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem(key), cert
