"""The checks: pure functions from facts to findings, one per failure mode of a multi-primary,
multi-network mesh (reference/ISTIO_FACTS.md). ``diagnose`` runs them all. This module holds the checks of
what each cluster's API server holds; those of what each istiod reports are in ``verify.istiod_checks``,
those of the proxy view in ``verify.proxy_checks``.

Each finding names where (cluster), which check, the cause in one sentence, and the fix. A check whose
facts could not be read (``ClusterFacts.read_errors``) concludes nothing; the read error is the finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from istio_mesh.constants import (
    CA_CERT_KEY,
    CACERTS_SECRET,
    EASTWEST_RELEASE,
    EASTWEST_SELECTOR,
    ISTIO_NAMESPACE,
    MULTICLUSTER_LABEL,
    NETWORK_LABEL,
    REMOTE_SECRET_PREFIX,
    ROOT_CERT_KEY,
)
from istio_mesh.rotation import split_pems
from istio_mesh.trust_gate import fingerprints

from .certs import chains
from .facts import ClusterFacts, Finding, IstiodFacts, is_multi_network, network_of, stale_network_pods
from .istiod_checks import check_istiod_ca, check_istiod_endpoints, check_istiod_gateways, check_sync
from .proxy_checks import check_gateway_listener, check_proxy_endpoints

#: What verify reads in each cluster, for the finding that says a read was refused.
_READS = (
    f"Namespace {ISTIO_NAMESPACE}, Secrets, Services and Pods in {ISTIO_NAMESPACE}, the service's Service, "
    "EndpointSlices and Pods"
)

_GATEWAY_SELECTOR = ",".join(f"{k}={v}" for k, v in EASTWEST_SELECTOR.items())


# ---- one cluster's own objects ------------------------------------------------------------------------


def check_api(c: ClusterFacts) -> list[Finding]:
    """The cluster can be read at all, and every read succeeded."""
    if c.api_error:
        return [
            Finding(
                c.name,
                "api",
                f"cannot read cluster {c.name} with its kubeconfig: {c.api_error}",
                "check the kubeconfig and context in the stack config",
            )
        ]
    return [
        Finding(
            c.name,
            "api",
            f"cannot read {problem} in {c.name} (checks of {topic} skipped)",
            f"give the kubeconfig's user read access to {_READS}",
        )
        for topic, problem in sorted(c.read_errors.items())
    ]


def check_installed(c: ClusterFacts) -> list[Finding]:
    if c.istio_namespace_exists:
        return []
    return [Finding(c.name, "install", f"namespace {ISTIO_NAMESPACE} does not exist in {c.name}", "run pulumi up")]


def check_network_label(c: ClusterFacts) -> list[Finding]:
    """istiod reads its cluster's network from the label on its namespace."""
    if not c.expected_network or c.network_label == c.expected_network:
        return []
    found = f"is {c.network_label!r}" if c.network_label else "is missing"
    return [
        Finding(
            c.name,
            "network-label",
            f"label {NETWORK_LABEL} on namespace {ISTIO_NAMESPACE} in {c.name} {found} (expected "
            f"{c.expected_network!r}): istiod puts {c.name}'s endpoints on no or the wrong network, so other "
            "networks are sent pod IPs instead of the east-west gateway",
            "pulumi up --refresh restores the label",
        )
    ]


def check_pod_networks(c: ClusterFacts, service_host: str) -> list[Finding]:
    """The service's pods are on the cluster's network. The sidecar injector stamps each pod it injects with
    ``topology.istio.io/network`` as configured at that moment, and istiod takes a pod's label over its
    namespace's: pods injected before a network change stay on the old network until they are recreated."""
    if "service" in c.read_errors:
        return []
    return [
        Finding(
            c.name,
            "pod-network",
            f"pods {', '.join(pods)} of {service_host} in {c.name} carry {NETWORK_LABEL}={label} (stamped when "
            f"they were injected), but {c.name} is on network {network_of(c)}: every istiod puts their "
            f"endpoints on {label}",
            "recreate them so the injector stamps the current network (kubectl rollout restart of their "
            "Deployment; pulumi up rolls the sample apps, whose pod templates name the network)",
        )
        for label, pods in sorted(stale_network_pods(c).items())
    ]


def check_cacerts(c: ClusterFacts) -> list[Finding]:
    """``cacerts`` holds the cluster's intermediate, signed by the root it carries."""
    if "cacerts" in c.read_errors:
        return []
    if not c.root_pem or not c.intermediate_pem:
        return [
            Finding(
                c.name,
                "ca",
                f"Secret {ISTIO_NAMESPACE}/{CACERTS_SECRET} in {c.name} is missing or incomplete "
                f"(keys: {c.cacerts_keys or 'none'})",
                "pulumi up --refresh recreates it and rolls istiod (which reads a plugged-in CA only at start-up); "
                "without Pulumi: recreate it, then kubectl -n istio-system rollout restart deploy/istiod",
            )
        ]
    if not any(chains(c.intermediate_pem, root) for root in split_pems(c.root_pem)):
        return [
            Finding(
                c.name,
                "ca",
                f"{CA_CERT_KEY} in {c.name}'s cacerts is not signed by its {ROOT_CERT_KEY}",
                "pulumi up --refresh",
            )
        ]
    return []


def check_gateway_service(c: ClusterFacts) -> list[Finding]:
    """The east-west gateway Service exists and has an address other networks can reach."""
    if "gateway" in c.read_errors:
        return []
    if not c.gateway_exists:
        return [
            Finding(
                c.name,
                "gateway",
                f"{c.name} has no east-west gateway Service {ISTIO_NAMESPACE}/{EASTWEST_RELEASE}",
                "pulumi up --refresh",
            )
        ]
    if not c.gateway_addresses:
        return [
            Finding(
                c.name,
                "gateway",
                f"the east-west gateway of {c.name} has no address (LoadBalancer pending, no externalIPs): other "
                "networks cannot reach its workloads",
                "give it externalIPs or a load balancer (stack config clusters[].eastWestGateway)",
            )
        ]
    return []


def check_gateway_pods(c: ClusterFacts) -> list[Finding]:
    """The east-west gateway has a ready pod (checked when its pods were read, with ``--traffic``): without
    one, its Service's address leads nowhere and other networks' requests to this cluster fail."""
    if c.gateway_pods is None or any(c.gateway_pods.values()):
        return []
    seen = f"{len(c.gateway_pods)} pod(s), none ready" if c.gateway_pods else "no pod"
    return [
        Finding(
            c.name,
            "gateway-pod",
            f"the east-west gateway of {c.name} has no ready pod ({seen} labelled {_GATEWAY_SELECTOR} in "
            f"{ISTIO_NAMESPACE}): requests from other networks to {c.name}'s workloads have nowhere to go",
            f"kubectl -n {ISTIO_NAMESPACE} describe pods -l {_GATEWAY_SELECTOR} says why; pulumi up --refresh "
            "restores its Deployment",
        )
    ]


def check_remote_secrets(c: ClusterFacts, names: Sequence[str]) -> list[Finding]:
    """One remote secret per other cluster, keyed by that cluster's name, whose credentials work there."""
    if "remote-secrets" in c.read_errors:
        return []
    out: list[Finding] = []
    for other in names:
        if other == c.name:
            continue
        meant = [
            rs
            for rs in c.remote_secrets
            if rs.annotation_cluster == other or rs.name == f"{REMOTE_SECRET_PREFIX}{other}" or other in rs.keys
        ]
        if not meant:
            out.append(
                Finding(
                    c.name,
                    "remote-secret",
                    f"{c.name} has no remote secret for {other} (a Secret in {ISTIO_NAMESPACE} labelled "
                    f"{MULTICLUSTER_LABEL}=true with a data key '{other}'): its istiod cannot see {other}",
                    "pulumi up --refresh recreates it",
                    about=(other,),
                )
            )
        for rs in meant:
            if other not in rs.keys:
                out.append(
                    Finding(
                        c.name,
                        "remote-secret",
                        f"remote secret {rs.name} in {c.name} has data key(s) {rs.keys}, not '{other}': istiod takes "
                        f"the key as the cluster ID, so {other} is never synced under its own name",
                        "pulumi up --refresh rewrites the secret",
                        about=(other,),
                    )
                )
            for key in rs.keys:
                target = key if key in names else other
                problem = rs.access.get(key)
                if problem:
                    out.append(
                        Finding(
                            c.name,
                            "remote-access",
                            f"remote secret {rs.name} in {c.name} (key '{key}') cannot be used on {target}'s API "
                            f"server {rs.servers.get(key, '?')}: {problem}",
                            "pulumi up --refresh rewrites it from the stack's apiServer and the reader token; check "
                            "that the server is reachable from the reading cluster",
                            about=(target,),
                        )
                    )
                missing = rs.missing_permissions.get(key) or []
                if missing:
                    out.append(
                        Finding(
                            c.name,
                            "remote-access",
                            f"the reader behind remote secret {rs.name} in {c.name} is not authorised in {target}: it "
                            f"cannot {', '.join(missing)}",
                            f"pulumi up --refresh restores the reader's ClusterRole and bindings in {target} (if "
                            "only Secrets are missing: remoteAccess.readSecrets is false, and istiod reports the "
                            "peer 'timeout' while discovery still works)",
                            about=(target,),
                        )
                    )
    return out


def check_roots(clusters: Sequence[ClusterFacts], root_pem: str | None) -> list[Finding]:
    """Every cluster's ``cacerts`` carries the mesh root (or, without a known root, the same root)."""
    # During a root rotation ``root_pem`` and each cacerts hold two roots: compared as sets.
    roots = {
        c.name: ", ".join(sorted(f[:23] + "..." for f in fingerprints(c.root_pem)))
        for c in clusters
        if c.root_pem and c.intermediate_pem and not c.api_error and c.istio_namespace_exists
    }
    if root_pem:
        mesh_root = ", ".join(sorted(f[:23] + "..." for f in fingerprints(root_pem)))
        return [
            Finding(
                name,
                "root",
                f"the root in {name}'s cacerts (sha256 {fp}) is not the mesh root (sha256 {mesh_root})",
                "pulumi up --refresh",
            )
            for name, fp in roots.items()
            if fp != mesh_root
        ]
    if len(set(roots.values())) > 1:
        listing = ", ".join(f"{n}: sha256 {fp[:16]}..." for n, fp in roots.items())
        return [
            Finding(
                "mesh",
                "root",
                f"the clusters' cacerts hold different roots ({listing}): cross-cluster mTLS fails",
                "use one root for all",
            )
        ]
    return []


def diagnose(
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    root_pem: str | None,
    service_host: str,
) -> list[Finding]:
    """Every failure the facts show, each with its cause and fix."""
    out: list[Finding] = []
    names = [c.name for c in clusters]
    multi_network = is_multi_network(clusters)
    for c in clusters:
        out += check_api(c)
        if c.api_error:
            continue
        out += check_installed(c)
        if not c.istio_namespace_exists:
            continue
        out += check_network_label(c)
        out += check_pod_networks(c, service_host)
        out += check_cacerts(c)
        if multi_network:
            out += check_gateway_service(c)
            out += check_gateway_pods(c)
        out += check_remote_secrets(c, names)
    out += check_roots(clusters, root_pem)
    by_name: Mapping[str, ClusterFacts] = {c.name: c for c in clusters}
    for i in istiods:
        if i.error:
            out.append(
                Finding(i.cluster, "istiod", i.error, "check that istiod runs (kubectl -n istio-system get pods)")
            )
            continue
        out += check_sync(i, names)
        out += check_istiod_ca(i, by_name.get(i.cluster))
        if multi_network:
            out += check_istiod_gateways(i, clusters)
        out += check_istiod_endpoints(i, clusters, service_host)
        out += check_proxy_endpoints(i, clusters, service_host)
        if multi_network:
            out += check_gateway_listener(i, service_host)
    return out
