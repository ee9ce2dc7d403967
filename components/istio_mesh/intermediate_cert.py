"""An intermediate CA certificate with exactly the fields Istio's CA tooling gives one.

pulumi-tls cannot produce ``basicConstraints = critical, CA:true, pathlen:0``: its
``max_path_length`` treats 0 as "not set" (a Terraform ``GetOk``), so its intermediates may sign
further CAs. Istio's ``tools/certs`` Makefile (and ISTIO_FACTS) pin the path length to 0, so the
intermediate is signed here, with ``cryptography``, by a small Pulumi dynamic provider:

* :func:`sign_intermediate` is the signing itself: a pure function, tested directly.
* :class:`IntermediateCertificate` is the resource. Its state holds the certificate and the public
  inputs; the root key is an input only (kept encrypted in the state's inputs as a secret) and is
  never returned as an output. Any change of key, root, cluster name or validity replaces the
  certificate; so does renewal: within ``renew_before_days`` of its end, the next ``up`` signs it
  again (same key, same root). Nothing else does, so previews stay quiet and refresh reports no drift (the
  certificate lives only in Pulumi's state and in the ``cacerts`` secret, which the kubernetes
  provider refreshes).
"""

from __future__ import annotations

import datetime
import functools
from typing import Any, ClassVar

import pulumi
import pulumi.dynamic as dynamic

#: SAN of every Istio intermediate (tools/certs/common.mk): istiod serves with certs from this CA.
INTERMEDIATE_SAN = "istiod.istio-system.svc"
#: Inputs whose change means a new certificate (all of them: a certificate is never edited in place).
REPLACE_ON = ("public_key_pem", "cluster_name", "root_cert_pem", "validity_days")
#: Renew (sign again, same key) when the certificate is this close to expiry, unless told otherwise.
DEFAULT_RENEW_BEFORE_DAYS = 30
#: Who signs: this module's dynamic provider (in the Python program's own process environment), or the
#: ``istiomesh`` plugin's ``IntermediateCertificate`` resource (programs in other languages).
SIGNER_DYNAMIC = "dynamic"
SIGNER_PLUGIN = "plugin"
SIGNERS = (SIGNER_DYNAMIC, SIGNER_PLUGIN)
#: Inputs as the plugin's resource names them (its schema is camelCase), by this module's names.
PLUGIN_NAMES = {
    "public_key_pem": "publicKeyPem",
    "cluster_name": "clusterName",
    "root_cert_pem": "rootCertPem",
    "root_key_pem": "rootKeyPem",
    "validity_days": "validityDays",
    "renew_before_days": "renewBeforeDays",
    "cert_pem": "certPem",
    "not_after": "notAfter",
    "serial": "serial",
}


class SigningError(ValueError):
    """The inputs cannot make a valid intermediate (the message says which and why)."""


def sign_intermediate(
    *,
    public_key_pem: str,
    cluster_name: str,
    root_cert_pem: str,
    root_key_pem: str,
    validity_days: int,
    now: datetime.datetime | None = None,
) -> str:
    """Signs the intermediate CA certificate of ``cluster_name`` with the root; returns its PEM.

    Fields (Istio ``tools/certs``, intermediate section): subject O=Istio, CN=Intermediate CA,
    L=<cluster>; SHA-256; ``critical, CA:true, pathlen:0``; ``critical`` keyUsage digitalSignature,
    nonRepudiation, keyEncipherment, keyCertSign; SAN ``DNS:istiod.istio-system.svc``; subject and
    authority key identifiers so chain building is unambiguous. Never valid past the root: the
    validity ends at ``now + validity_days`` or at the root's own end, whichever comes first.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    if validity_days < 1:
        raise SigningError(f"validity_days must be at least 1, got {validity_days}")
    try:
        root = x509.load_pem_x509_certificate(root_cert_pem.encode())
    except ValueError as exc:
        raise SigningError(f"root_cert_pem is not a PEM certificate: {exc}") from None
    try:
        root_key = _load_private_key(root_key_pem)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"root_key_pem is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(root_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise SigningError(f"root key type {type(root_key).__name__} is not supported (RSA or ECDSA)")
    pub = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if root_key.public_key().public_bytes(*pub) != root.public_key().public_bytes(*pub):
        raise SigningError("root_key_pem is not the private key of root_cert_pem")
    try:
        public_key = serialization.load_pem_public_key(public_key_pem.encode())
    except ValueError as exc:
        raise SigningError(f"public_key_pem is not a PEM public key: {exc}") from None
    if not isinstance(public_key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise SigningError(f"intermediate key type {type(public_key).__name__} is not supported (RSA or ECDSA)")

    start = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    if start >= root.not_valid_after_utc:
        raise SigningError(f"the root expired on {root.not_valid_after_utc.isoformat()}: it can sign nothing")
    end = min(start + datetime.timedelta(days=validity_days), root.not_valid_after_utc)
    try:
        root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Istio"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
                    x509.NameAttribute(NameOID.LOCALITY_NAME, cluster_name),
                ]
            )
        )
        .issuer_name(root.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(INTERMEDIATE_SAN)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def renewal_due(
    not_after: str | None,
    renew_before_days: int | None,
    validity_days: int,
    root_cert_pem: str,
    now: datetime.datetime | None = None,
) -> bool:
    """Whether a certificate valid until ``not_after`` (ISO 8601) should be signed again now: it is within
    ``renew_before_days`` of its end, and a new one would end later (it would not, when the root's own
    end is what limits it: renewing cannot help then, only a new root can)."""
    from cryptography import x509

    if not not_after or not renew_before_days:
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    end = datetime.datetime.fromisoformat(not_after)
    if now < end - datetime.timedelta(days=renew_before_days):
        return False
    root_end = x509.load_pem_x509_certificate(root_cert_pem.encode()).not_valid_after_utc
    return min(now + datetime.timedelta(days=validity_days), root_end) > end


def renewal_due_for(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    """``renewal_due`` for a certificate's recorded outputs ``olds`` and new inputs ``news`` (the dynamic
    provider's snake_case names; the plugin's signer maps its own onto them)."""
    try:
        return renewal_due(
            olds.get("not_after"),
            int(news.get("renew_before_days") or 0),
            int(news["validity_days"]),
            news["root_cert_pem"],
        )
    except (KeyError, TypeError, ValueError):  # an input not known yet (preview): nothing to decide on
        return False


@functools.lru_cache(maxsize=4)
def _load_private_key(pem: str) -> Any:
    """Loads (and, for RSA, validates: slow for 4096 bits) a key once per process, not per cluster."""
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem.encode(), password=None)


class IntermediateCertificateProvider(dynamic.ResourceProvider):
    """CRUD for :class:`IntermediateCertificate`: create signs, every input change replaces."""

    # The provider object captures no secret, so its serialized form need not be one.
    serialize_as_secret_always = False

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        pem = sign_intermediate(
            public_key_pem=props["public_key_pem"],
            cluster_name=props["cluster_name"],
            root_cert_pem=props["root_cert_pem"],
            root_key_pem=props["root_key_pem"],
            validity_days=int(props["validity_days"]),
        )
        from cryptography import x509

        cert = x509.load_pem_x509_certificate(pem.encode())
        outs = {k: props[k] for k in REPLACE_ON}  # never the root key
        outs.update(cert_pem=pem, not_after=cert.not_valid_after_utc.isoformat(), serial=f"{cert.serial_number:x}")
        return dynamic.CreateResult(id_=outs["serial"], outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [k for k in REPLACE_ON if olds.get(k) != news.get(k)]
        if not changed and renewal_due_for(olds, news):
            changed = ["not_after"]  # renewal: the same inputs, signed again
        return dynamic.DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=False)

    def read(self, id_: str, props: dict[str, Any]) -> dynamic.ReadResult:
        # The certificate exists only in state: what was signed is what there is.
        return dynamic.ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing outside Pulumi's state to remove.
        return None


class IntermediateCertificate(dynamic.Resource, module="istiomesh", name="IntermediateCertificate"):
    """An intermediate CA certificate for one cluster, signed by the mesh root (pathlen:0).

    Type ``pulumi-python:dynamic/istiomesh:IntermediateCertificate``. The Python dynamic-provider
    plugin (``pulumi-resource-pulumi-python``, shipped with Pulumi's Python support) runs it; it
    imports this module, so the package must be importable where the program runs.
    """

    _PROVIDER: ClassVar[IntermediateCertificateProvider] = IntermediateCertificateProvider()

    cert_pem: pulumi.Output[str]
    """The certificate (PEM)."""
    not_after: pulumi.Output[str]
    """Expiry, ISO 8601 UTC."""
    serial: pulumi.Output[str]
    """Serial number, lower-case hex."""

    def __init__(
        self,
        name: str,
        *,
        public_key_pem: pulumi.Input[str],
        cluster_name: str,
        root_cert_pem: pulumi.Input[str],
        root_key_pem: pulumi.Input[str],
        validity_days: int,
        renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            self._PROVIDER,
            name,
            {
                "public_key_pem": public_key_pem,
                "cluster_name": cluster_name,
                "root_cert_pem": root_cert_pem,
                "root_key_pem": pulumi.Output.secret(root_key_pem),
                "validity_days": validity_days,
                # Not a reason to replace by itself: only whether renewal is due (see ``diff``).
                "renew_before_days": renew_before_days,
                "cert_pem": None,
                "not_after": None,
                "serial": None,
            },
            opts,
        )


class PluginIntermediateCertificate(pulumi.CustomResource):
    """The same certificate as :class:`IntermediateCertificate`, signed by the ``istiomesh`` plugin
    (``istio_mesh.plugin``): type ``istiomesh:index:IntermediateCertificate``, camelCase properties."""

    cert_pem: pulumi.Output[str]
    """The certificate (PEM)."""
    not_after: pulumi.Output[str]
    """Expiry, ISO 8601 UTC."""
    serial: pulumi.Output[str]
    """Serial number, lower-case hex."""

    def __init__(
        self,
        name: str,
        *,
        public_key_pem: pulumi.Input[str],
        cluster_name: str,
        root_cert_pem: pulumi.Input[str],
        root_key_pem: pulumi.Input[str],
        validity_days: int,
        renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        from .constants import PACKAGE, PACKAGE_VERSION

        # The plugin of this very version signs it (the one serving the component being built).
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=PACKAGE_VERSION))
        super().__init__(
            f"{PACKAGE}:index:IntermediateCertificate",
            name,
            {  # snake_case here; the engine and the plugin see the schema's camelCase (see translate_*)
                "public_key_pem": public_key_pem,
                "cluster_name": cluster_name,
                "root_cert_pem": root_cert_pem,
                "root_key_pem": pulumi.Output.secret(root_key_pem),
                "validity_days": validity_days,
                "renew_before_days": renew_before_days,
                "cert_pem": None,
                "not_after": None,
                "serial": None,
            },
            opts,
        )

    def translate_output_property(self, prop: str) -> str:
        return {v: k for k, v in PLUGIN_NAMES.items()}.get(prop, prop)

    def translate_input_property(self, prop: str) -> str:
        return PLUGIN_NAMES.get(prop, prop)
