"""The whole mesh for N clusters: the composition ``__main__.py`` uses and other projects can import."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .constants import PACKAGE
from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
from .root_ca import RootCA
from .sample_apps import SampleApps, SampleAppsArgs
from .settings import MeshSettings


@dataclass(frozen=True)
class MultiPrimaryMeshArgs:
    """Inputs of a ``MultiPrimaryMesh``: the parsed settings and one provider per cluster name."""

    settings: MeshSettings
    providers: Mapping[str, k8s.Provider]


def helloworld_versions(index: int) -> list[str]:
    """The walkthrough's layout: helloworld v1 in the first cluster, v2 in the second, none elsewhere."""
    return [f"v{index + 1}"] if index < 2 else []


class MultiPrimaryMesh(pulumi.ComponentResource):
    """A multi-primary Istio mesh: every cluster runs istiod and reads every other cluster.

    One ``RootCA``; per cluster an ``IstioControlPlane`` (with its ``ClusterCA``) and, when the mesh
    spans more than one network, an ``EastWestGateway``; one ``RemoteSecretPair`` per pair of clusters
    (N*(N-1) remote secrets); optionally ``SampleApps``.
    """

    mesh_id: pulumi.Output[str]
    """The mesh ID shared by every istiod."""
    root_cert_pem: pulumi.Output[str]
    """The mesh root certificate (public)."""
    root_fingerprint: pulumi.Output[str]
    """SHA-256 fingerprint of the root certificate."""
    clusters: pulumi.Output[dict[str, dict[str, object]]]
    """Per cluster: network, east-west gateway address, remote secrets it holds."""

    def __init__(self, name: str, args: MultiPrimaryMeshArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{PACKAGE}:index:MultiPrimaryMesh", name, None, opts)
        s = args.settings
        missing = [c.name for c in s.clusters if c.name not in args.providers]
        if missing:
            raise ValueError(f"MultiPrimaryMesh {name!r}: no provider for clusters {missing}")

        root = RootCA(f"{name}-root-ca", s.ca, opts=pulumi.ResourceOptions(parent=self))

        planes: dict[str, IstioControlPlane] = {}
        gateways: dict[str, EastWestGateway] = {}
        for c in s.clusters:
            on_cluster = pulumi.ResourceOptions(parent=self, provider=args.providers[c.name])
            planes[c.name] = IstioControlPlane(
                f"{name}-{c.name}",
                IstioControlPlaneArgs(
                    mesh_id=s.mesh_id,
                    cluster_name=c.name,
                    network=c.network,
                    istio=s.istio,
                    root_cert_pem=root.cert_pem,
                    root_key_pem=root.key_pem,
                    intermediate_validity_days=s.ca.intermediate_validity_days,
                ),
                opts=on_cluster,
            )
            if s.multi_network:
                gateways[c.name] = EastWestGateway(
                    f"{name}-{c.name}-eastwest",
                    EastWestGatewayArgs(
                        network=c.network,
                        istio=s.istio,
                        gateway=c.gateway,
                        namespace=planes[c.name].namespace,
                        after=[planes[c.name].base, planes[c.name].istiod],
                    ),
                    opts=on_cluster,
                )

        members = {
            c.name: MeshMember(
                name=c.name,
                provider=args.providers[c.name],
                api_server=c.api_server,
                namespace=planes[c.name].namespace,
                after=[planes[c.name].base, planes[c.name].istiod],
            )
            for c in s.clusters
        }
        held: dict[str, list[pulumi.Output[str]]] = {c.name: [] for c in s.clusters}
        for a, b in itertools.combinations(s.clusters, 2):
            pair = RemoteSecretPair(
                f"{name}-{a.name}-{b.name}",
                RemoteSecretPairArgs(a=members[a.name], b=members[b.name], warn_loopback=not s.lab),
                opts=pulumi.ResourceOptions(parent=self),
            )
            held[a.name].append(pair.secret_in_a)
            held[b.name].append(pair.secret_in_b)

        if s.samples.enabled:
            for i, c in enumerate(s.clusters):
                SampleApps(
                    f"{name}-{c.name}-samples",
                    SampleAppsArgs(
                        namespace=s.samples.namespace,
                        helloworld_versions=helloworld_versions(i),
                        helloworld_image_prefix=s.samples.helloworld_image_prefix,
                        sleep_image=s.samples.sleep_image,
                        after=[planes[c.name].istiod],
                    ),
                    opts=pulumi.ResourceOptions(parent=self, provider=args.providers[c.name]),
                )

        def cluster_output(c_name: str) -> pulumi.Output[dict[str, object]]:
            gw = gateways.get(c_name)
            return pulumi.Output.all(
                network=planes[c_name].network,
                eastWestGatewayAddress=gw.address if gw else pulumi.Output.from_input(None),
                remoteSecrets=pulumi.Output.all(*held[c_name]),
            ).apply(lambda v: {k: (sorted(x) if k == "remoteSecrets" else x) for k, x in v.items()})

        self.mesh_id = pulumi.Output.from_input(s.mesh_id)
        self.root_cert_pem = root.cert_pem
        self.root_fingerprint = root.fingerprint
        self.clusters = pulumi.Output.all(**{c.name: cluster_output(c.name) for c in s.clusters}).apply(dict)
        self.register_outputs(
            {
                "mesh_id": self.mesh_id,
                "root_cert_pem": self.root_cert_pem,
                "root_fingerprint": self.root_fingerprint,
                "clusters": self.clusters,
            }
        )
