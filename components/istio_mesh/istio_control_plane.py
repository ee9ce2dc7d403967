"""One cluster's Istio control plane: network-labelled namespace, plugged-in CA, base and istiod."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .chart_requirements import istiod_requirements
from .chart_values import chart_values
from .cluster_ca import ClusterCA, ClusterCAArgs
from .constants import (
    CACERTS_UID_ANNOTATION,
    ISTIO_NAMESPACE,
    ISTIOD_DEPLOYMENT,
    NETWORK_LABEL,
    PACKAGE,
    PATCH_FORCE_ANNOTATION,
    SERVICE_TYPE,
    SKIP_AWAIT_ANNOTATION,
    TIMEOUT_ANNOTATION,
)
from .intermediate_cert import DEFAULT_RENEW_BEFORE_DAYS, SIGNER_DYNAMIC
from .options import ExternalIntermediate, IstioSettings
from .rotation import MULTI_ROOT_VALUES
from .transforms import delete_crds_on_destroy, ignore_istiod_managed_fields, single_transform


@dataclass(frozen=True)
class IstioControlPlaneArgs:
    """Inputs of an ``IstioControlPlane``."""

    mesh_id: str
    cluster_name: str
    network: str
    istio: IstioSettings
    #: Root CA the cluster's intermediate is signed by. ``None`` means the ``cacerts`` secret is
    #: managed elsewhere (e.g. by your own PKI) and must exist before this runs.
    root_cert_pem: pulumi.Input[str] | None = None
    root_key_pem: pulumi.Input[str] | None = None
    intermediate_validity_days: int = 3650
    intermediate_renew_before_days: int = DEFAULT_RENEW_BEFORE_DAYS
    #: An intermediate signed elsewhere (``ca.source: external``): used instead of signing one.
    external_intermediate: ExternalIntermediate | None = None
    #: Who signs the intermediate (see ``MultiPrimaryMeshArgs.intermediate_signer``).
    intermediate_signer: str = SIGNER_DYNAMIC
    #: Istio's CRDs (the ``base`` chart) before istiod: Istio's upgrade order, and the default. False only
    #: where the cluster has no Istio yet (``install_order.crds_first`` asks it): istiod first, the CRDs
    #: while its rollout is awaited.
    crds_first: pulumi.Input[bool] = True
    #: This cluster's own ``istiod`` chart values, deep-merged over ``istio.values`` (see ``chart_values``;
    #: ``MultiPrimaryMeshArgs`` refuses values that contradict the mesh's, which go over them regardless).
    cluster_values: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: ``root-cert.pem`` when it holds more than ``root_cert_pem`` (a root rotation, see ``rotation``).
    trust_bundle_pem: pulumi.Input[str] | None = None
    #: The generation of ``root_cert_pem`` (names the intermediate, see ``ClusterCAArgs.generation``).
    intermediate_generation: int = 0
    #: The generation of the intermediate's key (``CASettings.intermediate_generation``).
    intermediate_key_generation: int = 0
    #: istiod and proxies set up for root rotations (``rotation.MULTI_ROOT_VALUES``).
    multi_root: bool = False


def chart_args(
    istio: IstioSettings, chart: str, *, release: str, namespace: pulumi.Input[str], values: dict[str, object]
) -> k8s.helm.v4.ChartArgs:
    """Arguments of a Helm v4 ``Chart`` for ``chart`` from the configured source (repository or directory)."""
    if istio.charts.directory:
        return k8s.helm.v4.ChartArgs(chart=istio.charts.chart(chart), name=release, namespace=namespace, values=values)
    return k8s.helm.v4.ChartArgs(
        chart=chart,
        version=istio.version,
        repository_opts=k8s.helm.v4.RepositoryOptsArgs(repo=istio.charts.repository),
        name=release,
        namespace=namespace,
        values=values,
    )


def istiod_values(args: IstioControlPlaneArgs) -> dict[str, object]:
    """Helm values of the ``istiod`` chart: the user's (``istio.values``, then ``cluster_values``) under the
    ones the mesh sets (hub, tag, and the three settings multi-cluster depends on: mesh ID, cluster name,
    network; ``chart_requirements.istiod_requirements``).

    Without ``global.multiCluster.clusterName`` istiod's CLUSTER_ID is ``Kubernetes`` and remote
    secrets keyed by the real name are ignored: the classic silent failure.
    """
    requirements = istiod_requirements(
        mesh_id=args.mesh_id,
        cluster_name=args.cluster_name,
        network=args.network,
        hub=args.istio.hub,
        tag=args.istio.tag,
    )
    # Over the user's values: a rotation depends on them.
    rotation = [MULTI_ROOT_VALUES] if args.multi_root else []
    return chart_values([args.istio.values, args.cluster_values, *rotation], requirements)


def services_are_not_awaited(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Skips Pulumi's Service await for the control plane's Services (istiod's): see ``SKIP_AWAIT_ANNOTATION``.

    Set on the rendered object rather than through the chart's ``serviceAnnotations`` value: the chart
    copies its values into the ``values`` ConfigMap, whose data Pulumi treats as immutable, so a new
    value would replace that ConfigMap in every existing stack.
    """
    if args.type_ != SERVICE_TYPE:
        return None
    props: dict[str, Any] = dict(args.props)
    metadata = dict(props.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    if SKIP_AWAIT_ANNOTATION in annotations or TIMEOUT_ANNOTATION in annotations:
        return None  # the object says how it is awaited (e.g. a gateway's load balancer)
    annotations[SKIP_AWAIT_ANNOTATION] = "true"
    metadata["annotations"] = annotations
    props["metadata"] = metadata
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


class IstioControlPlane(pulumi.ComponentResource):
    """Installs Istio as a primary in one cluster of a multi-network mesh.

    Creates ``istio-system`` labelled ``topology.istio.io/network=<network>``, the cluster's
    ``ClusterCA`` (the ``cacerts`` secret), then Istio's ``base`` chart and the ``istiod`` chart with
    mesh ID, cluster name and network. istiod depends on ``cacerts``: istiod mounts it as optional and
    would silently fall back to a self-signed CA if it started first. Charts are rendered per object
    (Helm v4 ``Chart``), so previews show each Kubernetes object's diff.
    """

    namespace: pulumi.Output[str]
    """The control plane's namespace (istio-system)."""
    cluster_name: pulumi.Output[str]
    """istiod's cluster ID."""
    network: pulumi.Output[str]
    """The network this cluster's workloads are on."""
    intermediate_cert_pem: pulumi.Output[str | None]
    """The cluster's intermediate CA certificate (None when ``cacerts`` is managed elsewhere)."""
    base: k8s.helm.v4.Chart
    """The ``base`` chart (CRDs, the reader ServiceAccount): for ``depends_on``."""
    istiod: k8s.helm.v4.Chart
    """The ``istiod`` chart: for ``depends_on`` (webhooks, reader ClusterRole, istiod itself)."""
    istiod_rollouts: list[pulumi.Resource]
    """What changes istiod's Deployment after the chart (the ``cacerts`` uid patch, which rolls it): what
    istiod's webhooks must answer waits for these too, so no istiod restart falls in between."""

    def __init__(self, name: str, args: IstioControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        # The drift rule (webhooks) and, unless the CRDs are kept, the CRD delete rule reach the charts'
        # objects through this component: one engine callback per object with the inherited ones.
        own = [ignore_istiod_managed_fields, services_are_not_awaited] + (
            [] if args.istio.keep_crds else [delete_crds_on_destroy]
        )
        super().__init__(f"{PACKAGE}:index:IstioControlPlane", name, None, single_transform(opts, *own))
        child = pulumi.ResourceOptions(parent=self)

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ISTIO_NAMESPACE,
                labels={NETWORK_LABEL: args.network},
                # istiod reads its network from this label: `up --refresh` must restore it whoever changed it.
                annotations={PATCH_FORCE_ANNOTATION: "true"},
            ),
            opts=child,
        )
        ca_deps: list[pulumi.Resource] = []
        ca: ClusterCA | None = None
        self.intermediate_cert_pem = pulumi.Output.from_input(None)
        if args.root_cert_pem is not None and (args.root_key_pem is not None or args.external_intermediate):
            ca = ClusterCA(
                f"{name}-ca",
                ClusterCAArgs(
                    cluster_name=args.cluster_name,
                    namespace=ns.metadata.name,
                    root_cert_pem=args.root_cert_pem,
                    root_key_pem=args.root_key_pem,
                    validity_days=args.intermediate_validity_days,
                    renew_before_days=args.intermediate_renew_before_days,
                    external=args.external_intermediate,
                    signer=args.intermediate_signer,
                    trust_bundle_pem=args.trust_bundle_pem,
                    generation=args.intermediate_generation,
                    key_generation=args.intermediate_key_generation,
                ),
                opts=child,
            )
            ca_deps.append(ca.secret)
            self.intermediate_cert_pem = ca.cert_pem

        # Which chart waits for the other is known once the cluster has said whether Istio is in it
        # (``install_order``); each chart's registration waits for that answer, then for the other chart.
        first = pulumi.Output.from_input(args.crds_first)
        self.base = k8s.helm.v4.Chart(
            f"{name}-base",
            chart_args(
                args.istio,
                "base",
                release="istio-base",
                namespace=ns.metadata.name,
                values={"global": {"istioNamespace": ISTIO_NAMESPACE}},
            ),
            # (``self.istiod`` exists by the time the answer arrives: outputs resolve after __init__.)
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=first.apply(lambda f: [] if f else [self.istiod]))
            ),
        )
        self.istiod = k8s.helm.v4.Chart(
            f"{name}-istiod",
            chart_args(args.istio, "istiod", release="istiod", namespace=ns.metadata.name, values=istiod_values(args)),
            # cacerts BEFORE istiod (ISTIO_FACTS: a missing cacerts means a self-signed CA, silently).
            opts=pulumi.ResourceOptions.merge(
                child,
                pulumi.ResourceOptions(depends_on=first.apply(lambda f: [self.base, *ca_deps] if f else ca_deps)),
            ),
        )
        self.istiod_rollouts = []
        if ca is not None:
            # istiod reads a plugged-in CA when it starts, and one that appears later (cacerts created
            # after istiod, or recreated after someone deleted it) is not picked up: istiod keeps its
            # self-signed CA. The walkthrough's answer is `kubectl rollout restart`; here the pod
            # template carries the cacerts Secret's uid, so whenever Pulumi (re)creates the secret the
            # Deployment rolls. (Changing a secret in place keeps the uid: istiod hot-reloads that.)
            rollout = k8s.apps.v1.DeploymentPatch(
                f"{name}-istiod-cacerts-rollout",
                metadata=k8s.meta.v1.ObjectMetaPatchArgs(name=ISTIOD_DEPLOYMENT, namespace=ns.metadata.name),
                spec=k8s.apps.v1.DeploymentSpecPatchArgs(
                    template=k8s.core.v1.PodTemplateSpecPatchArgs(
                        metadata=k8s.meta.v1.ObjectMetaPatchArgs(
                            annotations={CACERTS_UID_ANNOTATION: ca.secret.metadata.uid}
                        )
                    )
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.istiod, ca.secret]),
            )
            self.istiod_rollouts.append(rollout)
        self.namespace = ns.metadata.name
        self.cluster_name = pulumi.Output.from_input(args.cluster_name)
        self.network = pulumi.Output.from_input(args.network)
        self.register_outputs(
            {
                "namespace": self.namespace,
                "cluster_name": self.cluster_name,
                "network": self.network,
                "intermediate_cert_pem": self.intermediate_cert_pem,
            }
        )
