"""One fingerprint format: the stack output ``rootCertificateFingerprint`` and ``scripts/verify``'s report
render one certificate identically, as openssl prints a SHA-256 fingerprint."""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from support.certs import ec_root_ca
from support.mesh import build

from istio_mesh.fingerprint import pem_fingerprint
from verify.checks import check_roots
from verify.facts import ClusterFacts
from verify.report import render_text, report_json

#: ``openssl x509 -noout -fingerprint -sha256``: 32 bytes as colon-separated upper-case hex.
OPENSSL_SHA256 = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")


def test_the_stack_output_and_verifys_report_show_the_root_alike(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    root_pem = rec.outputs["rootCertificatePem"]
    shown = rec.outputs["rootCertificateFingerprint"]
    # What openssl prints for this certificate, computed without the package's helper.
    der_digest = x509.load_pem_x509_certificate(root_pem.encode()).fingerprint(hashes.SHA256())
    assert OPENSSL_SHA256.match(shown) and shown == der_digest.hex(":").upper()
    doc = report_json("mesh1", [], [], [], "helloworld.sample.svc.cluster.local", root_pem)
    assert doc["rootFingerprintSha256"] == shown
    assert f"mesh root sha256 {shown}" in render_text(doc).splitlines()


def test_verifys_root_finding_quotes_the_fingerprints_in_that_format(mesh_settings: Any) -> None:
    """A cluster under another root is named with the start of both fingerprints, whole bytes of each."""
    rec = build(mesh_settings())
    mesh_root = rec.outputs["rootCertificatePem"]
    stray = ec_root_ca()[0]
    cluster = ClusterFacts(name="cluster2", expected_network="network2", root_pem=stray, intermediate_pem=stray)
    (finding,) = check_roots([cluster], mesh_root)
    assert OPENSSL_SHA256.match(pem_fingerprint(stray))
    assert f"cacerts (sha256 {pem_fingerprint(stray)[:23]}...)" in finding.cause
    assert f"the mesh root (sha256 {rec.outputs['rootCertificateFingerprint'][:23]}...)" in finding.cause
