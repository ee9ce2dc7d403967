"""The account every other cluster's istiod uses to read this cluster: narrow by default.

Istio's own reader (``istio-reader-service-account``, bound by the istiod chart to
``istio-reader-clusterrole-istio-system``) may get/list/watch every Secret in the cluster: ``cacerts``
(whose key mints any workload identity) and the other clusters' remote secrets among them, so one
leaked remote secret is the whole mesh. ``RemoteReader`` creates, per cluster, a ServiceAccount and a
ClusterRole of this program's own that grant exactly what a primary istiod reads from a peer for
multi-primary service discovery (``READER_RULES``), and no Secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from .constants import (
    ISTIO_NAMESPACE,
    MESH_CONFIG_MAP,
    MESH_READER,
    PACKAGE,
    READ,
    READER_RULES,
    READER_SERVICE_ACCOUNT,
    SECRET_RULE,
)
from .options import READER_ISTIO, READER_MESH


@dataclass(frozen=True)
class RemoteReaderArgs:
    """Inputs of a ``RemoteReader``."""

    #: ``mesh`` (the narrow account, created here) or ``istio`` (Istio's reader, rendered by its charts:
    #: nothing is created; ``MultiPrimaryMesh`` makes no ``RemoteReader`` then).
    reader: str = READER_MESH
    namespace: pulumi.Input[str] = ISTIO_NAMESPACE
    #: Let peers list and watch Secrets (``SECRET_RULE``): istiod needs it to report the peer synced and
    #: to finish a kubeconfig rotation; without it, service discovery still works (see README).
    read_secrets: bool = True
    #: What must exist first: for ``istio``, the charts that render Istio's reader account.
    after: Sequence[pulumi.Resource] = field(default_factory=list)


def reader_account(reader: str) -> str:
    """The ServiceAccount whose tokens the remote secrets carry."""
    return READER_SERVICE_ACCOUNT if reader == READER_ISTIO else MESH_READER


def token_secret_name(reader: str, peer: str, generation: int = 0) -> str:
    """The token Secret, in the cluster being read, for the istiod of ``peer``.

    Generation 0 of Istio's reader keeps the name earlier versions gave it (``istio-reader-token-<peer>``),
    so stacks that keep ``reader: istio`` see no change; every generation has a name of its own, so a
    rotation creates the new token before the remote secret moves to it and deletes the old one after.
    """
    base = f"istio-reader-token-{peer}" if reader == READER_ISTIO else f"{MESH_READER}-token-{peer}"
    return base if generation == 0 else f"{base}-g{generation}"


class RemoteReader(pulumi.ComponentResource):
    """The account peers read this cluster with: ServiceAccount, ClusterRole and ClusterRoleBinding
    ``istio-mesh-reader`` (rules: ``READER_RULES``), or, with ``reader='istio'``, Istio's own reader
    (nothing created here). Bind it to the cluster's provider with ``opts``.
    """

    service_account: pulumi.Output[str]
    """The ServiceAccount peers' tokens belong to."""
    ready: list[pulumi.Resource]
    """What a token Secret must wait for: the account and its binding."""

    def __init__(self, name: str, args: RemoteReaderArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:RemoteReader", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))
        if args.reader == READER_ISTIO:
            self.service_account = pulumi.Output.from_input(READER_SERVICE_ACCOUNT)
            self.ready = list(args.after)
        else:
            labels = {"app.kubernetes.io/name": MESH_READER, "app.kubernetes.io/part-of": "istio-mesh"}
            sa = k8s.core.v1.ServiceAccount(
                f"{name}-account",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MESH_READER, namespace=args.namespace, labels=labels),
                automount_service_account_token=False,
                opts=child,
            )
            role = k8s.rbac.v1.ClusterRole(
                f"{name}-role",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MESH_READER, labels=labels),
                rules=[
                    k8s.rbac.v1.PolicyRuleArgs(api_groups=list(g), resources=list(r), verbs=list(READ))
                    for g, r in (*READER_RULES, *([SECRET_RULE] if args.read_secrets else []))
                ],
                opts=child,
            )
            binding = k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-binding",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MESH_READER, labels=labels),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role.metadata.name
                ),
                subjects=[
                    k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa.metadata.name, namespace=args.namespace)
                ],
                opts=child,
            )
            config_role = k8s.rbac.v1.Role(
                f"{name}-mesh-config-role",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MESH_READER, namespace=args.namespace, labels=labels),
                rules=[
                    k8s.rbac.v1.PolicyRuleArgs(
                        api_groups=[""], resources=["configmaps"], resource_names=[MESH_CONFIG_MAP], verbs=list(READ)
                    )
                ],
                opts=child,
            )
            config_binding = k8s.rbac.v1.RoleBinding(
                f"{name}-mesh-config-binding",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MESH_READER, namespace=args.namespace, labels=labels),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="Role", name=config_role.metadata.name
                ),
                subjects=[
                    k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa.metadata.name, namespace=args.namespace)
                ],
                opts=child,
            )
            self.service_account = sa.metadata.name
            self.ready = [sa, binding, config_binding]
        self.register_outputs({"service_account": self.service_account})
