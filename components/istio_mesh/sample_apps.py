"""The walkthrough's check workloads: helloworld (one version per cluster) and sleep."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from .constants import NETWORK_LABEL, PACKAGE, PATCH_FORCE_ANNOTATION, SKIP_AWAIT_ANNOTATION

HELLOWORLD_PORT = 5000


@dataclass(frozen=True)
class SampleAppsArgs:
    """Inputs of ``SampleApps`` for one cluster."""

    namespace: str
    #: helloworld versions to run here ("v1" in the first cluster, "v2" in the second); may be empty.
    helloworld_versions: Sequence[str]
    helloworld_image_prefix: str = "docker.io/istio/examples-helloworld"
    sleep_image: str = "curlimages/curl:8.16.0"
    #: The cluster's network, put on the pods' template as ``topology.istio.io/network``. The sidecar
    #: injector stamps that label on every pod it injects, with the network it was configured with then,
    #: and istiod places a pod's endpoints on the network its label names: after a network change, pods
    #: injected before it stay on the old network until they are recreated. Naming the network in the
    #: template makes a change of it an update of these Deployments (shown in the preview), which rolls
    #: their pods onto the new network. None: no label (the injector's stamp alone).
    network: str | None = None
    #: The control plane (sidecar injector) must exist before pods are created.
    after: Sequence[pulumi.Resource] = field(default_factory=list)


def _labels(app: str, version: str | None = None) -> dict[str, str]:
    return {"app": app, **({"version": version} if version else {})}


def _pod_labels(selector: dict[str, str], network: str | None) -> dict[str, str]:
    """The pod template's labels: the selector's, and the network the pods belong to (see SampleAppsArgs)."""
    return {**selector, **({NETWORK_LABEL: network} if network else {})}


class SampleApps(pulumi.ComponentResource):
    """An injection-enabled namespace with the ``helloworld`` Service (in every cluster, so the name
    resolves everywhere), this cluster's helloworld versions, and ``sleep`` to send requests from.

    The Services are not awaited (the Deployments are): where no helloworld version runs locally, the
    Service's endpoints live only in other clusters.
    """

    namespace: pulumi.Output[str]
    """Namespace of the samples."""

    def __init__(self, name: str, args: SampleAppsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:SampleApps", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace,
                labels={"istio-injection": "enabled"},
                annotations={PATCH_FORCE_ANNOTATION: "true"},  # the injection label is restored by `up --refresh`
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        ns_name = ns.metadata.name
        # Not awaited (see constants.SKIP_AWAIT_ANNOTATION): the Deployments' awaits establish that the pods are
        # ready, and where no version runs here the endpoints live only in other clusters.
        svc_annotations = {SKIP_AWAIT_ANNOTATION: "true"}
        k8s.core.v1.Service(
            f"{name}-helloworld",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="helloworld",
                namespace=ns_name,
                labels={**_labels("helloworld"), "service": "helloworld"},
                annotations=svc_annotations,
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=_labels("helloworld"),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=HELLOWORLD_PORT, target_port=HELLOWORLD_PORT)],
            ),
            opts=child,
        )
        # The pods' network label is the program's to decide (see SampleAppsArgs.network): one changed by
        # hand (another field manager) is taken back by `up --refresh` instead of failing it with a
        # server-side-apply conflict.
        deployment_annotations = {PATCH_FORCE_ANNOTATION: "true"}
        for version in args.helloworld_versions:
            labels = _labels("helloworld", version)
            k8s.apps.v1.Deployment(
                f"{name}-helloworld-{version}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"helloworld-{version}", namespace=ns_name, labels=labels, annotations=deployment_annotations
                ),
                spec=k8s.apps.v1.DeploymentSpecArgs(
                    replicas=1,
                    selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
                    template=k8s.core.v1.PodTemplateSpecArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(labels=_pod_labels(labels, args.network)),
                        spec=k8s.core.v1.PodSpecArgs(
                            containers=[
                                k8s.core.v1.ContainerArgs(
                                    name="helloworld",
                                    image=f"{args.helloworld_image_prefix}-{version}:1.0",
                                    ports=[k8s.core.v1.ContainerPortArgs(container_port=HELLOWORLD_PORT)],
                                )
                            ]
                        ),
                    ),
                ),
                opts=child,
            )
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sleep-sa", metadata=k8s.meta.v1.ObjectMetaArgs(name="sleep", namespace=ns_name), opts=child
        )
        k8s.core.v1.Service(
            f"{name}-sleep",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="sleep",
                namespace=ns_name,
                labels=_labels("sleep"),
                annotations={SKIP_AWAIT_ANNOTATION: "true"},
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=_labels("sleep"), ports=[k8s.core.v1.ServicePortArgs(name="http", port=80)]
            ),
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-sleep",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name="sleep", namespace=ns_name, labels=_labels("sleep"), annotations=deployment_annotations
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=_labels("sleep")),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=_pod_labels(_labels("sleep"), args.network)),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=sa.metadata.name,
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="sleep", image=args.sleep_image, command=["/bin/sleep", "infinity"]
                            )
                        ],
                    ),
                ),
            ),
            opts=child,
        )
        self.namespace = ns_name
        self.register_outputs({"namespace": self.namespace})
