"""The root CA (``RootCA``): Istio's root fields, protection, and its key kept secret.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

import pulumi
from support.mesh import CA_USAGES, ROOT_KEY, build
from support.mocks import run_program


def test_root_ca_has_istio_root_fields(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    key = rec.one("tls:index/privateKey:PrivateKey", name_contains="root-ca")
    assert (key.inputs["algorithm"], key.inputs["rsaBits"]) == ("RSA", 4096)
    cert = rec.one("tls:index/selfSignedCert:SelfSignedCert")
    assert cert.inputs["subject"] == {"organization": "Istio", "commonName": "Root CA"}
    assert cert.inputs["validityPeriodHours"] == 3650 * 24
    assert cert.inputs["isCaCertificate"] is True
    assert sorted(cert.inputs["allowedUses"]) == sorted(CA_USAGES)
    assert cert.inputs["privateKeyPem"] == ROOT_KEY
    # The generated root is protected against accidental deletion by default.
    assert key.protect and cert.protect


def test_lab_style_root_is_not_protected(mesh_settings: Any) -> None:
    rec = build(mesh_settings(ca={"protect": False}))
    assert not rec.one("tls:index/privateKey:PrivateKey", name_contains="root-ca").protect
    assert not rec.one("tls:index/selfSignedCert:SelfSignedCert").protect


def test_root_key_output_is_secret(mesh_settings: Any) -> None:
    from istio_mesh import RootCA

    settings = mesh_settings()
    seen: dict[str, bool] = {}

    def build() -> dict[str, pulumi.Output[Any]]:
        root = RootCA("root", settings.ca)

        async def secrecy() -> bool:
            assert root.key_pem is not None  # (generated)
            seen["key"] = await root.key_pem.is_secret()
            seen["cert"] = await root.cert_pem.is_secret()
            return True

        return {"checked": pulumi.Output.from_input(secrecy())}

    run_program(build)
    assert seen == {"key": True, "cert": False}
