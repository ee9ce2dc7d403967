"""What verify reads from the mesh, as plain data, and what it concludes (``Finding``).

The checks (``verify.checks``, ``verify.istiod_checks``, ``verify.proxy_checks``, ``verify.edit_checks``) are
pure functions of these objects, so they are unit-tested with hand-written facts; ``verify.collect`` fills
them from API servers and istiods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The service whose endpoints are followed when no ``--service`` is given (the samples the program deploys).
DEFAULT_SERVICE = "helloworld.sample"
#: The workload whose sidecar the proxy view poses as (``app`` label, in the service's namespace).
DEFAULT_CLIENT = "sleep"


@dataclass(frozen=True)
class Target:
    """A mesh cluster to verify: how to read its API server, and its expected network."""

    name: str
    network: str | None
    kubeconfig: dict[str, Any]
    context: str | None


@dataclass
class RemoteSecretFacts:
    """One remote secret (label ``istio/multiCluster=true``) in a reader's istio-system."""

    name: str
    annotation_cluster: str | None
    keys: list[str]
    #: Per data key: the API server its kubeconfig names, and what happened when we used it from here.
    servers: dict[str, str] = field(default_factory=dict)
    #: Per data key: None when reachable and authorised, else the problem ("unreachable: ...", ...).
    access: dict[str, str | None] = field(default_factory=dict)
    #: Per data key: permissions the credentials lack, as "list endpointslices.discovery.k8s.io".
    missing_permissions: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FieldsEntry:
    """One entry of an object's ``metadata.managedFields``: who set which fields (``fields``: the
    ``fieldsV1`` tree), how (``Apply`` or ``Update``), when, and through which subresource ("" the object)."""

    manager: str
    operation: str
    time: str | None
    fields: Mapping[str, Any]
    subresource: str = ""


@dataclass(frozen=True)
class MeshObject:
    """An object the program created in a cluster (it carries ``CREATED_BY_ANNOTATION``: ``created_by``),
    with the managers of its fields."""

    kind: str
    namespace: str | None
    name: str
    created_by: str
    managed_fields: tuple[FieldsEntry, ...] = ()
    #: The Helm chart that rendered it (its ``helm.sh/chart`` label without the version), None for none.
    chart: str | None = None
    #: Its ``pulumi.com/patchFieldManager`` annotation: when set, the program's field manager on it.
    patch_field_manager: str | None = None

    def describe(self) -> str:
        """``Deployment istio-system/istiod``, ``Namespace istio-system``."""
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass
class ClusterFacts:
    """What a cluster's own API server says (read with the admin kubeconfig)."""

    name: str
    expected_network: str | None
    #: The cluster could not be read at all (unreachable, bad kubeconfig, forbidden namespace read).
    api_error: str | None = None
    #: Reads that failed while the rest could be read, per topic ("cacerts", "remote-secrets", "gateway",
    #: "service"): "Secret istio-system/cacerts: HTTP 403: ...". The checks of a topic listed here are skipped.
    read_errors: dict[str, str] = field(default_factory=dict)
    network_label: str | None = None
    istio_namespace_exists: bool = True
    cacerts_keys: list[str] = field(default_factory=list)
    root_pem: str | None = None
    intermediate_pem: str | None = None
    remote_secrets: list[RemoteSecretFacts] = field(default_factory=list)
    gateway_exists: bool = False
    gateway_addresses: list[str] = field(default_factory=list)
    gateway_network_label: str | None = None
    #: The east-west gateway's pods (label istio=eastwestgateway), by name: whether each is ready. None: not
    #: read (they are read for the traffic test, ``--traffic``).
    gateway_pods: dict[str, bool] | None = None
    #: Ready endpoint addresses of the named service in this cluster (its EndpointSlices).
    service_endpoints: list[str] = field(default_factory=list)
    service_exists: bool = False
    #: Running pods the service selects: {"name", "ip", "network"} (their topology.istio.io/network label,
    #: which the sidecar injector stamps at injection and istiod prefers to the namespace's; None if unset).
    service_pods: list[dict[str, Any]] = field(default_factory=list)
    #: The service's TCP ports (Service spec), for the proxy view's ``outbound|<port>||<host>`` clusters.
    service_ports: list[int] = field(default_factory=list)
    #: Pods the proxy view stands in for: a running client pod (``--client``, default app=sleep) in the
    #: service's namespace and a running east-west gateway pod: {"name", "ip", "labels", "serviceAccount"}.
    client_pod: dict[str, Any] | None = None
    gateway_pod: dict[str, Any] | None = None
    #: istiod's version (its Deployment's image tag), sent as the probe's ISTIO_VERSION.
    istio_version: str | None = None
    #: The objects the program created here, with their field managers (the edits check, ``verify.edits``);
    #: None: not read.
    mesh_objects: list[MeshObject] | None = None
    #: Lists of them that failed ("Deployments in istio-system: HTTP 403: ..."): nothing is said about those.
    unread_objects: list[str] = field(default_factory=list)


@dataclass
class ProxyFacts:
    """What one istiod sends over xDS to a sidecar of the client pod (EDS of the service's outbound
    clusters) and to the east-west gateway (its listener on 15443)."""

    cluster: str
    #: The node ids the probe presented, and whether they stand in for no real pod ("stand-in").
    client_node: str = ""
    gateway_node: str = ""
    #: Per outbound cluster name: [{"address", "port", "weight", "tlsMode", "clusterId"}]
    endpoints: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: Problems istiod's answer showed that are not an endpoint list (a cluster missing from CDS, ...).
    notes: list[str] = field(default_factory=list)
    #: The gateway's 15443 listener: {"exists", "autoPassthrough", "routes": {cluster: bool}, "problems"}.
    listener: dict[str, Any] | None = None
    #: The exchange failed (istiod unreachable over xDS, timed out): nothing else here is meaningful.
    error: str | None = None
    gateway_error: str | None = None


@dataclass
class IstiodFacts:
    """What one istiod says about the mesh."""

    cluster: str
    address: str
    error: str | None = None
    ready: bool = False
    #: /debug/clusterz: [{"id", "secretName", "syncStatus"}]
    clusters: list[dict[str, str]] = field(default_factory=list)
    #: /debug/networkz: [{"network", "cluster", "address", "port"}]
    gateways: list[dict[str, Any]] = field(default_factory=list)
    #: /debug/endpointShardz for the service: [{"cluster", "network", "address", "port", "labels"}]
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    #: The certificate istiod serves on 15012 (PEM), and the TLS error verifying it against the mesh root.
    serving_cert_pem: str | None = None
    tls_error: str | None = None
    #: What a proxy is sent (``--proxy-view``), None when not asked.
    proxy: ProxyFacts | None = None


@dataclass(frozen=True)
class Reply:
    """One request of the traffic test: who answered (helloworld's version and instance, a pod's name), or
    why it failed (curl's error, the HTTP status and body, or that the exec ended before it)."""

    version: str | None = None
    instance: str | None = None
    error: str | None = None


@dataclass
class TrafficFacts:
    """The walkthrough's last step from one cluster (``--traffic``): requests sent from its ``sleep`` pod to
    the service (``kubectl exec ... curl``, done through the API server's pod exec)."""

    cluster: str
    namespace: str
    url: str
    #: Requests asked for; ``replies`` holds one entry per request when the test ran.
    requests: int
    pod: str | None = None
    replies: list[Reply] = field(default_factory=list)
    #: The test could not run (no running sleep pod, exec refused or broken), with the API server's text.
    error: str | None = None


@dataclass(frozen=True)
class Finding:
    """A failure: where, which check, the cause in one sentence, and what fixes it. The report's ``warnings``
    have the same shape: something to look at that does not make verify fail (``verify.edit_checks``)."""

    cluster: str
    check: str
    cause: str
    fix: str
    #: The other cluster(s) a finding about a pair concerns: the peer of a remote secret or of istiod's sync,
    #: the clusters whose gateway or endpoints istiod lacks. Empty when the finding is about ``cluster`` alone.
    #: The traffic check names causes by it (``verify.traffic_checks``).
    about: tuple[str, ...] = ()


def network_of(c: ClusterFacts) -> str | None:
    """The cluster's network: as configured, else as labelled."""
    return c.expected_network or c.network_label


def is_multi_network(clusters: Sequence[ClusterFacts]) -> bool:
    return len({network_of(c) or c.name for c in clusters}) > 1


def stale_network_pods(c: ClusterFacts) -> dict[str, list[str]]:
    """The service's pods whose network label names another network than the cluster's, by that network."""
    net = network_of(c)
    out: dict[str, list[str]] = {}
    for p in c.service_pods:
        if net and p.get("network") and p["network"] != net:
            out.setdefault(str(p["network"]), []).append(str(p["name"]))
    return out
