"""The mesh's root of trust: one root CA that every cluster's intermediate chains to."""

from __future__ import annotations

import pulumi
import pulumi_tls as tls

from .constants import PACKAGE
from .fingerprint import pem_fingerprint
from .options import CASettings

#: keyUsage of Istio's root and intermediate CAs (tools/certs/common.mk): digitalSignature,
#: nonRepudiation (RFC 5280 "content commitment"), keyEncipherment, keyCertSign.
CA_KEY_USAGES = ["digital_signature", "content_commitment", "key_encipherment", "cert_signing"]
#: RSA size of Istio's CA tooling for both the root and the intermediates.
CA_RSA_BITS = 4096


class RootCA(pulumi.ComponentResource):
    """The root CA (O=Istio, CN=Root CA, RSA 4096, SHA-256, 10 years), generated or imported.

    Generated: a pulumi-tls private key and self-signed certificate, protected against deletion unless
    ``CASettings.protect`` is false. Imported: the certificate and (secret) key from config. Either way
    the key only ever signs intermediates: it is never written into a cluster and is exposed only as a
    secret Output. External: only the certificate; the key stays offline (``key_pem`` is ``None``) and
    the intermediates come from config (``CASettings.intermediates``).
    """

    cert_pem: pulumi.Output[str]
    """The root certificate (PEM): public, it becomes every cluster's ``root-cert.pem``."""
    key_pem: pulumi.Output[str] | None
    """The root private key (PEM), always a secret Output; ``None`` for an external CA."""
    fingerprint: pulumi.Output[str]
    """SHA-256 fingerprint of the root certificate, for checking a cluster's trust anchor by eye."""

    def __init__(self, name: str, args: CASettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:RootCA", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=args.protect)

        if args.source == "external":
            assert args.root_cert_pem, "settings validation guarantees an external root certificate"
            self.cert_pem = pulumi.Output.from_input(args.root_cert_pem)
            self.key_pem = None
        elif args.source == "import":
            assert args.root_cert_pem and args.root_key_pem, "settings validation guarantees an imported root"
            self.cert_pem = pulumi.Output.from_input(args.root_cert_pem)
            self.key_pem = pulumi.Output.secret(args.root_key_pem)
        else:
            key = tls.PrivateKey(f"{name}-key", algorithm="RSA", rsa_bits=CA_RSA_BITS, opts=child)
            cert = tls.SelfSignedCert(
                f"{name}-cert",
                private_key_pem=key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(organization="Istio", common_name="Root CA"),
                validity_period_hours=args.root_validity_days * 24,
                is_ca_certificate=True,
                allowed_uses=CA_KEY_USAGES,
                opts=child,
            )
            self.cert_pem = cert.cert_pem
            self.key_pem = pulumi.Output.secret(key.private_key_pem)

        self.fingerprint = self.cert_pem.apply(pem_fingerprint)
        self.register_outputs({"cert_pem": self.cert_pem, "key_pem": self.key_pem, "fingerprint": self.fingerprint})
