"""The intermediate signer and its dynamic provider, on real keys (no Pulumi engine needed)."""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import dill
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.dynamic.dynamic import serialize_provider
from support.certs import NOW, ec_root_ca, private_key_pem, public_key_pem

from istio_mesh.intermediate_cert import (
    IntermediateCertificateProvider,
    SigningError,
    sign_intermediate,
)


def _sign(**overrides: Any) -> x509.Certificate:
    root_pem, root_key, _ = overrides.pop("root", None) or ec_root_ca()
    args: dict[str, Any] = {
        "public_key_pem": public_key_pem(ec.generate_private_key(ec.SECP256R1())),
        "cluster_name": "cluster1",
        "root_cert_pem": root_pem,
        "root_key_pem": root_key,
        "validity_days": 3650,
        "now": NOW,
    }
    args.update(overrides)
    return x509.load_pem_x509_certificate(sign_intermediate(**args).encode())


def test_intermediate_has_every_istio_field_and_pathlen_zero() -> None:
    root = ec_root_ca()
    ca = _sign(root=root)
    ca.verify_directly_issued_by(root[2])
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert {a.oid: a.value for a in ca.subject} == {
        NameOID.ORGANIZATION_NAME: "Istio",
        NameOID.COMMON_NAME: "Intermediate CA",
        NameOID.LOCALITY_NAME: "cluster1",
    }
    assert ca.issuer == root[2].subject
    assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
    assert ca.not_valid_before_utc == NOW and ca.not_valid_after_utc == NOW + datetime.timedelta(days=3650)
    san = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.digital_signature
    # Chain building: AKI of the intermediate = SKI of the root.
    aki = ca.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = root[2].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_a_root_without_ski_still_gets_an_authority_key_id() -> None:
    root = ec_root_ca(with_ski=False)
    ca = _sign(root=root)
    aki = ca.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == x509.SubjectKeyIdentifier.from_public_key(root[2].public_key()).digest


def test_each_signature_has_its_own_serial() -> None:
    root = ec_root_ca()
    assert _sign(root=root).serial_number != _sign(root=root).serial_number


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"validity_days": 0}, "validity_days must be at least 1"),
        ({"root_cert_pem": "not a cert"}, "root_cert_pem is not a PEM certificate"),
        ({"root_key_pem": "not a key"}, "root_key_pem is not an unencrypted PEM private key"),
        ({"public_key_pem": "nope"}, "public_key_pem is not a PEM public key"),
        (
            {"root_key_pem": private_key_pem(ec.generate_private_key(ec.SECP256R1()))},
            "not the private key of root_cert_pem",
        ),
    ],
)
def test_bad_inputs_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SigningError, match=message):
        _sign(**overrides)


def _props(root: tuple[str, str, x509.Certificate], **overrides: Any) -> dict[str, Any]:
    props = {
        "public_key_pem": public_key_pem(ec.generate_private_key(ec.SECP256R1())),
        "cluster_name": "cluster1",
        "root_cert_pem": root[0],
        "root_key_pem": root[1],
        "validity_days": 3650,
    }
    props.update(overrides)
    return props


def test_provider_state_has_the_cert_and_never_the_root_key() -> None:
    root = ec_root_ca()
    result = IntermediateCertificateProvider().create(_props(root))
    outs = result.outs or {}
    assert "root_key_pem" not in outs and root[1] not in repr(outs)
    cert = x509.load_pem_x509_certificate(outs["cert_pem"].encode())
    assert result.id == outs["serial"] == f"{cert.serial_number:x}"
    assert outs["not_after"] == cert.not_valid_after_utc.isoformat()


def test_provider_replaces_on_any_input_change_and_is_quiet_otherwise() -> None:
    root = ec_root_ca()
    provider = IntermediateCertificateProvider()
    props = _props(root)
    outs = provider.create(props).outs or {}
    same = provider.diff("id", outs, dict(props))
    assert same.changes is False and not same.replaces
    for key, value in (("cluster_name", "cluster9"), ("validity_days", 730), ("root_cert_pem", ec_root_ca()[0])):
        changed = provider.diff("id", outs, {**props, key: value})
        assert changed.changes is True and changed.replaces == [key]
    # A refresh reads back exactly what was signed (the certificate lives only in state).
    assert provider.read("id", outs).outs == outs


def test_provider_serializes_by_reference_and_round_trips() -> None:
    """The engine's plugin re-imports this module; the serialized form must stay small and stable."""
    text = serialize_provider(IntermediateCertificateProvider())
    raw = base64.b64decode(text)
    assert b"istio_mesh.intermediate_cert" in raw and len(raw) < 512
    assert serialize_provider(IntermediateCertificateProvider()) == text  # no diff between runs
    assert isinstance(dill.loads(raw), IntermediateCertificateProvider)


#: The serialized provider as stacks deployed before the package move hold it in every intermediate's
#: state (``__provider``, from b66a8b0 to 9bfcc80): the class named by its old module path.
LEGACY_PROVIDER = (
    "gASVRwAAAAAAAACMHGNvbXBvbmVudHMuaW50ZXJtZWRpYXRlX2NlcnSUjB9JbnRlcm1lZGlhdGVDZXJ0aWZpY2F0ZVByb3ZpZGVylJOUKYGULg=="
)


def test_the_provider_in_state_written_before_the_package_move_still_loads() -> None:
    """Pulumi deserializes the provider from the old state to refresh and delete: the dynamic-provider host
    (a Python process in the project directory, with the project's virtualenv) must still find it."""
    import subprocess
    import sys

    raw = base64.b64decode(LEGACY_PROVIDER)
    assert b"components.intermediate_cert" in raw
    code = (
        "import base64, sys, dill\n"
        f"p = dill.loads(base64.b64decode({LEGACY_PROVIDER!r}))\n"
        "print(type(p).__module__, type(p).__name__)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["istio_mesh.intermediate_cert", "IntermediateCertificateProvider"]


def _short_root(days: float) -> tuple[str, str, x509.Certificate]:
    """A root that ends ``days`` after NOW (and began a day before it)."""
    return ec_root_ca(with_ski=False, days=days)


def test_an_intermediate_is_never_valid_past_its_root() -> None:
    root = _short_root(days=100)
    ca = _sign(root=root, validity_days=3650)
    assert ca.not_valid_after_utc == root[2].not_valid_after_utc  # cut to the root's end, not NOW + 10 years
    with pytest.raises(SigningError, match="the root expired on 2026-11-25T12:00:00"):
        _sign(root=_short_root(days=-1))


def test_renewal_is_due_within_the_window_and_only_when_it_helps() -> None:
    from istio_mesh.intermediate_cert import renewal_due

    root_pem = ec_root_ca()[0]  # ends NOW + 3650 days
    end = (NOW + datetime.timedelta(days=40)).isoformat()
    assert not renewal_due(end, 30, 365, root_pem, now=NOW)  # 40 days left: outside a 30-day window
    assert renewal_due(end, 30, 365, root_pem, now=NOW + datetime.timedelta(days=11))  # 29 days left
    assert not renewal_due(end, 0, 365, root_pem, now=NOW + datetime.timedelta(days=39))  # 0: never renew
    assert renewal_due(end, 4000, 3650, root_pem, now=NOW)  # a window as long as the validity: every time
    # The root ends in 40 days too: a new intermediate could not outlive the old one, so renewing is no help.
    short = _short_root(days=40)[0]
    assert not renewal_due(end, 30, 365, short, now=NOW + datetime.timedelta(days=11))


def test_provider_renews_when_due_with_the_same_inputs() -> None:
    root = ec_root_ca()
    provider = IntermediateCertificateProvider()
    props = _props(root, renew_before_days=30)
    outs = provider.create(props).outs or {}
    assert "renew_before_days" not in outs  # only decides whether to renew: never a reason by itself
    assert provider.diff("id", outs, dict(props)).changes is False
    assert provider.diff("id", outs, {**props, "renew_before_days": 60}).changes is False
    due = provider.diff("id", {**outs, "not_after": (NOW + datetime.timedelta(days=1)).isoformat()}, dict(props))
    assert due.changes is True and due.replaces == ["not_after"]
    # A window as long as the validity renews on every run ...
    short = _props(root, validity_days=365, renew_before_days=30)
    short_outs = provider.create(short).outs or {}
    forced = provider.diff("id", short_outs, {**short, "renew_before_days": 365})
    assert forced.changes is True and forced.replaces == ["not_after"]
    # ... unless the root is what ends the intermediate: then only a new root helps, and nothing is signed.
    assert provider.diff("id", outs, {**props, "renew_before_days": 3650}).changes is False
