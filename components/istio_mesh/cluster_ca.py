"""A cluster's intermediate CA and the ``cacerts`` secret istiod plugs in."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from .constants import (
    CA_CERT_KEY,
    CA_KEY_KEY,
    CACERTS_SECRET,
    CERT_CHAIN_KEY,
    PACKAGE,
    PATCH_FORCE_ANNOTATION,
    ROOT_CERT_KEY,
)
from .intermediate_cert import (
    DEFAULT_RENEW_BEFORE_DAYS,
    INTERMEDIATE_SAN,
    SIGNER_PLUGIN,
    IntermediateCertificate,
    PluginIntermediateCertificate,
)
from .options import ExternalIntermediate
from .root_ca import CA_RSA_BITS
from .rotation import intermediate_name, split_pems

__all__ = ["INTERMEDIATE_SAN", "ClusterCA", "ClusterCAArgs"]


@dataclass(frozen=True)
class ClusterCAArgs:
    """Inputs of a ``ClusterCA``."""

    cluster_name: str
    #: Namespace the ``cacerts`` secret goes into (istio-system): pass the Namespace's output name.
    namespace: pulumi.Input[str]
    root_cert_pem: pulumi.Input[str]
    #: The root key signs a new intermediate; ``None`` when ``external`` gives one signed elsewhere.
    root_key_pem: pulumi.Input[str] | None = None
    validity_days: int = 3650
    #: ``up`` signs the intermediate again (same key, same root) this many days before it expires.
    renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS
    #: An intermediate signed outside this program (certificate, chain to the root, secret key): written
    #: into ``cacerts`` as given; nothing is signed and no root key is needed.
    external: ExternalIntermediate | None = None
    #: ``dynamic``: the Python dynamic provider signs; ``plugin``: the istiomesh plugin's resource does.
    signer: str = "dynamic"
    #: ``root-cert.pem``, when it is not just ``root_cert_pem``: every root the cluster trusts (a root
    #: rotation's bundle, see ``rotation``). ``root_cert_pem`` is then the one the intermediate chains to.
    trust_bundle_pem: pulumi.Input[str] | None = None
    #: The generation of the root that signs the intermediate: names its key and certificate
    #: (``rotation.intermediate_name``), so a rotation's new intermediate is a new resource with a new key.
    generation: int = 0
    #: Raise to replace the intermediate's key (a new intermediate under the same root).
    key_generation: int = 0


def _chain(cert: str, between: str, root: str) -> str:
    """``cert-chain.pem``: the intermediate, any certificates between it and the root, then the root
    (once, even if ``between`` already ends with it)."""
    middle = [p.strip() for p in split_pems(between) if p.strip() != root.strip()]
    if not middle:
        return cert.rstrip("\n") + "\n" + root  # (byte for byte what earlier versions wrote)
    return "\n".join([cert.strip(), *middle, root.strip()]) + "\n"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


class ClusterCA(pulumi.ComponentResource):
    """An intermediate CA for one cluster, signed by the mesh root, written as ``cacerts``.

    Intermediate: RSA 4096, O=Istio, CN=Intermediate CA, L=<cluster>, CA:true with pathlen:0, SAN
    ``istiod.istio-system.svc``. The secret holds exactly ``ca-cert.pem``, ``ca-key.pem``,
    ``root-cert.pem`` and ``cert-chain.pem`` (intermediate then root); the root KEY never leaves
    Pulumi. Bind it to the cluster's provider with ``opts=ResourceOptions(provider=...)``.
    """

    cert_pem: pulumi.Output[str]
    """The intermediate certificate (PEM)."""
    secret_name: pulumi.Output[str]
    """Name of the ``cacerts`` secret in the cluster."""
    secret: k8s.core.v1.Secret
    """The ``cacerts`` secret, for ``depends_on`` (istiod must start after it exists)."""

    def __init__(self, name: str, args: ClusterCAArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:ClusterCA", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        cert_pem: pulumi.Output[str]
        key_pem: pulumi.Output[str]
        between = ""  # certificates between the intermediate and the root
        if args.external is not None:
            cert_pem = pulumi.Output.from_input(args.external.cert_pem)
            key_pem = pulumi.Output.secret(args.external.key_pem)
            between = args.external.chain_pem
        else:
            if args.root_key_pem is None:
                raise ValueError(f"ClusterCA {name!r}: give root_key_pem (to sign an intermediate) or external")
            prefix = intermediate_name(name, args.generation, args.key_generation)
            key = tls.PrivateKey(f"{prefix}-key", algorithm="RSA", rsa_bits=CA_RSA_BITS, opts=child)
            # Signed by our own dynamic provider, not tls.LocallySignedCert: only this way does the
            # intermediate get pathlen:0 (see intermediate_cert.py).
            signer = PluginIntermediateCertificate if args.signer == SIGNER_PLUGIN else IntermediateCertificate
            cert = signer(
                f"{prefix}-cert",
                public_key_pem=key.public_key_pem,
                cluster_name=args.cluster_name,
                root_cert_pem=args.root_cert_pem,
                root_key_pem=args.root_key_pem,
                validity_days=args.validity_days,
                renew_before_days=args.renew_before_days,
                opts=child,
            )
            cert_pem, key_pem = cert.cert_pem, key.private_key_pem
        root = pulumi.Output.from_input(args.root_cert_pem)
        chain = pulumi.Output.all(cert_pem, root).apply(lambda pems: _chain(pems[0], between, pems[1]))
        trusted = root if args.trust_bundle_pem is None else pulumi.Output.from_input(args.trust_bundle_pem)
        data: pulumi.Output[dict[str, str]] = pulumi.Output.all(cert_pem, key_pem, trusted, chain).apply(
            lambda v: {
                CA_CERT_KEY: _b64(v[0]),
                CA_KEY_KEY: _b64(v[1]),
                ROOT_CERT_KEY: _b64(v[2]),
                CERT_CHAIN_KEY: _b64(v[3]),
            }
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-cacerts",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=CACERTS_SECRET,
                namespace=args.namespace,
                # This stack's cacerts is this stack's: applied over any other field manager, i.e. drift
                # repaired, and a take-back after a lost state (same root, new intermediate: the create guard
                # refuses any other) applied rather than refused as a server-side-apply field conflict.
                annotations={PATCH_FORCE_ANNOTATION: "true"},
            ),
            type="Opaque",
            data=pulumi.Output.secret(data),  # type: ignore[arg-type]  # (SDK generic infers Never here)
            opts=child,
        )
        self.cert_pem = cert_pem
        self.secret_name = self.secret.metadata.name
        self.register_outputs({"cert_pem": self.cert_pem, "secret_name": self.secret_name})
