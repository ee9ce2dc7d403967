"""The whole mesh for N clusters: the composition ``__main__.py`` uses and other projects can import."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .constants import PACKAGE
from .create_guard import ClusterObjects, guard_creates, mark_created_by, refuse_existing_objects
from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
from .remote_reader import RemoteReader, RemoteReaderArgs
from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
from .root_ca import RootCA
from .sample_apps import SampleApps, SampleAppsArgs
from .settings import READER_ISTIO, MeshSettings


@dataclass(frozen=True)
class MultiPrimaryMeshArgs:
    """Inputs of a ``MultiPrimaryMesh``: the parsed settings and one provider per cluster name."""

    settings: MeshSettings
    providers: Mapping[str, k8s.Provider]
    #: Refuse to create a Kubernetes object that already exists (see ``create_guard``): on by default;
    #: off only for a deliberate adoption of objects made elsewhere.
    refuse_existing_objects: bool = True


def pair_name(name: str, a: str, b: str) -> str:
    """The logical name of the ``RemoteSecretPair`` of clusters ``a`` and ``b``: the two names sorted, so
    it is the same whatever order the clusters are listed in."""
    first, second = sorted((a, b))
    return f"{name}-{first}-{second}"


def pair_aliases(name: str, previous_names: Sequence[str], a: str, b: str) -> list[pulumi.Alias]:
    """Names a pair may have in existing state: before names were sorted it was ``<mesh>-<a>-<b>`` in list
    order, under this mesh's name or a previous one (the mesh's own aliases)."""
    current = pair_name(name, a, b)
    candidates = [f"{n}-{x}-{y}" for n in (name, *previous_names) for x, y in ((a, b), (b, a))]
    return [pulumi.Alias(name=c) for c in dict.fromkeys(candidates) if c != current]


def alias_names(opts: pulumi.ResourceOptions | None) -> list[str]:
    """The plain names among ``opts.aliases`` (``Alias(name=...)``): the names this resource had before."""
    names = []
    for alias in (opts.aliases if opts else None) or []:
        if isinstance(alias, pulumi.Alias) and isinstance(alias.name, str):
            names.append(alias.name)
    return names


class MultiPrimaryMesh(pulumi.ComponentResource):
    """A multi-primary Istio mesh: every cluster runs istiod and reads every other cluster.

    One ``RootCA``; per cluster an ``IstioControlPlane`` (with its ``ClusterCA``), a ``RemoteReader`` (the
    narrow account peers read it with) and, when the mesh spans more than one network, an
    ``EastWestGateway``; one ``RemoteSecretPair`` per pair of clusters
    (N*(N-1) remote secrets); optionally ``SampleApps``. Clusters marked ``unreachable`` are not members:
    nothing is built for them, so their objects leave the state (see ``providers.cluster_provider``).

    Every logical name comes from what a resource is (``<name>-<cluster>``, ``<name>-<a>-<b>`` with the
    pair's names sorted), never from list positions or settings, so reordering ``clusters`` or changing
    ``meshId`` changes nothing's identity. A mesh renamed with ``aliases=[Alias(name=old)]`` keeps its
    state: children follow by Pulumi's alias inheritance (their names start with the mesh's name), and
    pairs get explicit aliases for every order they may have been named in.
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
        missing = [c.name for c in s.members if c.name not in args.providers]
        if missing:
            raise ValueError(f"MultiPrimaryMesh {name!r}: no provider for clusters {missing}")

        root = RootCA(f"{name}-root-ca", s.ca, opts=pulumi.ResourceOptions(parent=self))
        if s.ca.renew_before_days >= s.ca.intermediate_validity_days:
            pulumi.log.warn(
                f"ca.renewBeforeDays ({s.ca.renew_before_days}) is not less than ca.intermediateValidityDays "
                f"({s.ca.intermediate_validity_days}): every `up` signs new intermediates and rolls every istiod "
                "(unless the root's own expiry is what ends them)",
                resource=self,
            )

        # One create guard per cluster: creating an object that already exists there fails, naming it.
        guards = {
            c.name: refuse_existing_objects(
                f"{name}-{c.name}-refuse-existing-objects", c.name, ClusterObjects(c.name, c.kubeconfig, c.context)
            )
            for c in s.members
            if args.refuse_existing_objects
        }

        def on(cluster: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=args.providers[cluster], transforms=[guard_creates(guards.get(cluster))]
            )

        planes: dict[str, IstioControlPlane] = {}
        gateways: dict[str, EastWestGateway] = {}
        for c in s.members:
            on_cluster = on(c.name)
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
                    intermediate_renew_before_days=s.ca.renew_before_days,
                    external_intermediate=s.ca.intermediate(c.name),
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

        access = s.remote_access
        # The narrow reader peers' tokens belong to; with Istio's own reader (rendered by the charts)
        # nothing is created and the tokens wait for the charts instead.
        readers = {
            c.name: RemoteReader(
                f"{name}-{c.name}-reader",
                RemoteReaderArgs(
                    reader=access.reader, read_secrets=access.read_secrets, namespace=planes[c.name].namespace
                ),
                opts=on(c.name),
            )
            for c in s.members
            if access.reader != READER_ISTIO
        }
        members = {
            c.name: MeshMember(
                name=c.name,
                provider=args.providers[c.name],
                api_server=c.api_server,
                namespace=planes[c.name].namespace,
                after=[planes[c.name].base, planes[c.name].istiod],
                create_guard=guards.get(c.name),
                reader=access.reader,
                reader_ready=readers[c.name].ready if c.name in readers else [],
            )
            for c in s.members
        }
        held: dict[str, list[pulumi.Output[str]]] = {c.name: [] for c in s.members}
        previous = alias_names(opts)
        for a_name, b_name in itertools.combinations(sorted(c.name for c in s.members), 2):
            pair = RemoteSecretPair(
                pair_name(name, a_name, b_name),
                RemoteSecretPairArgs(
                    a=members[a_name],
                    b=members[b_name],
                    warn_loopback=not s.lab,
                    token_generation=access.token_generation,
                ),
                opts=pulumi.ResourceOptions(
                    parent=self, aliases=pair_aliases(name, previous, a_name, b_name), transforms=[mark_created_by]
                ),
            )
            held[a_name].append(pair.secret_in_a)
            held[b_name].append(pair.secret_in_b)

        if s.samples.enabled:
            for c in s.members:
                SampleApps(
                    f"{name}-{c.name}-samples",
                    SampleAppsArgs(
                        namespace=s.samples.namespace,
                        helloworld_versions=c.helloworld_versions,
                        helloworld_image_prefix=s.samples.helloworld_image_prefix,
                        sleep_image=s.samples.sleep_image,
                        after=[planes[c.name].istiod],
                    ),
                    opts=on(c.name),
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
        self.clusters = pulumi.Output.all(**{c.name: cluster_output(c.name) for c in s.members}).apply(dict)
        self.register_outputs(
            {
                "mesh_id": self.mesh_id,
                "root_cert_pem": self.root_cert_pem,
                "root_fingerprint": self.root_fingerprint,
                "clusters": self.clusters,
            }
        )
