"""Remote secrets both ways between two clusters, so each istiod can read the other's API server."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .constants import (
    CLUSTER_ANNOTATION,
    ISTIO_NAMESPACE,
    MULTICLUSTER_LABEL,
    PACKAGE,
    REMOTE_SECRET_PREFIX,
    SA_NAME_ANNOTATION,
    SA_TOKEN_SECRET_TYPE,
)
from .kubeconfig import remote_kubeconfig
from .options import READER_MESH, is_loopback_url
from .remote_reader import reader_account, token_secret_name


@dataclass(frozen=True)
class MeshMember:
    """One side of a ``RemoteSecretPair``: a cluster, its provider and how others reach it."""

    name: str
    """The cluster's name, which is istiod's cluster ID (``global.multiCluster.clusterName``)."""
    provider: k8s.Provider
    api_server: str
    """API server URL written into the kubeconfig other clusters use: must be reachable from them."""
    namespace: pulumi.Input[str] = ISTIO_NAMESPACE
    after: Sequence[pulumi.Resource] = field(default_factory=list)
    """What must exist first in this cluster before a remote secret is written into it (istio-system)."""
    reader: str = READER_MESH
    """Whose tokens peers get: ``mesh`` (``istio-mesh-reader``, see ``RemoteReader``) or ``istio``."""
    reader_ready: Sequence[pulumi.Resource] = field(default_factory=list)
    """What a token Secret for the reader account must wait for (``RemoteReader.ready``): the token
    controller deletes a token Secret whose ServiceAccount does not exist yet."""
    create_guard: pulumi.ResourceHook | None = None
    """A ``before_create`` hook for objects created in this cluster (``create_guard.refuse_existing_objects``)."""


@dataclass(frozen=True)
class RemoteSecretPairArgs:
    """Inputs of a ``RemoteSecretPair``."""

    a: MeshMember
    b: MeshMember
    #: Warn when an API server address is loopback (only the local lab runs every istiod on one host).
    warn_loopback: bool = True
    #: Generation of the reader tokens: a new value creates new tokens, recreates both remote secrets
    #: with them and then deletes the old tokens (which revokes them).
    token_generation: int = 0


def remote_secret_name(source: str) -> str:
    """``istio-remote-secret-<source>``: the name istioctl gives the secret in the READER cluster."""
    return f"{REMOTE_SECRET_PREFIX}{source}"


def kubeconfig_data(
    source: str, token_secret: str, server: str, token_data: Mapping[str, Any] | None
) -> dict[str, str]:
    """The remote secret's data: ONE key, named exactly ``source``, holding the kubeconfig (base64)."""
    if not token_data or "token" not in token_data or "ca.crt" not in token_data:
        raise RuntimeError(
            f"the token secret {ISTIO_NAMESPACE}/{token_secret} in cluster {source!r} has no "
            "token or ca.crt: the token controller (kube-controller-manager) did not fill it"
        )
    token = base64.b64decode(token_data["token"]).decode()
    kubeconfig = remote_kubeconfig(source, server, token_data["ca.crt"], token)
    return {source: base64.b64encode(kubeconfig.encode()).decode()}


def _guarded(member: MeshMember) -> pulumi.ResourceHookBinding | None:
    return pulumi.ResourceHookBinding(before_create=[member.create_guard]) if member.create_guard else None


class RemoteSecretPair(pulumi.ComponentResource):
    """What ``istioctl create-remote-secret`` does, in both directions between clusters A and B.

    For each direction (source -> reader): in the SOURCE cluster, a ``kubernetes.io/service-account-token``
    Secret for the source's reader account (``istio-mesh-reader``, or Istio's ``istio-reader-service-account``;
    created after that account; Pulumi waits until the token controller fills ``token`` and ``ca.crt``);
    its name carries the token generation, so a rotation is a create-then-delete; in the READER cluster,
    ``istio-remote-secret-<source>`` labelled ``istio/multiCluster: "true"``, annotated
    ``networking.istio.io/cluster: <source>``, with one data key ``<source>`` holding the kubeconfig.
    Every child names its provider explicitly, so each object's cluster is visible in the code.
    """

    secret_in_a: pulumi.Output[str]
    """Name of the remote secret in A (grants A's istiod access to B)."""
    secret_in_b: pulumi.Output[str]
    """Name of the remote secret in B (grants B's istiod access to A)."""

    def __init__(self, name: str, args: RemoteSecretPairArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:RemoteSecretPair", name, None, opts)
        self.secret_in_b = self._direction(name, args.a, args.b, args.warn_loopback, args.token_generation)
        self.secret_in_a = self._direction(name, args.b, args.a, args.warn_loopback, args.token_generation)
        self.register_outputs({"secret_in_a": self.secret_in_a, "secret_in_b": self.secret_in_b})

    def _direction(
        self, name: str, source: MeshMember, reader: MeshMember, warn_loopback: bool, generation: int
    ) -> pulumi.Output[str]:
        if warn_loopback and is_loopback_url(source.api_server):
            pulumi.log.warn(
                f"the remote secret for {source.name!r} in {reader.name!r} points at {source.api_server}, a loopback "
                f"address: istiod in {reader.name!r} cannot reach it unless both run on this host. Set "
                f"clusters[{source.name}].apiServer to an address reachable from {reader.name!r}.",
                resource=self,
            )
        token_name = token_secret_name(source.reader, reader.name, generation)
        token = k8s.core.v1.Secret(
            f"{name}-{source.name}-reader-token",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=token_name,
                namespace=source.namespace,
                annotations={SA_NAME_ANNOTATION: reader_account(source.reader)},
            ),
            type=SA_TOKEN_SECRET_TYPE,
            # The token controller deletes a token secret whose ServiceAccount does not exist yet.
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=source.provider,
                depends_on=[*source.after, *source.reader_ready],
                hooks=_guarded(source),
            ),
        )
        data: pulumi.Output[dict[str, str]] = token.data.apply(
            lambda d: kubeconfig_data(source.name, token_name, source.api_server, d)
        )
        remote = k8s.core.v1.Secret(
            f"{name}-{source.name}-remote-secret-in-{reader.name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=remote_secret_name(source.name),
                namespace=reader.namespace,
                labels={MULTICLUSTER_LABEL: "true"},
                annotations={CLUSTER_ANNOTATION: source.name},
            ),
            type="Opaque",
            data=pulumi.Output.secret(data),  # type: ignore[arg-type]  # (SDK generic infers Never here)
            opts=pulumi.ResourceOptions(
                parent=self, provider=reader.provider, depends_on=list(reader.after), hooks=_guarded(reader)
            ),
        )
        return remote.metadata.name
