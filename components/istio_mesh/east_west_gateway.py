"""The east-west gateway of one network, and the one Gateway that exposes services across networks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .chart_requirements import gateway_requirements
from .chart_values import chart_values
from .constants import (
    CROSS_NETWORK_GATEWAY,
    CROSS_NETWORK_PORT,
    DELETION_PROPAGATION_ANNOTATION,
    EASTWEST_RELEASE,
    EASTWEST_SELECTOR,
    ISTIO_NAMESPACE,
    PACKAGE,
    SERVICE_TYPE,
)
from .istio_control_plane import chart_args
from .options import GatewaySettings, IstioSettings
from .transforms import single_transform


@dataclass(frozen=True)
class EastWestGatewayArgs:
    """Inputs of an ``EastWestGateway``."""

    network: str
    istio: IstioSettings
    gateway: GatewaySettings
    #: Namespace of the control plane (istio-system).
    namespace: pulumi.Input[str] = ISTIO_NAMESPACE
    #: What must exist first: the control plane (the injector from ``istiod``).
    after: Sequence[pulumi.Resource] = field(default_factory=list)
    #: What the cross-network Gateway waits for besides ``after``: the ``base`` chart (the CRDs that serve
    #: its kind) and istiod's last rollout (istiod's validation webhook checks it: an istiod restarting at
    #: that moment fails the create). The gateway's chart (Deployment, Service: no Istio kind) does not wait.
    gateway_after: Sequence[pulumi.Resource] = field(default_factory=list)
    #: Every east-west gateway's ``gateway`` chart values; ``gateway.values`` are deep-merged over them (see
    #: ``chart_values``; ``MultiPrimaryMeshArgs`` refuses values that contradict the mesh's).
    mesh_values: Mapping[str, Any] = field(default_factory=dict, hash=False)


def gateway_values(args: EastWestGatewayArgs) -> dict[str, object]:
    """Helm values of the ``gateway`` chart for a network's east-west gateway: the user's (``mesh_values``,
    then ``gateway.values``) under the ones the mesh sets (``chart_requirements.gateway_requirements``).

    ``networkGateway`` makes the chart render the network label on pods and Service, the
    ``ISTIO_META_REQUESTED_NETWORK_VIEW`` env and the ports 15021/15443/15012/15017; the Service's type and
    annotations (how Pulumi waits for its address) come from ``gateway``.
    """
    requirements = gateway_requirements(network=args.network, gateway=args.gateway)
    return chart_values([args.mesh_values, args.gateway.values], requirements)


def set_external_ips(external_ips: Sequence[str]):  # type: ignore[no-untyped-def]
    """A transform giving the gateway Service ``spec.externalIPs``, as the walkthrough's ``kubectl patch`` does.

    The ``gateway`` chart has no value for externalIPs, so the rendered Service is amended before it
    is registered; the preview shows the field like any other.
    """

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if args.type_ != SERVICE_TYPE or not external_ips:
            return None
        props: dict[str, Any] = dict(args.props)
        spec = dict(props.get("spec") or {})
        spec["externalIPs"] = list(external_ips)
        props["spec"] = spec
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform


def cross_network_gateway_spec() -> dict[str, object]:
    """``samples/multicluster/expose-services.yaml``: SNI passthrough of every ``*.local`` service on 15443."""
    return {
        "selector": dict(EASTWEST_SELECTOR),
        "servers": [
            {
                "port": {"number": CROSS_NETWORK_PORT, "name": "tls", "protocol": "TLS"},
                "tls": {"mode": "AUTO_PASSTHROUGH"},
                "hosts": ["*.local"],
            }
        ],
    }


def load_balancer_address(resources: pulumi.Input[Sequence[Any] | None]) -> pulumi.Output[str]:
    """The address a load balancer gave the gateway Service among a chart's rendered ``resources``.

    The Service's own output is used, so the value is what Pulumi's Service await saw when it
    declared the Service ready (status.loadBalancer.ingress); unknown during a first preview.
    """

    def pick_status(status: Any) -> str:
        for entry in getattr(getattr(status, "load_balancer", None), "ingress", None) or []:
            if getattr(entry, "ip", None) or getattr(entry, "hostname", None):
                return str(entry.ip or entry.hostname)
        return ""

    def from_resources(items: Sequence[Any] | None) -> pulumi.Output[str]:
        services = [r for r in items or [] if isinstance(r, k8s.core.v1.Service)]
        if not services:
            return pulumi.Output.from_input("")
        return services[0].status.apply(pick_status)

    return pulumi.Output.from_input(resources).apply(from_resources)


class EastWestGateway(pulumi.ComponentResource):
    """Istio's ``gateway`` chart as ``istio-eastwestgateway`` for one network, plus ``cross-network-gateway``.

    The Service type and ``externalIPs`` are configurable. With externalIPs, or a type other than
    LoadBalancer, nothing waits for a load balancer; otherwise Pulumi waits up to
    ``load_balancer_timeout_seconds`` for one and fails naming the Service. Exactly one Gateway
    selects the east-west gateway (two would conflict on 15443).
    """

    address: pulumi.Output[str]
    """Address other networks reach this gateway at (first externalIP, or the load balancer's)."""
    network: pulumi.Output[str]
    """The network this gateway serves."""

    def __init__(self, name: str, args: EastWestGatewayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        own = [set_external_ips(args.gateway.external_ips)] if args.gateway.external_ips else []
        super().__init__(f"{PACKAGE}:index:EastWestGateway", name, None, single_transform(opts, *own))
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.after))

        chart = k8s.helm.v4.Chart(
            f"{name}-chart",
            chart_args(
                args.istio, "gateway", release=EASTWEST_RELEASE, namespace=args.namespace, values=gateway_values(args)
            ),
            opts=child,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-cross-network-gateway",
            api_version="networking.istio.io/v1",
            kind="Gateway",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=CROSS_NETWORK_GATEWAY,
                namespace=args.namespace,
                # Deleted in the background: a foreground delete ends with the garbage collector's UPDATE
                # that drops its finalizer, which istiod's validating webhook (failurePolicy Fail) must
                # admit, so with istiod down (crashed, or stopped in the lab) the delete never ends.
                # Nothing is owned by this Gateway, so the background delete leaves nothing behind.
                annotations={DELETION_PROPAGATION_ANNOTATION: "background"},
            ),
            spec=cross_network_gateway_spec(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.after, *args.gateway_after]),
        )

        if args.gateway.external_ips:
            self.address = pulumi.Output.from_input(args.gateway.external_ips[0])
        elif args.gateway.service_type == "LoadBalancer":
            # The chart's Service, once Pulumi's await saw the load balancer assign an address.
            self.address = load_balancer_address(chart.resources)
        else:
            pulumi.log.warn(
                f"{name}: service type {args.gateway.service_type} without externalIPs gives istiod no address "
                "for this network's gateway; set eastWestGateway.externalIPs to a node IP reachable from the "
                "other networks",
                resource=self,
            )
            self.address = pulumi.Output.from_input("")
        self.network = pulumi.Output.from_input(args.network)
        self.register_outputs({"address": self.address, "network": self.network})
