"""Checks on CA certificates a user brings (an imported root, an intermediate signed elsewhere).

Each check returns the problems it finds as ``(field, message)`` pairs, in words a user can act on;
nothing is raised, so one run reports every mistake. ``now`` is a parameter so tests can place the
validity window exactly.
"""

from __future__ import annotations

import datetime
from typing import Any

PEM_CERT_HEADER = "-----BEGIN CERTIFICATE-----"


def _when(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def load_one_certificate(field: str, pem: str) -> tuple[Any, list[tuple[str, str]]]:
    """The one certificate in ``pem``, or the problems: not PEM, or several certificates (a chain)."""
    from cryptography import x509

    count = pem.count(PEM_CERT_HEADER)
    if count > 1:
        return None, [
            (
                field,
                f"holds {count} certificates; give exactly one here (the first of a chain is its leaf, not "
                "necessarily the CA you mean)",
            )
        ]
    try:
        return x509.load_pem_x509_certificate(pem.encode()), []
    except ValueError as exc:
        return None, [(field, f"is not a PEM certificate: {exc}")]


def ca_problems(field: str, cert: Any, *, root: bool, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """What stops ``cert`` from serving as the mesh root (``root=True``) or as a cluster's intermediate CA:
    not a CA, no keyCertSign, a path length that forbids intermediates (root), outside its validity."""
    from cryptography import x509

    problems: list[tuple[str, str]] = []
    what = "the mesh root" if root else "a cluster's intermediate CA"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        problems.append((field, f"is not a CA certificate (basicConstraints CA:true is required for {what})"))
    elif root and constraints.path_length == 0:
        problems.append(
            (
                field,
                "has pathlen:0, so no CA may sit below it: every cluster's intermediate would be rejected. "
                "Use a root without a path length (or pathlen of at least 1)",
            )
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        signs = bool(usage.key_cert_sign)
    except x509.ExtensionNotFound:
        usage, signs = None, False
    if not signs:
        found = "has no keyUsage extension" if usage is None else "has a keyUsage without keyCertSign"
        problems.append((field, f"{found}: a CA certificate must carry keyCertSign to sign certificates"))
    now = now or datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        problems.append((field, f"is not valid yet: its validity starts {_when(cert.not_valid_before_utc)}"))
    if now >= cert.not_valid_after_utc:
        problems.append((field, f"has expired: its validity ended {_when(cert.not_valid_after_utc)}"))
    return problems


def key_matches(cert: Any, key_pem: str) -> bool | None:
    """Whether the private key in ``key_pem`` belongs to ``cert`` (None: not an unencrypted PEM key)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        return None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki))


def intermediate_problems(
    cluster: str, cert_pem: str, chain_pem: str, key_pem: str, root_pem: str, now: datetime.datetime | None = None
) -> list[tuple[str, str]]:
    """What is wrong with an intermediate signed elsewhere for ``cluster``: one CA certificate with
    keyCertSign and ``pathlen:0`` (as Istio's tooling makes them), valid now and never past the root,
    whose chain (``chain_pem``: the certificates between it and the root) leads to the root, and whose
    key is ``key_pem``."""
    from cryptography import x509

    field = f"ca.intermediates.{cluster}.certPem"
    cert, problems = load_one_certificate(field, cert_pem)
    root = x509.load_pem_x509_certificate(root_pem.encode())
    if cert is None:
        return problems
    problems += ca_problems(field, cert, root=False, now=now)
    try:
        path_length = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        path_length = 0  # (already named: not a CA)
    if path_length != 0:
        found = "no path length" if path_length is None else f"pathlen:{path_length}"
        problems.append(
            (
                field,
                f"has {found}: its key could sign further CAs. Istio's tooling issues intermediates with "
                "pathlen:0 (basicConstraints critical, CA:true, pathlen:0); issue it so",
            )
        )
    if cert.not_valid_after_utc > root.not_valid_after_utc:
        problems.append(
            (
                field,
                f"is valid until {_when(cert.not_valid_after_utc)}, after its root "
                f"({_when(root.not_valid_after_utc)}): an intermediate must not outlive its root; issue it to end "
                "by the root's end",
            )
        )
    try:
        chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem.strip() else []
    except ValueError as exc:
        return [*problems, (f"ca.intermediates.{cluster}.chainPem", f"is not PEM certificates: {exc}")]
    if chain and chain[-1] == root:
        chain = chain[:-1]  # a chain that ends with the root itself is fine: it is added once, at the end
    links = [cert, *chain, root]
    names = [field, *(f"ca.intermediates.{cluster}.chainPem[{i}]" for i in range(len(chain))), "ca.rootCertPem"]
    for i in range(len(links) - 1):
        try:
            links[i].verify_directly_issued_by(links[i + 1])
        except Exception as exc:  # InvalidSignature, or a key type that cannot have signed it
            reason = str(exc) or type(exc).__name__
            problems.append(
                (
                    names[i],
                    f"is not issued by {names[i + 1]} ({links[i + 1].subject.rfc4514_string()}): {reason}. "
                    "chainPem must hold the certificates between the intermediate and the root, in order",
                )
            )
            break
    match = key_matches(cert, key_pem)
    key_field = f"caIntermediateKeyPems.{cluster}"
    if match is None:
        problems.append((key_field, "is not an unencrypted PEM private key"))
    elif not match:
        problems.append((key_field, f"does not match {field}: the key's public key differs from the certificate's"))
    return problems
