"""``MultiPrimaryMesh`` as the ``istiomesh`` plugin serves it: its inputs as the package schema describes
them (the ``*Inputs`` types, camelCase and spelt as the stack config's keys, plain data; kubeconfigs are
secret strings), the old spellings it still reads (``RENAMED_INPUTS``), their mapping onto the package's
``MultiPrimaryMeshArgs`` (``mesh_args``), and the component the engine asks the plugin to construct
(``MeshFromInputs``, served under the package class's token ``MESH_TOKEN``). ``plugin`` generates the
schema from these annotations and docstrings; ``plugin_server`` serves the component.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Required, TypedDict, cast, get_args, get_origin, is_typeddict

import pulumi

from . import multi_primary_mesh as mpm
from .chart_requirements import SCHEMA_NAMES
from .chart_values import mesh_values_problems
from .constants import PACKAGE
from .intermediate_cert import SIGNER_PLUGIN
from .options import (
    CASettings,
    ChartSource,
    ClusterIstioSettings,
    GatewaySettings,
    IstioSettings,
    MeshCluster,
    MeshGatewaySettings,
    NextRoot,
    RemoteAccessSettings,
    RootRotation,
    SampleSettings,
)


class GatewayInputs(TypedDict, total=False):
    """How a cluster's east-west gateway Service is exposed."""

    serviceType: str
    """Service type: LoadBalancer (default), NodePort or ClusterIP."""
    externalIPs: list[str]
    """Addresses the Service is reachable at without a load balancer (its spec.externalIPs)."""
    externalIps: list[str]
    """Deprecated spelling of externalIPs (still accepted)."""
    loadBalancerTimeoutSeconds: int
    """How long to wait for a load balancer's address (LoadBalancer without externalIPs); default 600."""
    values: dict[str, Any]
    """Helm values of this cluster's gateway chart, over eastWestGateway.values (see istio.values)."""


class ClusterIstioInputs(TypedDict, total=False):
    """What one cluster changes of the mesh's Istio."""

    values: dict[str, Any]
    """Helm values of this cluster's istiod chart, deep-merged over istio.values (see istio.values)."""


class MeshGatewayInputs(TypedDict, total=False):
    """What every cluster's east-west gateway shares."""

    values: dict[str, Any]
    """Helm values of every cluster's east-west gateway chart; each cluster's eastWestGateway.values go over them."""


class ClusterInputs(TypedDict, total=False):
    """One primary cluster of the mesh."""

    name: Required[str]
    """The cluster's ID in the mesh (istiod's clusterName): a DNS label."""
    network: Required[str]
    """The cluster's network (topology.istio.io/network)."""
    apiServer: Required[str]
    """API server URL the other clusters' istiods dial (https://host:port), written into their remote secrets."""
    kubeconfig: Required[pulumi.Input[str]]
    """The kubeconfig's content (not a path): how the mesh reaches the cluster. Kept secret."""
    context: str
    """The kubeconfig context to use (its current context when not given)."""
    eastWestGateway: GatewayInputs
    """How this cluster's east-west gateway is exposed (when the mesh spans more than one network)."""
    gateway: GatewayInputs
    """Deprecated spelling of eastWestGateway (still accepted)."""
    helloworldVersions: list[str]
    """helloworld versions this cluster runs when samples are enabled, e.g. ["v1"]."""
    istio: ClusterIstioInputs
    """This cluster's own Istio values (its istiod chart values)."""


class IstioInputs(TypedDict, total=False):
    """Istio release, chart source and images."""

    version: str
    """Istio release (chart version); default 1.30.4."""
    chartRepository: str
    """Helm repository of Istio's charts (default: Istio's release repository)."""
    chartDirectory: str
    """A local directory holding the base, istiod and gateway charts, used instead of a repository."""
    hub: str
    """Image registry of Istio's images."""
    tag: str
    """Image tag (default: the version)."""
    keepCRDs: bool
    """Keep Istio's CRDs on destroy (default true): deleting a CRD deletes every resource of its kind."""
    keepCrds: bool
    """Deprecated spelling of keepCRDs (still accepted)."""
    values: dict[str, Any]
    """Helm values of the istiod chart in every cluster; the mesh's own go over them (a contradiction is refused)."""


class NextRootInputs(TypedDict, total=False):
    """The root a rotation moves the mesh to."""

    source: str
    """generate (default: a second root kept, encrypted, in the state) or import (rootCertPem and rootKeyPem)."""
    rootCertPem: pulumi.Input[str]
    """import: the next root's certificate (PEM)."""
    rootKeyPem: pulumi.Input[str]
    """import: the next root's private key (PEM); kept secret, never written into a cluster."""


class RotationInputs(TypedDict, total=False):
    """A root rotation in progress: one phase per update, each refused until the previous holds everywhere."""

    phase: str
    """trust-both, then sign-with-next, then drop-old (one update each)."""
    nextRoot: NextRootInputs
    """The root the mesh moves to."""


class CAInputs(TypedDict, total=False):
    """The mesh's root CA and each cluster's intermediate."""

    source: str
    """generate (default: a root kept, encrypted, in the state) or import (rootCertPem and rootKeyPem given)."""
    protect: bool
    """Protect the generated root from deletion (default true)."""
    rootValidityDays: int
    """Validity of a generated root, in days (default 3650)."""
    intermediateValidityDays: int
    """Validity of each intermediate, in days (default 3650; never past the root's end)."""
    renewBeforeDays: int
    """Sign an intermediate again this many days before it expires (default 30; 0: never)."""
    rootCertPem: pulumi.Input[str]
    """import: the root certificate (PEM)."""
    rootKeyPem: pulumi.Input[str]
    """import: the root's private key (PEM); kept secret, never written into a cluster."""
    generation: int
    """Root rotations finished (default 0); raise it by one, with the next root as the root, to finish one."""
    rotation: RotationInputs
    """A root rotation in progress (phase and next root)."""
    intermediateGeneration: int
    """Raise by one to give every cluster a new intermediate with a new key under the same root (default 0)."""


class RemoteAccessInputs(TypedDict, total=False):
    """Whose token the remote secrets carry."""

    reader: str
    """mesh (default: a narrow account of the mesh's own, no Secrets) or istio (istio-reader-service-account)."""
    readSecrets: bool
    """With reader mesh: let peers list and watch Secrets (default true: istiod needs it to report synced)."""
    tokenGeneration: int
    """Increase to rotate every reader token (default 0)."""


class SamplesInputs(TypedDict, total=False):
    """The walkthrough's helloworld and sleep workloads."""

    enabled: bool
    """Deploy them (default false)."""
    namespace: str
    """Their namespace (default sample)."""


class MultiPrimaryMeshInputs(TypedDict, total=False):
    """Inputs of a MultiPrimaryMesh."""

    meshId: Required[str]
    """The mesh ID every istiod shares."""
    clusters: Required[list[ClusterInputs]]
    """The member clusters; their order does not matter."""
    istio: IstioInputs
    """Istio release, chart source and images."""
    ca: CAInputs
    """The root CA and intermediates."""
    remoteAccess: RemoteAccessInputs
    """Whose token the remote secrets carry."""
    samples: SamplesInputs
    """The walkthrough's sample workloads."""
    refuseExistingObjects: bool
    """Refuse to create a Kubernetes object that already exists (default true)."""
    allowLoopbackApiServers: bool
    """Do not warn about loopback API server addresses (a local lab)."""
    labels: dict[str, str]
    """Labels put on every Kubernetes object the mesh creates."""
    annotations: dict[str, str]
    """Annotations put on every Kubernetes object the mesh creates."""
    eastWestGateway: MeshGatewayInputs
    """What every cluster's east-west gateway shares (its gateway chart values)."""


@dataclass(frozen=True)
class RenamedInput:
    """An input the schema spelt differently before: the old key still works, marked deprecated in the
    schema (``deprecationMessage``) and warned about when given; ``mesh_args`` reads only the new key."""

    #: The ``*Inputs`` type that holds both keys.
    holder: type
    old: str
    new: str

    @property
    def deprecation_message(self) -> str:
        """The schema's ``deprecationMessage`` of the old key (the SDKs show it; it names the new key)."""
        return f"Use {self.new}: {self.old} is its old spelling (still accepted)."


#: The inputs spelt as the stack config and Kubernetes spell them, and their old spellings.
RENAMED_INPUTS = (
    RenamedInput(IstioInputs, "keepCrds", "keepCRDs"),
    RenamedInput(ClusterInputs, "gateway", "eastWestGateway"),
    RenamedInput(GatewayInputs, "externalIps", "externalIPs"),
)


def _new_spellings(
    typ: type, given: Mapping[str, Any], problems: list[tuple[str, str]], old_at: str = "", new_at: str = ""
) -> dict[str, Any]:
    """``given`` (an input of type ``typ``, nested ones included) with every old spelling moved to its new key,
    and one warning for each in the engine's log (naming the old key and the new). An old key given with a
    different value than its new key is a problem (where, message) instead. ``old_at``/``new_at``: the
    path of ``given`` as written and as newly spelt (``clusters[0].gateway.``, ``clusters[0].eastWestGateway.``)."""
    # The annotations as written (evaluating them would need pulumi.Input's forward references).
    hints = {
        key: get_args(hint)[0] if get_origin(hint) is Required else hint for key, hint in typ.__annotations__.items()
    }
    renamed = {r.old: r.new for r in RENAMED_INPUTS if r.holder is typ}
    spelt: dict[str, Any] = {}
    # New keys first, so an old key given too is compared with its new one.
    for key in sorted(given, key=lambda k: k in renamed):
        new_key = renamed.get(key, key)
        old_path, new_path = f"{old_at}{key}", f"{new_at}{new_key}"
        value = _nested_spellings(hints.get(key), given[key], problems, old_path, new_path)
        if key not in renamed:
            spelt[key] = value
        elif value is not None:
            if spelt.get(new_key) is not None and spelt[new_key] != value:
                problems.append(
                    (
                        old_path,
                        f"the old spelling of {new_path}, which is given too, with another value: give only {new_path}",
                    )
                )
                continue
            pulumi.log.warn(f"MultiPrimaryMesh: {old_path} is deprecated; write {new_path} (the same setting)")
            spelt[new_key] = value
    return spelt


def _nested_spellings(hint: Any, value: Any, problems: list[tuple[str, str]], old_path: str, new_path: str) -> Any:
    """``value`` with the new spellings of the ``*Inputs`` it holds (an object or a list of them, by ``hint``)."""
    if is_typeddict(hint) and isinstance(value, Mapping):
        return _new_spellings(hint, value, problems, f"{old_path}.", f"{new_path}.")
    (item,) = get_args(hint) if get_origin(hint) is list else (None,)
    if is_typeddict(item) and isinstance(value, list):
        return [
            _nested_spellings(item, v, problems, f"{old_path}[{i}]", f"{new_path}[{i}]") for i, v in enumerate(value)
        ]
    return value


def mesh_args(inputs: MultiPrimaryMeshInputs) -> mpm.MultiPrimaryMeshArgs:
    """The package's ``MultiPrimaryMeshArgs`` for the plugin's inputs (the schema's shape): the one place
    the schema's keys meet the arguments' fields (``keepCRDs``: ``IstioSettings.keep_crds``,
    ``clusters[].eastWestGateway``: ``MeshCluster.gateway``, its ``externalIPs``: ``external_ips``). Old
    spellings (``RENAMED_INPUTS``) are read as their new keys, with a warning."""
    problems: list[tuple[str, str]] = []
    spelt = cast(MultiPrimaryMeshInputs, _new_spellings(MultiPrimaryMeshInputs, inputs, problems))
    istio_in = spelt.get("istio") or {}
    defaults = IstioSettings()
    version = istio_in.get("version") or defaults.version
    charts = (
        ChartSource(repository=None, directory=istio_in["chartDirectory"])
        if istio_in.get("chartDirectory")
        else ChartSource(repository=istio_in.get("chartRepository") or ChartSource().repository)
    )
    istio = IstioSettings(
        version=version,
        charts=charts,
        hub=istio_in.get("hub") or defaults.hub,
        tag=istio_in.get("tag") or version,
        keep_crds=istio_in.get("keepCRDs", defaults.keep_crds) is not False,
        values=istio_in.get("values") or {},
    )
    ca_in = spelt.get("ca") or {}
    ca_defaults = CASettings()
    ca = CASettings(
        source=ca_in.get("source") or ca_defaults.source,
        protect=ca_in.get("protect", ca_defaults.protect) is not False,
        root_validity_days=int(ca_in.get("rootValidityDays") or ca_defaults.root_validity_days),
        intermediate_validity_days=int(ca_in.get("intermediateValidityDays") or ca_defaults.intermediate_validity_days),
        renew_before_days=int(ca_in.get("renewBeforeDays", ca_defaults.renew_before_days)),
        root_cert_pem=ca_in.get("rootCertPem"),
        root_key_pem=ca_in.get("rootKeyPem"),
        generation=int(ca_in.get("generation") or 0),
        rotation=_rotation(ca_in.get("rotation")),
        intermediate_generation=int(ca_in.get("intermediateGeneration") or 0),
    )
    ra_in = spelt.get("remoteAccess") or {}
    ra_defaults = RemoteAccessSettings()
    remote_access = RemoteAccessSettings(
        reader=ra_in.get("reader") or ra_defaults.reader,
        read_secrets=ra_in.get("readSecrets", ra_defaults.read_secrets) is not False,
        token_generation=int(ra_in.get("tokenGeneration") or 0),
    )
    samples_in = spelt.get("samples") or {}
    samples = SampleSettings(
        enabled=bool(samples_in.get("enabled", False)),
        namespace=samples_in.get("namespace") or SampleSettings().namespace,
    )
    gw_defaults = GatewaySettings()
    clusters = []
    for c in spelt.get("clusters") or []:
        gw = c.get("eastWestGateway") or {}
        clusters.append(
            MeshCluster(
                name=c["name"],
                network=c["network"],
                api_server=c["apiServer"],
                kubeconfig=c["kubeconfig"],
                context=c.get("context"),
                gateway=GatewaySettings(
                    service_type=gw.get("serviceType") or gw_defaults.service_type,
                    external_ips=tuple(gw.get("externalIPs") or ()),
                    load_balancer_timeout_seconds=int(
                        gw.get("loadBalancerTimeoutSeconds") or gw_defaults.load_balancer_timeout_seconds
                    ),
                    values=gw.get("values") or {},
                ),
                helloworld_versions=tuple(c.get("helloworldVersions") or ()),
                istio=ClusterIstioSettings(values=(c.get("istio") or {}).get("values") or {}),
            )
        )
    east_west_gateway = MeshGatewaySettings(values=(spelt.get("eastWestGateway") or {}).get("values") or {})
    # Chart values that contradict the mesh's, named as the schema spells them (the package's rules).
    problems += mesh_values_problems(
        SCHEMA_NAMES,
        mesh_id=spelt["meshId"],
        istio=istio,
        east_west_gateway=east_west_gateway,
        clusters=enumerate(clusters),
    )
    if problems:
        raise ValueError(
            "invalid MultiPrimaryMesh inputs (nothing was registered):\n  - "
            + "\n  - ".join(f"{where}: {message}" for where, message in problems)
        )
    return mpm.MultiPrimaryMeshArgs(
        mesh_id=spelt["meshId"],
        clusters=tuple(clusters),
        istio=istio,
        ca=ca,
        remote_access=remote_access,
        samples=samples,
        refuse_existing_objects=spelt.get("refuseExistingObjects", mpm.MultiPrimaryMeshArgs.refuse_existing_objects)
        is not False,
        allow_loopback_api_servers=bool(spelt.get("allowLoopbackApiServers", False)),
        labels=dict(spelt.get("labels") or {}),
        annotations=dict(spelt.get("annotations") or {}),
        intermediate_signer=SIGNER_PLUGIN,
        east_west_gateway=east_west_gateway,
    )


#: The component's type token in the schema, in every language's SDK and in consumers' states: the package
#: class's own name. The class below, named for what it does, is served under it: the SDK's component host
#: would name the token after the class (``served_token``), so ``plugin.schema`` and the server's
#: ``Construct`` translate between the two.
MESH_TOKEN = f"{PACKAGE}:index:MultiPrimaryMesh"


def served_token(component: type) -> str:
    """The token ``pulumi.provider.experimental`` gives a component class (``package:index:<class name>``)."""
    return f"{PACKAGE}:index:{component.__name__}"


class MeshFromInputs(mpm.MultiPrimaryMesh):
    """A multi-primary, multi-network Istio mesh across N Kubernetes clusters: a root CA and one intermediate
    per cluster (loaded as cacerts), istiod as a primary in every cluster with a shared mesh ID, an east-west
    gateway per network and remote secrets in both directions for every pair of clusters."""

    mesh_id: pulumi.Output[str]
    """The mesh ID shared by every istiod."""
    root_cert_pem: pulumi.Output[str]
    """The mesh root certificate (PEM, public)."""
    root_fingerprint: pulumi.Output[str]
    """SHA-256 fingerprint of the root certificate."""
    clusters: pulumi.Output[dict[str, Any]]
    """Per cluster: network, eastWestGatewayAddress, remoteSecrets (the remote secrets it holds)."""

    def __init__(self, name: str, args: MultiPrimaryMeshInputs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(name, mesh_args(args), opts)


def _rotation(raw: Mapping[str, Any] | None) -> RootRotation | None:
    """``ca.rotation`` as the package's ``RootRotation`` (checked by ``MultiPrimaryMeshArgs``)."""
    if not raw:
        return None
    nxt = raw.get("nextRoot") or {}
    return RootRotation(
        phase=str(raw.get("phase") or ""),
        next_root=NextRoot(
            source=nxt.get("source") or NextRoot().source,
            root_cert_pem=nxt.get("rootCertPem"),
            root_key_pem=nxt.get("rootKeyPem"),
        ),
    )
