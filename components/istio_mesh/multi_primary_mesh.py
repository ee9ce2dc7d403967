"""The whole mesh for N clusters: the composition ``__main__.py`` uses and other projects can import."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .chart_requirements import ARGS_NAMES
from .chart_values import mesh_values_problems
from .constants import PACKAGE
from .create_guard import ClusterObjects, guard_creates, mark_created_by, refuse_existing_objects
from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
from .fingerprint import pem_fingerprint
from .install_order import crds_first
from .intermediate_cert import SIGNER_DYNAMIC, SIGNERS
from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
from .options import (
    CA_SOURCES,
    GATEWAY_SERVICE_TYPES,
    NEXT_ROOT_SOURCES,
    READER_ISTIO,
    ROTATION_PHASES,
    CASettings,
    ExternalIntermediate,
    IstioSettings,
    MeshCluster,
    MeshGatewaySettings,
    RemoteAccessSettings,
    SampleSettings,
)
from .remote_reader import RemoteReader, RemoteReaderArgs
from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
from .root_ca import RootCA
from .rotation import PHASE_SUMMARIES, bundle, multi_root, phase_plan, root_ca_name
from .sample_apps import SampleApps, SampleAppsArgs
from .transforms import Transform, compose

#: Kubernetes label keys and values (as the API server validates them).
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class MultiPrimaryMeshArgs:
    """Inputs of a ``MultiPrimaryMesh``: its clusters and how the mesh is built across them.

    Every logical name under the mesh starts with the mesh's own name, so two meshes with different
    names live in one stack side by side.
    """

    #: The mesh ID every istiod shares (``global.meshID``).
    mesh_id: str
    #: The member clusters (at least one; a multi-cluster mesh has two or more). Their order does not
    #: matter: names, not positions, identify everything the mesh creates.
    clusters: Sequence[MeshCluster]
    #: Istio release, chart source and images.
    istio: IstioSettings = IstioSettings()
    #: The root CA (generated, imported as inputs, or external with an offline key) and intermediates.
    ca: CASettings = CASettings()
    #: Whose token the remote secrets carry (the mesh's narrow reader by default) and its generation.
    remote_access: RemoteAccessSettings = RemoteAccessSettings()
    #: The walkthrough's helloworld and sleep workloads (off by default).
    samples: SampleSettings = SampleSettings()
    #: Refuse to create a Kubernetes object that already exists (see ``create_guard``): on by default;
    #: off only for a deliberate adoption of objects made elsewhere.
    refuse_existing_objects: bool = True
    #: API server addresses on the loopback interface are expected (a local lab), not warned about.
    allow_loopback_api_servers: bool = False
    #: Labels put on every Kubernetes object the mesh creates (Helm-rendered ones included).
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Annotations put on every Kubernetes object the mesh creates (Helm-rendered ones included).
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: Who signs the intermediates: ``dynamic`` (a Python dynamic provider run in the program's own
    #: virtualenv: Python programs) or ``plugin`` (the ``istiomesh`` plugin's ``IntermediateCertificate``
    #: resource: what the plugin uses for programs in other languages). The same certificate either way;
    #: switching an existing stack replaces each intermediate (and rolls istiod).
    intermediate_signer: str = SIGNER_DYNAMIC
    #: Every cluster's east-west gateway chart values (each cluster's ``gateway.values`` go over them).
    east_west_gateway: MeshGatewaySettings = field(default_factory=MeshGatewaySettings)


def args_problems(name: str, args: MultiPrimaryMeshArgs) -> list[str]:
    """Everything wrong with ``args`` at once, each naming the field and what would be valid."""
    problems: list[str] = []
    if not args.mesh_id or not _LABEL_VALUE.match(args.mesh_id) or len(args.mesh_id) > 63:
        problems.append(f"mesh_id {args.mesh_id!r} is not a mesh ID (a Kubernetes label value, e.g. 'mesh1')")
    if not args.clusters:
        problems.append("clusters is empty: a mesh needs at least one cluster (a multi-cluster mesh two or more)")
    seen: set[str] = set()
    for i, c in enumerate(args.clusters):
        where = f"clusters[{i}] ({c.name!r})"
        if not _DNS1123_LABEL.match(c.name or ""):
            problems.append(f"{where}: name is not a DNS label (lower-case letters, digits and '-'), e.g. 'east'")
        if c.name in seen:
            problems.append(f"{where}: another cluster has this name; each cluster's name is its ID in the mesh")
        seen.add(c.name)
        if not c.network or not _LABEL_VALUE.match(c.network):
            problems.append(f"{where}: network {c.network!r} is not a label value, e.g. 'network1'")
        if not (c.api_server or "").startswith("https://"):
            problems.append(f"{where}: api_server {c.api_server!r} is not an https:// URL the peers can reach")
        if c.gateway.service_type not in GATEWAY_SERVICE_TYPES:
            problems.append(
                f"{where}: gateway.service_type {c.gateway.service_type!r} is not one of "
                f"{', '.join(GATEWAY_SERVICE_TYPES)}"
            )
        if c.provider is None and c.kubeconfig is None:
            problems.append(f"{where}: give its kubeconfig (content, a secret) or a provider bound to it")
        elif c.kubeconfig is None and args.refuse_existing_objects:
            problems.append(
                f"{where}: the create guard looks objects up with the cluster's kubeconfig: give kubeconfig too, "
                "or set refuse_existing_objects=False"
            )
    problems.extend(_ca_problems(args.ca, [c.name for c in args.clusters]))
    if args.ca.rotation is not None or args.ca.generation > 0:
        problems.extend(
            f"clusters[{i}] ({c.name!r}): a root rotation's gate reads every cluster's proxies with its kubeconfig: "
            "give kubeconfig"
            for i, c in enumerate(args.clusters)
            if c.kubeconfig is None
        )
    # Chart values: the mesh's required ones are not the user's to change (see chart_values).
    problems.extend(
        f"{where}: {message}"
        for where, message in mesh_values_problems(
            ARGS_NAMES,
            mesh_id=args.mesh_id,
            istio=args.istio,
            east_west_gateway=args.east_west_gateway,
            clusters=enumerate(args.clusters),
        )
    )
    if args.intermediate_signer not in SIGNERS:
        problems.append(f"intermediate_signer {args.intermediate_signer!r} is not one of {', '.join(SIGNERS)}")
    for key in {**args.labels, **args.annotations}:
        prefix, _, local = key.rpartition("/")
        if not _LABEL_NAME.match(local) or len(local) > 63 or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
            problems.append(f"label/annotation key {key!r} is not a valid key, e.g. 'example.com/team'")
    for key, value in args.labels.items():
        if not _LABEL_VALUE.match(value) or len(value) > 63:
            problems.append(f"labels[{key!r}]: {value!r} is not a label value (63 characters of [A-Za-z0-9_.-])")
    return [f"MultiPrimaryMesh {name!r}: {p}" for p in problems]


def _ca_problems(ca: CASettings, clusters: Sequence[str]) -> list[str]:
    problems: list[str] = []
    if ca.source not in CA_SOURCES:
        problems.append(f"ca.source {ca.source!r} is not one of {', '.join(CA_SOURCES)}")
    if ca.source in ("import", "external") and ca.root_cert_pem is None:
        problems.append(f"ca.source {ca.source!r} needs ca.root_cert_pem (the root certificate, PEM)")
    if ca.source == "import" and ca.root_key_pem is None:
        problems.append("ca.source 'import' needs ca.root_key_pem (the root's private key, PEM)")
    if ca.source != "import" and ca.root_key_pem is not None:
        problems.append(f"ca.root_key_pem is given but ca.source is {ca.source!r}: only 'import' uses a root key")
    given = [name for name, _ in ca.intermediates]
    if ca.source == "external":
        missing = [c for c in clusters if c not in given]
        if missing:
            problems.append(f"ca.source 'external' needs an intermediate for every cluster; none for {missing}")
        unknown = [g for g in given if g not in clusters]
        if unknown:
            problems.append(f"ca.intermediates names clusters that are not in the mesh: {unknown}")
    elif given:
        problems.append(f"ca.intermediates is given but ca.source is {ca.source!r}: only 'external' uses them")
    for field_name in ("root_validity_days", "intermediate_validity_days"):
        if getattr(ca, field_name) < 1:
            problems.append(f"ca.{field_name} must be at least 1, got {getattr(ca, field_name)}")
    if ca.renew_before_days < 0:
        problems.append(f"ca.renew_before_days must be 0 (never) or more, got {ca.renew_before_days}")
    if ca.intermediate_generation < 0:
        problems.append(f"ca.intermediate_generation must be 0 or more, got {ca.intermediate_generation}")
    if ca.generation < 0:
        problems.append(f"ca.generation must be 0 or more (the root rotations finished), got {ca.generation}")
    rotation = ca.rotation
    if rotation is not None:
        if rotation.phase not in ROTATION_PHASES:
            problems.append(f"ca.rotation.phase {rotation.phase!r} is not one of {', '.join(ROTATION_PHASES)}")
        nxt = rotation.next_root
        if nxt.source not in NEXT_ROOT_SOURCES:
            problems.append(f"ca.rotation.next_root.source {nxt.source!r} is not one of {', '.join(NEXT_ROOT_SOURCES)}")
        if nxt.source == "import" and (nxt.root_cert_pem is None or nxt.root_key_pem is None):
            problems.append("ca.rotation.next_root.source 'import' needs root_cert_pem and root_key_pem")
        if nxt.source == "generate" and (nxt.root_cert_pem is not None or nxt.root_key_pem is not None):
            problems.append("ca.rotation.next_root is generated, but a certificate or key was given: source 'import'")
        if nxt.source == "external":
            if nxt.root_cert_pem is None or nxt.root_key_pem is not None:
                problems.append("ca.rotation.next_root.source 'external' needs root_cert_pem and no root_key_pem")
            missing = [c for c in clusters if nxt.intermediate(c) is None]
            if missing:
                problems.append(
                    "ca.rotation.next_root.source 'external' needs an intermediate for every cluster; "
                    f"none for {missing}"
                )
        elif nxt.intermediates:
            problems.append("ca.rotation.next_root.intermediates is given but its source is not 'external'")
    return problems


def add_metadata(labels: Mapping[str, str], annotations: Mapping[str, str]):  # type: ignore[no-untyped-def]
    """A transform adding ``labels`` and ``annotations`` to every Kubernetes object (not to Patch resources,
    charts or other components); the object's own values win on a clash."""
    from .create_guard import is_guarded_type

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if not args.custom or not is_guarded_type(args.type_):
            return None
        props: dict[str, Any] = dict(args.props)
        metadata: dict[str, Any] = dict(props.get("metadata") or {})
        if labels:
            metadata["labels"] = {**labels, **(metadata.get("labels") or {})}
        if annotations:
            metadata["annotations"] = {**annotations, **(metadata.get("annotations") or {})}
        props["metadata"] = metadata
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return transform


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


@dataclass
class _Trust:
    """What every cluster's ``cacerts`` trusts and which root signs, during a root rotation or outside one
    (see ``rotation``), with the rotation's gate in front of the bundle (``trust_gate``)."""

    #: The root whose intermediate signs (the current one, or the next from ``sign-with-next`` on).
    signer: RootCA
    signer_generation: int
    #: ``root-cert.pem``; ``None``: just the root (meshes that never rotated, byte for byte as before).
    bundle_pem: pulumi.Output[str] | None
    #: Every root the clusters are told to trust (``root-cert.pem`` without the gate): what the lost-state guard
    #: compares a live ``cacerts`` with (any root in common passes) and what ``verify`` expects.
    trusted_pem: pulumi.Output[str]
    #: Whether ``signer`` is the rotation's next root (its external intermediates are the next root's).
    next_signs: bool = False

    def external_intermediate(self, ca: CASettings, cluster: str) -> ExternalIntermediate | None:
        """The intermediate signed elsewhere that ``cluster``'s ``cacerts`` carries, if the signing root is
        external (the current root's from ``ca.intermediates``, the next root's from its own)."""
        if self.next_signs:
            return ca.rotation.next_root.intermediate(cluster) if ca.rotation else None
        return ca.intermediate(cluster)

    @staticmethod
    def of(mesh: pulumi.ComponentResource, name: str, args: MultiPrimaryMeshArgs, root: RootCA) -> _Trust:
        ca = args.ca
        rotation = ca.rotation
        if rotation is None:
            if ca.generation == 0:
                return _Trust(root, 0, None, root.cert_pem)
            # After a rotation: the last phase's bundle, once the clusters allow it (finishing a rotation
            # before drop-old held would drop a root in use).
            bundle_pem = root.cert_pem.apply(lambda pem: bundle([pem]))
            gated = _gated(name, args, root.cert_pem, root.cert_pem, bundle_pem, "finishing the root rotation")
            return _Trust(root, ca.generation, gated, bundle_pem)
        nxt = rotation.next_root
        next_root = RootCA(
            root_ca_name(name, ca.generation + 1),
            CASettings(
                source=nxt.source,
                protect=ca.protect,
                root_validity_days=ca.root_validity_days,
                root_cert_pem=nxt.root_cert_pem,
                root_key_pem=nxt.root_key_pem,
                intermediates=nxt.intermediates,
            ),
            opts=pulumi.ResourceOptions(parent=mesh),
        )
        plan = pulumi.Output.all(root.cert_pem, next_root.cert_pem).apply(
            lambda pems: phase_plan(rotation.phase, pems[0], pems[1])
        )
        bundle_pem = plan.apply(lambda p: p.root_cert_pem)
        signer = next_root if plan_signs_with_next(rotation.phase) else root
        gated = _gated(
            name,
            args,
            root.cert_pem,
            next_root.cert_pem,
            bundle_pem,
            f"root rotation phase {rotation.phase!r}",
            signer_pem=signer.cert_pem,
        )
        pulumi.log.info(
            f"root rotation, phase {rotation.phase!r} ({ROTATION_PHASES.index(rotation.phase) + 1} of "
            f"{len(ROTATION_PHASES)}): {PHASE_SUMMARIES[rotation.phase]}",
            resource=mesh,
        )
        return _Trust(
            signer, ca.generation + (1 if signer is next_root else 0), gated, bundle_pem, next_signs=signer is next_root
        )


def plan_signs_with_next(phase: str) -> bool:
    return phase_plan(phase, "", "").next_signs


def _gated(
    name: str,
    args: MultiPrimaryMeshArgs,
    current_pem: pulumi.Output[str],
    next_pem: pulumi.Output[str],
    bundle_pem: pulumi.Output[str],
    what: str,
    signer_pem: pulumi.Output[str] | None = None,
) -> pulumi.Output[str]:
    """``bundle_pem``, once ``trust_gate.check`` has found that the clusters allow writing it (it raises,
    naming what is in the way, otherwise): every ``cacerts`` waits for it, so a refused phase changes none."""
    import asyncio

    from .trust_gate import GATE_THREADS, ClusterReader, Target, check, fingerprints

    async def gate(values: list[Any]) -> str:
        current, nxt, text, signer, *kubeconfigs = values
        labels = {pem_fingerprint(nxt): "next", pem_fingerprint(current): "current"}
        target = Target(trust=fingerprints(text), signer=pem_fingerprint(signer), labels=labels)
        readers = [ClusterReader(c.name, kc, c.context) for c, kc in zip(args.clusters, kubeconfigs, strict=True)]
        # On the gate's own threads, as the create guard's lookups: registrations hold the default executor's
        # threads while they wait for the engine (a deadlock when that pool is small, as in the plugin).
        await asyncio.get_running_loop().run_in_executor(
            GATE_THREADS, check, target, readers, f"MultiPrimaryMesh {name!r}: {what}"
        )
        return text

    kubeconfigs = [c.kubeconfig for c in args.clusters]
    return pulumi.Output.all(current_pem, next_pem, bundle_pem, signer_pem or current_pem, *kubeconfigs).apply(gate)


class MultiPrimaryMesh(pulumi.ComponentResource):
    """A multi-primary Istio mesh: every cluster runs istiod and reads every other cluster.

    One ``RootCA``; per cluster an ``IstioControlPlane`` (with its ``ClusterCA``), a ``RemoteReader`` (the
    narrow account peers read it with) and, when the mesh spans more than one network, an
    ``EastWestGateway``; one ``RemoteSecretPair`` per pair of clusters
    (N*(N-1) remote secrets); optionally ``SampleApps``. Each cluster is reached through the provider its
    ``MeshCluster`` names, or one the mesh makes from its kubeconfig. A cluster dropped from ``clusters``
    has its objects deleted; to forget a cluster that is gone for good, keep its provider registered with
    ``delete_unreachable=True`` and drop it from ``clusters`` (this repository's program does that for
    ``unreachable: true``).

    Every logical name comes from what a resource is (``<name>-<cluster>``, ``<name>-<a>-<b>`` with the
    pair's names sorted), never from list positions or settings, so reordering ``clusters`` or changing
    ``mesh_id`` changes nothing's identity. A mesh renamed with ``aliases=[Alias(name=old)]`` keeps its
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
        # Every mistake at once, before anything (this component included) is registered.
        problems = args_problems(name, args)
        if problems:
            raise ValueError("invalid MultiPrimaryMeshArgs (nothing was registered):\n  - " + "\n  - ".join(problems))
        super().__init__(f"{PACKAGE}:index:MultiPrimaryMesh", name, None, opts)
        multi_network = len({c.network for c in args.clusters}) > 1
        ca = args.ca

        rotation = ca.rotation
        # The current root; once a rotation drops it, unprotected, so finishing the rotation can delete it.
        root = RootCA(
            root_ca_name(name, ca.generation),
            dataclasses.replace(ca, protect=ca.protect and not (rotation and rotation.phase == "drop-old")),
            opts=pulumi.ResourceOptions(parent=self),
        )
        trust = _Trust.of(self, name, args, root)
        if ca.renew_before_days >= ca.intermediate_validity_days:
            pulumi.log.warn(
                f"ca.renewBeforeDays ({ca.renew_before_days}) is not less than ca.intermediateValidityDays "
                f"({ca.intermediate_validity_days}): every `up` signs new intermediates and rolls every istiod "
                "(unless the root's own expiry is what ends them)",
                resource=self,
            )

        # A cluster given only by its kubeconfig gets a provider of the mesh's own.
        providers = {
            c.name: c.provider
            or k8s.Provider(
                f"{name}-{c.name}-provider",
                kubeconfig=pulumi.Output.secret(c.kubeconfig or ""),
                context=c.context,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for c in args.clusters
        }
        # The program's own view of each cluster (through its kubeconfig): does an object exist, is Istio there.
        lookups = {
            c.name: ClusterObjects(c.name, c.kubeconfig, c.context) for c in args.clusters if c.kubeconfig is not None
        }
        # One create guard per cluster: creating an object that already exists there fails, naming it; and
        # nothing is taken back in a cluster whose running mesh has another root (a lost state).
        guards = {
            c: refuse_existing_objects(f"{name}-{c}-refuse-existing-objects", c, lookup, trust.trusted_pem)
            for c, lookup in lookups.items()
            if args.refuse_existing_objects
        }
        extra = add_metadata(args.labels, args.annotations) if args.labels or args.annotations else None

        def marked(*transforms: Transform) -> list[Any]:
            """One transform: ``transforms``, then the labels and annotations every object gets."""
            chain = [*transforms, *([extra] if extra else [])]
            return [chain[0] if len(chain) == 1 else compose(*chain)]

        def on(cluster: str) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(
                parent=self, provider=providers[cluster], transforms=marked(guard_creates(guards.get(cluster)))
            )

        planes: dict[str, IstioControlPlane] = {}
        gateways: dict[str, EastWestGateway] = {}
        for c in args.clusters:
            on_cluster = on(c.name)
            planes[c.name] = IstioControlPlane(
                f"{name}-{c.name}",
                IstioControlPlaneArgs(
                    mesh_id=args.mesh_id,
                    cluster_name=c.name,
                    network=c.network,
                    istio=args.istio,
                    root_cert_pem=trust.signer.cert_pem,
                    root_key_pem=trust.signer.key_pem,
                    intermediate_validity_days=ca.intermediate_validity_days,
                    intermediate_renew_before_days=ca.renew_before_days,
                    external_intermediate=trust.external_intermediate(ca, c.name),
                    trust_bundle_pem=trust.bundle_pem,
                    intermediate_generation=trust.signer_generation,
                    intermediate_key_generation=ca.intermediate_generation,
                    multi_root=multi_root(ca),
                    intermediate_signer=args.intermediate_signer,
                    # Istio's CRDs before istiod, unless the cluster has no Istio yet.
                    crds_first=crds_first(lookups.get(c.name)),
                    cluster_values=c.istio.values,
                ),
                opts=on_cluster,
            )
            if multi_network:
                gateways[c.name] = EastWestGateway(
                    f"{name}-{c.name}-eastwest",
                    EastWestGatewayArgs(
                        network=c.network,
                        istio=args.istio,
                        gateway=c.gateway,
                        namespace=planes[c.name].namespace,
                        after=[planes[c.name].istiod],
                        gateway_after=[planes[c.name].base, *planes[c.name].istiod_rollouts],
                        mesh_values=args.east_west_gateway.values,
                    ),
                    opts=on_cluster,
                )

        access = args.remote_access
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
            for c in args.clusters
            if access.reader != READER_ISTIO
        }
        members = {
            c.name: MeshMember(
                name=c.name,
                provider=providers[c.name],
                api_server=c.api_server,
                namespace=planes[c.name].namespace,
                after=[planes[c.name].base, planes[c.name].istiod],
                create_guard=guards.get(c.name),
                reader=access.reader,
                reader_ready=readers[c.name].ready if c.name in readers else [],
            )
            for c in args.clusters
        }
        held: dict[str, list[pulumi.Output[str]]] = {c.name: [] for c in args.clusters}
        previous = alias_names(opts)
        for a_name, b_name in itertools.combinations(sorted(c.name for c in args.clusters), 2):
            pair = RemoteSecretPair(
                pair_name(name, a_name, b_name),
                RemoteSecretPairArgs(
                    a=members[a_name],
                    b=members[b_name],
                    warn_loopback=not args.allow_loopback_api_servers,
                    token_generation=access.token_generation,
                ),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    aliases=pair_aliases(name, previous, a_name, b_name),
                    transforms=marked(mark_created_by),
                ),
            )
            held[a_name].append(pair.secret_in_a)
            held[b_name].append(pair.secret_in_b)

        if args.samples.enabled:
            for c in args.clusters:
                SampleApps(
                    f"{name}-{c.name}-samples",
                    SampleAppsArgs(
                        namespace=args.samples.namespace,
                        helloworld_versions=c.helloworld_versions,
                        helloworld_image_prefix=args.samples.helloworld_image_prefix,
                        sleep_image=args.samples.sleep_image,
                        network=c.network,
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

        self.mesh_id = pulumi.Output.from_input(args.mesh_id)
        self.root_cert_pem = root.cert_pem
        self.root_fingerprint = root.fingerprint
        # (Not annotated on the class: the plugin's schema is inferred from the annotations, and these are not
        # outputs of the package yet.) Every root each cluster's cacerts trusts: the root, or during a
        # rotation both; and whether a rotation is in progress or has happened (they may differ then).
        self.trusted_roots_pem: pulumi.Output[str] = trust.trusted_pem
        self.rotating: bool = multi_root(ca)
        self.clusters = pulumi.Output.all(**{c.name: cluster_output(c.name) for c in args.clusters}).apply(dict)
        self.register_outputs(
            {
                "mesh_id": self.mesh_id,
                "root_cert_pem": self.root_cert_pem,
                "root_fingerprint": self.root_fingerprint,
                "clusters": self.clusters,
            }
        )
