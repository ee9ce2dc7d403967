"""The one format a certificate's fingerprint is shown in, wherever it is shown: the stack output
``rootCertificateFingerprint`` (``RootCA.fingerprint``), the lost-state refusal (``root_guard``) and
``scripts/verify``'s report. SHA-256 of the DER encoding as colon-separated upper-case hex, as
``openssl x509 -noout -fingerprint -sha256`` prints it, so a user can compare them by eye.

Imports neither Pulumi nor anything else of the package (``verify`` uses it).
"""

from __future__ import annotations

import hashlib


def pem_fingerprint(pem: str) -> str:
    """SHA-256 fingerprint of a PEM certificate, as colon-separated upper-case hex (openssl's format)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
