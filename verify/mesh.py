"""``scripts/verify`` (``python -m verify``): prove that the clusters form one mesh.

The proof comes from what every istiod and every API server says.

For every istiod of the mesh it reports

* the clusters it has synced (what ``istioctl remote-clusters`` shows: istiod's ``/debug/clusterz``),
* the CA it signs with: the certificate istiod serves on its xDS TLS port (15012) must chain to the
  mesh root and be issued by that cluster's intermediate in ``cacerts``,
* the gateway it knows for each network (``/debug/networkz``: east-west gateway address, port 15443),
* for a named service (``helloworld.sample`` by default) its endpoints per cluster and network
  (``/debug/endpointShardz``); endpoints on another network are reached through that network's gateway.

When something is wrong it names the cause, from the failure modes of multi-primary meshes
(reference/ISTIO_FACTS.md): a remote secret whose data key is not the cluster name, an API server the
remote secret cannot reach or is not authorised on, a missing network label, a gateway without an
address, an istiod on a self-signed CA, roots that differ. The causes come from the clusters' own
objects (read with the admin kubeconfigs) and from the remote secrets' credentials, tried from here.

The module has three layers: ``collect_*`` read facts (network and Kubernetes API), ``diagnose`` is a
pure function from facts to findings (unit-tested with plain data), ``render_text``/``report_json``
print them. ``main`` is the command line (``scripts/verify``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import http.client
import json
import socket
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from istio_mesh.constants import (
    CA_CERT_KEY,
    CACERTS_SECRET,
    CLUSTER_ANNOTATION,
    CROSS_NETWORK_PORT,
    EASTWEST_RELEASE,
    ISTIO_NAMESPACE,
    MULTICLUSTER_LABEL,
    NETWORK_LABEL,
    READER_RULES,
    REMOTE_SECRET_PREFIX,
    ROOT_CERT_KEY,
    SECRET_RULE,
)

#: What a remote istiod must be able to list and watch in a cluster it reads (``istio_mesh.constants``:
#: the narrow reader's rules, Secrets included: without them istiod never reports the peer synced).
READER_NEEDS: tuple[tuple[str, str], ...] = tuple(
    (group, resource)
    for groups, resources in (*READER_RULES, SECRET_RULE)
    for group in groups
    for resource in resources
)
ISTIOD_SERVER_NAME = "istiod.istio-system.svc"
DEFAULT_SERVICE = "helloworld.sample"


# ---- facts --------------------------------------------------------------------------------------------


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


@dataclass
class ClusterFacts:
    """What a cluster's own API server says (read with the admin kubeconfig)."""

    name: str
    expected_network: str | None
    api_error: str | None = None
    network_label: str | None = None
    istio_namespace_exists: bool = True
    cacerts_keys: list[str] = field(default_factory=list)
    root_pem: str | None = None
    intermediate_pem: str | None = None
    remote_secrets: list[RemoteSecretFacts] = field(default_factory=list)
    gateway_exists: bool = False
    gateway_addresses: list[str] = field(default_factory=list)
    gateway_network_label: str | None = None
    #: Ready endpoint addresses of the named service in this cluster (its EndpointSlices).
    service_endpoints: list[str] = field(default_factory=list)
    service_exists: bool = False


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


@dataclass(frozen=True)
class Finding:
    """A failure: where, which check, the cause in one sentence, and what fixes it."""

    cluster: str
    check: str
    cause: str
    fix: str


# ---- access to istiod ---------------------------------------------------------------------------------


class IstiodAccess(Protocol):
    """How to reach one istiod: its HTTP debug port (8080) and its xDS TLS port (15012)."""

    address: str

    def http_get(self, path: str) -> bytes: ...

    def tls_socket(self) -> socket.socket: ...


class DirectAccess:
    """istiod reachable from here (the lab runs istiod as a local process)."""

    def __init__(self, http_hostport: str, tls_hostport: str, timeout: float = 10.0) -> None:
        self.http = _hostport(http_hostport)
        self.tls = _hostport(tls_hostport)
        self.timeout = timeout
        self.address = f"http://{http_hostport}"

    def http_get(self, path: str) -> bytes:
        return _get(http.client.HTTPConnection(*self.http, timeout=self.timeout), path)

    def tls_socket(self) -> socket.socket:
        return socket.create_connection(self.tls, timeout=self.timeout)


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    """GET ``path`` on an istiod HTTP connection; anything but 200 is an OSError naming the status."""
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise OSError(f"GET {path}: HTTP {resp.status} {body[:200]!r}")
        return body
    finally:
        conn.close()


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


# ---- collecting ---------------------------------------------------------------------------------------


def _pem_fingerprint(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _subject(pem: str | None) -> str:
    if not pem:
        return "-"
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def collect_istiod(cluster: str, access: IstiodAccess, service_host: str, root_pem: str | None) -> IstiodFacts:
    """Reads istiod's debug endpoints and its serving certificate."""
    f = IstiodFacts(cluster=cluster, address=access.address)
    try:
        f.ready = access.http_get("/ready") is not None
        f.clusters = [
            {"id": e.get("id", ""), "secretName": e.get("secretName", ""), "syncStatus": e.get("syncStatus", "")}
            for e in json.loads(access.http_get("/debug/clusterz") or b"[]") or []
        ]
        f.gateways = [
            {
                "network": g.get("Network", ""),
                "cluster": g.get("Cluster", ""),
                "address": g.get("Addr", ""),
                "port": g.get("Port"),
            }
            for g in json.loads(access.http_get("/debug/networkz") or b"[]") or []
        ]
        shards = json.loads(access.http_get("/debug/endpointShardz") or b"{}") or {}
        f.endpoints = endpoints_of(shards, service_host)
    except (OSError, ValueError) as e:
        f.error = f"cannot read istiod's debug endpoints at {access.address}: {e}"
        return f
    f.serving_cert_pem, f.tls_error = _serving_cert(access, root_pem)
    return f


def endpoints_of(shards: Mapping[str, Any], service_host: str) -> list[dict[str, Any]]:
    """Flattens ``/debug/endpointShardz`` for one service host into one row per endpoint."""
    rows = []
    for _ns, entry in (shards.get(service_host) or {}).items():
        for shard, eps in ((entry or {}).get("Shards") or {}).items():
            cluster = shard.split("/", 1)[1] if "/" in shard else shard
            for e in eps or []:
                addresses = e.get("Addresses") or ([e["Address"]] if e.get("Address") else [])
                rows.append(
                    {
                        "cluster": cluster,
                        "network": e.get("Network", ""),
                        "address": addresses[0] if addresses else "",
                        "port": e.get("EndpointPort"),
                        "labels": e.get("Labels") or {},
                        "tlsMode": e.get("TLSMode", ""),
                    }
                )
    return sorted(rows, key=lambda r: (r["cluster"], r["address"]))


def _serving_cert(access: IstiodAccess, root_pem: str | None) -> tuple[str | None, str | None]:
    """(istiod's 15012 certificate as PEM, the error verifying it against the root — None if it verifies)."""
    tls_error = None
    if root_pem:
        ctx = ssl.create_default_context(cadata=root_pem)
        try:
            with access.tls_socket() as raw, ctx.wrap_socket(raw, server_hostname=ISTIOD_SERVER_NAME) as tls:
                der = tls.getpeercert(binary_form=True)
                if der:
                    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode(), None
        except ssl.SSLCertVerificationError as e:
            tls_error = e.verify_message or str(e)
        except (OSError, ssl.SSLError) as e:
            return None, f"TLS handshake failed: {e}"
    else:
        tls_error = "no mesh root to verify against"
    # Not verifiable: fetch the certificate anyway to say who issued it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with access.tls_socket() as raw, ctx.wrap_socket(raw, server_hostname=ISTIOD_SERVER_NAME) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as e:
        return None, f"TLS handshake failed: {e}"
    return (x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode() if der else None), tls_error


def _k8s(kubeconfig: Mapping[str, Any], context: str | None = None) -> Any:
    from kubernetes import config

    return config.new_client_from_config_dict(dict(kubeconfig), context=context)


def _api_error_text(e: Exception) -> str:
    status = getattr(e, "status", None)
    if status:
        reason = getattr(e, "reason", "")
        with contextlib.suppress(ValueError):
            reason = json.loads(getattr(e, "body", "") or "{}").get("message", reason)
        return f"HTTP {status}: {reason}"
    # urllib3 wraps the socket error twice (MaxRetryError -> NewConnectionError): report the innermost.
    while isinstance(getattr(e, "reason", None), Exception):
        e = e.reason  # type: ignore[attr-defined]
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "): " in text and text.startswith(("HTTPConnection(", "HTTPSConnection(", "<urllib3")):
        text = text.split("): ", 1)[1]
    return text[:300]


def probe_remote_credentials(kubeconfig: Mapping[str, Any], timeout: float = 5.0) -> tuple[str | None, list[str]]:
    """Uses a remote secret's kubeconfig as istiod would: (access problem or None, permissions missing)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        api = _k8s(kubeconfig)
        api.configuration.retries = 0
    except Exception as e:  # any malformed kubeconfig is the finding
        return f"its kubeconfig is unusable: {e}", []
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
    except ApiException as e:
        if e.status == 401:
            return "unauthorised: the API server rejects the token (HTTP 401)", []
        if e.status != 403:  # 403 on /version still proves the server and the token answered
            return f"the API server answered {_api_error_text(e)}", []
    except Exception as e:  # connection refused, TLS, DNS: the server is unreachable
        return f"unreachable from here: {_api_error_text(e)}", []
    missing = []
    authz = client.AuthorizationV1Api(api)
    for group, resource in READER_NEEDS:
        for verb in ("list", "watch"):
            review = client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(group=group, resource=resource, verb=verb)
                )
            )
            try:
                status = authz.create_self_subject_access_review(review, _request_timeout=timeout).status
                allowed = bool(status and status.allowed)
            except ApiException as e:
                if e.status == 401:
                    return "unauthorised: the API server rejects the token (HTTP 401)", []
                allowed = False
            if not allowed:
                missing.append(f"{verb} {resource}{'.' + group if group else ''}")
    return None, missing


def _read(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Calls a kubernetes-client method and returns the JSON body as plain data (dicts and lists)."""
    resp = fn(*args, _preload_content=False, _request_timeout=10, **kw)
    return json.loads(resp.data or b"null")


def collect_cluster(
    name: str,
    kubeconfig: Mapping[str, Any],
    context: str | None,
    expected_network: str | None,
    service: tuple[str, str],
    probe: Callable[[Mapping[str, Any]], tuple[str | None, list[str]]] = probe_remote_credentials,
) -> ClusterFacts:
    """Reads one cluster through its admin kubeconfig."""
    import yaml
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    f = ClusterFacts(name=name, expected_network=expected_network)
    try:
        api = _k8s(kubeconfig, context)
        api.configuration.retries = 1
        core = client.CoreV1Api(api)
        ns = _read(core.read_namespace, ISTIO_NAMESPACE)
    except ApiException as e:
        if e.status == 404:
            f.istio_namespace_exists = False
        else:
            f.api_error = _api_error_text(e)
        return f
    except Exception as e:  # unreachable or bad kubeconfig: reported, not raised
        f.api_error = _api_error_text(e)
        return f
    f.network_label = (ns["metadata"].get("labels") or {}).get(NETWORK_LABEL)

    try:
        cacerts = _read(core.read_namespaced_secret, CACERTS_SECRET, ISTIO_NAMESPACE)
        data = {k: base64.b64decode(v).decode() for k, v in (cacerts.get("data") or {}).items()}
        f.cacerts_keys = sorted(data)
        f.root_pem = data.get(ROOT_CERT_KEY)
        f.intermediate_pem = data.get(CA_CERT_KEY)
    except ApiException as e:
        if e.status != 404:
            raise

    secrets = _read(core.list_namespaced_secret, ISTIO_NAMESPACE, label_selector=f"{MULTICLUSTER_LABEL}=true")
    for s in sorted(secrets.get("items") or [], key=lambda s: str(s["metadata"]["name"])):
        data = s.get("data") or {}
        rs = RemoteSecretFacts(
            name=s["metadata"]["name"],
            annotation_cluster=(s["metadata"].get("annotations") or {}).get(CLUSTER_ANNOTATION),
            keys=sorted(data),
        )
        for key, value in sorted(data.items()):
            try:
                kc = yaml.safe_load(base64.b64decode(value).decode())
                ctx_name = kc.get("current-context")
                ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
                rs.servers[key] = next(c["cluster"]["server"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
            except Exception as e:  # any malformed kubeconfig is the finding
                rs.access[key] = f"its kubeconfig cannot be parsed ({type(e).__name__}: {e})"
                continue
            rs.access[key], rs.missing_permissions[key] = probe(kc)
        f.remote_secrets.append(rs)

    try:
        svc = _read(core.read_namespaced_service, EASTWEST_RELEASE, ISTIO_NAMESPACE)
        f.gateway_exists = True
        f.gateway_network_label = (svc["metadata"].get("labels") or {}).get(NETWORK_LABEL)
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        f.gateway_addresses = [
            str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")
        ]
        f.gateway_addresses += list((svc.get("spec") or {}).get("externalIPs") or [])
    except ApiException as e:
        if e.status != 404:
            raise

    svc_name, svc_ns = service
    try:
        _read(core.read_namespaced_service, svc_name, svc_ns)
        f.service_exists = True
        slices = _read(
            client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
            svc_ns,
            label_selector=f"kubernetes.io/service-name={svc_name}",
        )
        for sl in slices.get("items") or []:
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is not False:
                    f.service_endpoints.extend(ep.get("addresses") or [])
        f.service_endpoints.sort()
    except ApiException as e:
        if e.status != 404:
            raise
    return f


# ---- diagnosis (pure) ---------------------------------------------------------------------------------


def _chains(cert_pem: str | None, issuer_pem: str | None) -> bool:
    if not cert_pem or not issuer_pem:
        return False
    try:
        x509.load_pem_x509_certificate(cert_pem.encode()).verify_directly_issued_by(
            x509.load_pem_x509_certificate(issuer_pem.encode())
        )
        return True
    except Exception:  # InvalidSignature, unsupported key types: not issued by it
        return False


def _is_self_signed_istiod_ca(cert_pem: str) -> bool:
    """istiod's own CA (no ``cacerts``) issues as ``O=cluster.local`` (the trust domain), no CN."""
    issuer = x509.load_pem_x509_certificate(cert_pem.encode()).issuer
    orgs = [a.value for a in issuer.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return "Istio" not in orgs


def diagnose(
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    root_pem: str | None,
    service_host: str,
) -> list[Finding]:
    """Every failure the facts show, each with its cause and fix."""
    out: list[Finding] = []
    names = [c.name for c in clusters]
    by_name = {c.name: c for c in clusters}
    multi_network = len({c.expected_network or c.network_label or c.name for c in clusters}) > 1

    def add(cluster: str, check: str, cause: str, fix: str) -> None:
        out.append(Finding(cluster, check, cause, fix))

    # --- each cluster's own objects ---
    roots: dict[str, str] = {}
    for c in clusters:
        if c.api_error:
            add(
                c.name,
                "api",
                f"cannot read cluster {c.name} with its kubeconfig: {c.api_error}",
                "check the kubeconfig and context in the stack config",
            )
            continue
        if not c.istio_namespace_exists:
            add(c.name, "install", f"namespace {ISTIO_NAMESPACE} does not exist in {c.name}", "run pulumi up")
            continue
        if c.expected_network and c.network_label != c.expected_network:
            found = f"is {c.network_label!r}" if c.network_label else "is missing"
            add(
                c.name,
                "network-label",
                f"label {NETWORK_LABEL} on namespace {ISTIO_NAMESPACE} in {c.name} {found} (expected "
                f"{c.expected_network!r}): istiod puts {c.name}'s endpoints on no or the wrong network, so other "
                "networks are sent pod IPs instead of the east-west gateway",
                "pulumi up --refresh restores the label",
            )
        if not c.root_pem or not c.intermediate_pem:
            add(
                c.name,
                "ca",
                f"Secret {ISTIO_NAMESPACE}/{CACERTS_SECRET} in {c.name} is missing or incomplete "
                f"(keys: {c.cacerts_keys or 'none'})",
                "pulumi up --refresh recreates it and rolls istiod (which reads a plugged-in CA only at start-up); "
                "without Pulumi: recreate it, then kubectl -n istio-system rollout restart deploy/istiod",
            )
        else:
            roots[c.name] = _pem_fingerprint(c.root_pem)
            if not _chains(c.intermediate_pem, c.root_pem):
                add(
                    c.name,
                    "ca",
                    f"{CA_CERT_KEY} in {c.name}'s cacerts is not signed by its {ROOT_CERT_KEY}",
                    "pulumi up --refresh",
                )
        if multi_network:
            if not c.gateway_exists:
                add(
                    c.name,
                    "gateway",
                    f"{c.name} has no east-west gateway Service {ISTIO_NAMESPACE}/{EASTWEST_RELEASE}",
                    "pulumi up --refresh",
                )
            elif not c.gateway_addresses:
                add(
                    c.name,
                    "gateway",
                    f"the east-west gateway of {c.name} has no address (LoadBalancer pending, no externalIPs): other "
                    "networks cannot reach its workloads",
                    "give it externalIPs or a load balancer (stack config clusters[].eastWestGateway)",
                )
        # remote secrets: one per other cluster, keyed by that cluster's name, usable.
        for other in names:
            if other == c.name:
                continue
            meant = [
                rs
                for rs in c.remote_secrets
                if rs.annotation_cluster == other or rs.name == f"{REMOTE_SECRET_PREFIX}{other}" or other in rs.keys
            ]
            if not meant:
                add(
                    c.name,
                    "remote-secret",
                    f"{c.name} has no remote secret for {other} (a Secret in {ISTIO_NAMESPACE} labelled "
                    f"{MULTICLUSTER_LABEL}=true with a data key '{other}'): its istiod cannot see {other}",
                    "pulumi up --refresh recreates it",
                )
            for rs in meant:
                if other not in rs.keys:
                    add(
                        c.name,
                        "remote-secret",
                        f"remote secret {rs.name} in {c.name} has data key(s) {rs.keys}, not '{other}': istiod takes "
                        f"the key as the cluster ID, so {other} is never synced under its own name",
                        "pulumi up --refresh rewrites the secret",
                    )
                for key in rs.keys:
                    target = key if key in names else other
                    problem = rs.access.get(key)
                    if problem:
                        add(
                            c.name,
                            "remote-access",
                            f"remote secret {rs.name} in {c.name} (key '{key}') cannot be used on {target}'s API "
                            f"server "
                            f"{rs.servers.get(key, '?')}: {problem}",
                            "pulumi up --refresh rewrites it from the stack's apiServer and the reader token; check "
                            "that the server is reachable from the reading cluster",
                        )
                    missing = rs.missing_permissions.get(key) or []
                    if missing:
                        add(
                            c.name,
                            "remote-access",
                            f"the reader behind remote secret {rs.name} in {c.name} is not authorised in {target}: it "
                            f"cannot {', '.join(missing)}",
                            f"pulumi up --refresh restores the reader's ClusterRole and bindings in {target} (if "
                            "only Secrets are missing: remoteAccess.readSecrets is false, and istiod reports the "
                            "peer 'timeout' while discovery still works)",
                        )
    if root_pem:
        mesh_root = _pem_fingerprint(root_pem)
        for c_name, fp in roots.items():
            if fp != mesh_root:
                add(
                    c_name,
                    "root",
                    f"the root in {c_name}'s cacerts (sha256 {fp[:16]}...) is not the mesh root "
                    f"(sha256 {mesh_root[:16]}...)",
                    "pulumi up --refresh",
                )
    elif len(set(roots.values())) > 1:
        listing = ", ".join(f"{n}: sha256 {fp[:16]}..." for n, fp in roots.items())
        add(
            "mesh",
            "root",
            f"the clusters' cacerts hold different roots ({listing}): cross-cluster mTLS fails",
            "use one root for all",
        )

    # --- each istiod's view ---
    gateway_addr = {
        (c.expected_network or c.network_label): (c.gateway_addresses[0] if c.gateway_addresses else None)
        for c in clusters
    }
    for i in istiods:
        cf = by_name.get(i.cluster)
        if i.error:
            add(i.cluster, "istiod", i.error, "check that istiod runs (kubectl -n istio-system get pods)")
            continue
        seen = {e["id"]: e for e in i.clusters}
        for other in names:
            entry = seen.get(other)
            if other == i.cluster:
                if entry is None or entry["syncStatus"] != "synced":
                    add(
                        i.cluster,
                        "sync",
                        f"istiod of {i.cluster} has not synced its own cluster "
                        f"(status {entry and entry['syncStatus']})",
                        "check istiod's RBAC and logs",
                    )
                continue
            if entry is None or entry["syncStatus"] != "synced":
                state = f"status '{entry['syncStatus']}'" if entry else "not listed"
                add(
                    i.cluster,
                    "sync",
                    f"istiod of {i.cluster} has not synced {other} ({state}); see the remote-secret / remote-access "
                    "findings for the cause",
                    "fix the cause; istiod retries on its own",
                )
        for cid, e in seen.items():
            if cid not in names:
                add(
                    i.cluster,
                    "sync",
                    f"istiod of {i.cluster} knows a cluster '{cid}' that is not in the mesh "
                    f"(from {e['secretName'] or '?'})",
                    "remove that secret or its key; pulumi up --refresh restores the program's secrets",
                )
        # CA
        if i.serving_cert_pem is None:
            add(
                i.cluster,
                "ca",
                f"istiod of {i.cluster} serves no certificate on its xDS TLS port: {i.tls_error}",
                "check istiod's logs",
            )
        else:
            if i.tls_error:
                if _is_self_signed_istiod_ca(i.serving_cert_pem):
                    cause = (
                        f"istiod of {i.cluster} signs with its own self-signed CA "
                        f"(issuer {_cert_issuer(i.serving_cert_pem)}): "
                        f"Secret cacerts was missing when it started, so its workloads do not trust other clusters"
                    )
                else:
                    cause = (
                        f"istiod of {i.cluster}'s certificate (issuer {_cert_issuer(i.serving_cert_pem)}) "
                        f"does not chain to the mesh root: {i.tls_error}"
                    )
                add(
                    i.cluster,
                    "ca",
                    cause,
                    "make sure cacerts holds the cluster's intermediate (pulumi up --refresh also rolls istiod); "
                    "without Pulumi: kubectl -n istio-system rollout restart deploy/istiod",
                )
            elif cf and cf.intermediate_pem and not _chains(i.serving_cert_pem, cf.intermediate_pem):
                add(
                    i.cluster,
                    "ca",
                    f"istiod of {i.cluster} signs with a CA other than the intermediate in its cacerts "
                    f"(issuer {_cert_issuer(i.serving_cert_pem)})",
                    "restart istiod so it loads the current cacerts",
                )
        # Gateways per network
        if multi_network:
            # A network may have several gateways (clusters sharing it, or a Service with both a
            # load-balancer address and externalIPs): one usable on 15443 is enough.
            known: dict[str, list[dict[str, Any]]] = {}
            for g in i.gateways:
                if g.get("address"):
                    known.setdefault(g["network"], []).append(g)
            for c in clusters:
                net = c.expected_network or c.network_label
                if not net:
                    continue
                gws = known.get(net, [])
                want = gateway_addr.get(net)
                if not gws:
                    add(
                        i.cluster,
                        "gateway",
                        f"istiod of {i.cluster} knows no gateway for network {net}"
                        + ("" if want else f" ({c.name}'s east-west gateway has no address)"),
                        "see the gateway / sync findings for the cause",
                    )
                elif not any(g.get("port") == CROSS_NETWORK_PORT for g in gws):
                    add(
                        i.cluster,
                        "gateway",
                        f"istiod of {i.cluster} has the gateway(s) of {net} on port(s) "
                        f"{sorted({g.get('port') for g in gws}, key=str)}, not {CROSS_NETWORK_PORT}",
                        "pulumi up --refresh",
                    )
        # Endpoints of the service, per cluster
        have: dict[str, list[dict[str, Any]]] = {}
        for e in i.endpoints:
            have.setdefault(e["cluster"], []).append(e)
        for c in clusters:
            if not c.service_endpoints:
                continue
            got = have.get(c.name, [])
            if not got:
                add(
                    i.cluster,
                    "endpoints",
                    f"istiod of {i.cluster} has no endpoint of {service_host} from {c.name} "
                    f"({len(c.service_endpoints)} ready there)",
                    "see the sync findings for the cause",
                )
                continue
            net = c.expected_network or c.network_label
            wrong = sorted({e["network"] or "<none>" for e in got if e["network"] != net})
            if net and wrong:
                add(
                    i.cluster,
                    "endpoints",
                    f"istiod of {i.cluster} puts {service_host}'s endpoints from {c.name} on network "
                    f"{', '.join(wrong)}, not {net}",
                    f"label namespace {ISTIO_NAMESPACE} in {c.name} with {NETWORK_LABEL}={net} (pulumi up --refresh)",
                )
    return out


def _cert_issuer(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).issuer.rfc4514_string() or "<empty>"


# ---- report -------------------------------------------------------------------------------------------


def report_json(
    mesh_id: str | None,
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    findings: Sequence[Finding],
    service_host: str,
    root_pem: str | None,
) -> dict[str, Any]:
    """The machine-readable report (``--json``)."""
    gw_of = {}
    for i in istiods:
        per_network: dict[str, list[str]] = {}
        for g in i.gateways:
            per_network.setdefault(g["network"], []).append(f"{g['address']}:{g['port']}")
        gw_of[i.cluster] = {net: ", ".join(sorted(addrs)) for net, addrs in per_network.items()}
    net_of = {c.name: c.expected_network or c.network_label for c in clusters}
    doc: dict[str, Any] = {
        "ok": not findings,
        "meshId": mesh_id,
        "service": service_host,
        "rootFingerprintSha256": _pem_fingerprint(root_pem) if root_pem else None,
        "istiods": [],
        "findings": [asdict(f) for f in findings],
    }
    for i in istiods:
        local_net = net_of.get(i.cluster)
        eps = []
        for e in i.endpoints:
            # Istio treats an endpoint without a network as on the proxy's own network: pod IP, no gateway.
            remote = bool(local_net) and bool(e["network"]) and e["network"] != local_net
            eps.append(
                {
                    "cluster": e["cluster"],
                    "network": e["network"],
                    "address": e["address"],
                    "port": e["port"],
                    "via": gw_of[i.cluster].get(e["network"]) if remote else "direct",
                }
            )
        doc["istiods"].append(
            {
                "cluster": i.cluster,
                "network": local_net,
                "address": i.address,
                "error": i.error,
                "syncedClusters": i.clusters,
                "ca": {
                    "issuer": _cert_issuer(i.serving_cert_pem) if i.serving_cert_pem else None,
                    "chainsToMeshRoot": i.serving_cert_pem is not None and i.tls_error is None,
                    "error": i.tls_error,
                },
                "gateways": i.gateways,
                "endpoints": eps,
            }
        )
    return doc


def render_text(doc: Mapping[str, Any]) -> str:
    lines = [f"mesh {doc['meshId'] or '?'}: {len(doc['istiods'])} istiod(s); service {doc['service']}"]
    if doc["rootFingerprintSha256"]:
        lines.append(f"mesh root sha256 {doc['rootFingerprintSha256']}")
    for i in doc["istiods"]:
        lines.append("")
        lines.append(f"istiod of {i['cluster']} (network {i['network'] or '?'}) at {i['address']}")
        if i["error"]:
            lines.append(f"  unreachable: {i['error']}")
            continue
        synced = ", ".join(
            f"{e['id']} {e['syncStatus']}" + (f" via {e['secretName']}" if e["secretName"] else " (local)")
            for e in i["syncedClusters"]
        )
        lines.append(f"  clusters : {synced or 'none'}")
        ca = i["ca"]
        mark = (
            "chains to the mesh root" if ca["chainsToMeshRoot"] else f"DOES NOT chain to the mesh root ({ca['error']})"
        )
        lines.append(f"  CA       : issuer {ca['issuer'] or '-'}; {mark}")
        gws = "; ".join(f"{g['network']} -> {g['address']}:{g['port']} ({g['cluster']})" for g in i["gateways"])
        lines.append(f"  gateways : {gws or 'none'}")
        if not i["endpoints"]:
            lines.append("  endpoints: none")
        for e in i["endpoints"]:
            via = "direct" if e["via"] == "direct" else f"through gateway {e['via'] or 'NONE'}"
            lines.append(
                f"  endpoint : {e['cluster']}/{e['network'] or '<no network>'} {e['address']}:{e['port']} ({via})"
            )
    lines.append("")
    if doc["findings"]:
        lines.append(f"FAILED: {len(doc['findings'])} problem(s)")
        for f in doc["findings"]:
            lines.append(f"  - [{f['cluster']}] {f['check']}: {f['cause']}")
            lines.append(f"      fix: {f['fix']}")
    else:
        lines.append(
            "OK: every istiod syncs every cluster, signs under the mesh root, knows every network's gateway "
            "and sees the service in every cluster"
        )
    return "\n".join(lines)


# ---- reaching istiod through the Kubernetes API -------------------------------------------------------


class PortForwardAccess:
    """istiod reached through the Kubernetes API server (``kubectl port-forward`` to a ready istiod pod)."""

    def __init__(self, kubeconfig: Mapping[str, Any], context: str | None, timeout: float = 10.0) -> None:
        from kubernetes import client

        self.api = _k8s(kubeconfig, context)
        self.core = client.CoreV1Api(self.api)
        self.timeout = timeout
        pods = _read(self.core.list_namespaced_pod, ISTIO_NAMESPACE, label_selector="app=istiod")
        ready = [
            str(p["metadata"]["name"])
            for p in pods.get("items") or []
            if (p.get("status") or {}).get("phase") == "Running"
            and any(c.get("type") == "Ready" and c.get("status") == "True" for c in p["status"].get("conditions") or [])
        ]
        if not ready:
            raise OSError(f"no ready istiod pod (label app=istiod) in {ISTIO_NAMESPACE}")
        self.pod = sorted(ready)[0]
        self._sessions: list[Any] = []
        self.address = f"pod {ISTIO_NAMESPACE}/{self.pod} (port-forward)"

    def _socket(self, port: int) -> socket.socket:
        from kubernetes.stream import portforward

        pf = portforward(self.core.connect_get_namespaced_pod_portforward, self.pod, ISTIO_NAMESPACE, ports=str(port))
        # The client's wrapper hides one socketopt; TLS needs the real socket (one end of a socketpair
        # whose other end the client proxies over the API server's websocket).
        wrapped = pf.socket(port)
        sock: socket.socket = getattr(wrapped, "_socket", wrapped)
        sock.settimeout(self.timeout)
        self._sessions.append(pf)  # the proxy thread lives as long as the session object
        return sock

    def http_get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("istiod", timeout=self.timeout)
        conn.sock = self._socket(8080)
        return _get(conn, path)

    def tls_socket(self) -> socket.socket:
        return self._socket(15012)


# ---- command line -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A mesh cluster to verify: how to read its API server, and its expected network."""

    name: str
    network: str | None
    kubeconfig: dict[str, Any]
    context: str | None


class VerifyUsageError(Exception):
    """Bad command-line input or mesh description (exit 2, nothing was checked)."""


def targets_from_config(raw: Mapping[str, Any], base_dir: str) -> tuple[str | None, list[Target]]:
    """The mesh's clusters from the stack's ``istio-mesh`` settings (only meshId, clusters and lab are read;
    entries marked ``unreachable`` have left the mesh and are not checked)."""
    import yaml

    from stack_config.settings import ConfigError, parse_settings

    subset = {k: raw[k] for k in ("meshId", "clusters", "lab") if k in raw}
    try:
        s = parse_settings(subset, base_dir)
    except ConfigError as e:
        raise VerifyUsageError(str(e)) from None
    return s.mesh_id, [Target(c.name, c.network, yaml.safe_load(c.kubeconfig), c.context) for c in s.members]


def _pulumi_json(args: list[str], cwd: str) -> Any:
    import subprocess

    proc = subprocess.run(["pulumi", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VerifyUsageError(f"`pulumi {' '.join(args)}` failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout or "null")


def stack_inputs(stack: str | None, cwd: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the stack's istio-mesh settings, its outputs) through the Pulumi CLI."""
    sel = ["--stack", stack] if stack else []
    config = _pulumi_json(["config", *sel], cwd)  # secrets stay hidden: none is needed here
    outputs = _pulumi_json(["stack", "output", *sel], cwd)
    raw: dict[str, Any] = {}
    for key, entry in (config or {}).items():
        if key.startswith("istio-mesh:"):
            value = entry.get("objectValue", entry.get("value")) if isinstance(entry, dict) else entry
            raw[key.split(":", 1)[1]] = value
    return raw, outputs or {}


def _lab_access(name: str) -> DirectAccess:
    from lab.layout import Cluster

    if not (name.startswith("cluster") and name[7:].isdigit()):
        raise VerifyUsageError(f"--lab: {name!r} is not a lab cluster name (cluster<N>)")
    c = Cluster(int(name[7:]))
    return DirectAccess(f"{c.ip}:{c.istiod_ports[8080]}", f"{c.ip}:{c.istiod_ports[15012]}")


def run_verify(
    targets: Sequence[Target],
    access: Mapping[str, Callable[[], IstiodAccess]],
    root_pem: str | None,
    service: str,
    mesh_id: str | None,
) -> dict[str, Any]:
    """Collects everything and returns the JSON report (``ok`` false when any finding)."""
    svc_name, _, svc_ns = service.partition(".")
    svc_ns = svc_ns or "default"
    host = f"{svc_name}.{svc_ns}.svc.cluster.local"
    clusters = [collect_cluster(t.name, t.kubeconfig, t.context, t.network, (svc_name, svc_ns)) for t in targets]
    # Without a given root (a mesh Pulumi did not build, no --root-cert), istiod's certificates are
    # checked against the root every cluster's cacerts agrees on; diagnose() reports roots that differ.
    tls_root = root_pem
    if tls_root is None:
        roots = {_pem_fingerprint(c.root_pem): c.root_pem for c in clusters if c.root_pem}
        if len(roots) == 1:
            tls_root = next(iter(roots.values()))
    istiods = []
    for t in targets:
        try:
            a = access[t.name]()
        except Exception as e:  # no istiod to reach is itself the finding
            istiods.append(IstiodFacts(cluster=t.name, address="-", error=f"cannot reach istiod: {_api_error_text(e)}"))
            continue
        istiods.append(collect_istiod(t.name, a, host, tls_root))
    findings = diagnose(clusters, istiods, root_pem, host)
    return report_json(mesh_id, clusters, istiods, findings, host, tls_root)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    import yaml

    ap = argparse.ArgumentParser(
        prog="scripts/verify",
        description="Prove the clusters form one mesh: every istiod's synced clusters, CA, gateways and the "
        "endpoints of a service; exits 1 naming each cause when something is wrong.",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stack", help="Pulumi stack whose config names the clusters (default: the selected stack)")
    src.add_argument(
        "--config",
        metavar="FILE",
        help="YAML with the stack's istio-mesh settings (meshId, clusters: name, network, kubeconfig, context) "
        "for a mesh that Pulumi did not build",
    )
    ap.add_argument("--root-cert", metavar="PEM", help="the mesh root certificate (default: the stack's output)")
    ap.add_argument(
        "--service", default=DEFAULT_SERVICE, help="NAME.NAMESPACE whose endpoints to report (default %(default)s)"
    )
    ap.add_argument(
        "--istiod",
        action="append",
        default=[],
        metavar="CLUSTER=HTTP_HOST:PORT,TLS_HOST:PORT",
        help="reach this cluster's istiod directly (its 8080 and 15012); default: port-forward through the API server",
    )
    ap.add_argument("--lab", action="store_true", help="reach every istiod where the local lab runs it")
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of text")
    ap.add_argument("--project-dir", default=os.getcwd(), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        root_pem = None
        if args.config:
            try:
                with open(args.config) as fh:
                    raw = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError) as e:
                raise VerifyUsageError(f"--config {args.config}: {e}") from None
            mesh_id, targets = targets_from_config(raw, os.path.dirname(os.path.abspath(args.config)))
        else:
            raw, outputs = stack_inputs(args.stack, args.project_dir)
            mesh_id, targets = targets_from_config(raw, args.project_dir)
            root_pem = outputs.get("rootCertificatePem")
        if args.root_cert:
            try:
                with open(args.root_cert) as fh:
                    root_pem = fh.read()
            except OSError as e:
                raise VerifyUsageError(f"--root-cert: {e}") from None
        names = {t.name for t in targets}
        access: dict[str, Callable[[], IstiodAccess]] = {}
        for t in targets:
            if args.lab:
                access[t.name] = functools.partial(_lab_access, t.name)
            else:
                access[t.name] = functools.partial(PortForwardAccess, t.kubeconfig, t.context)
        for spec in args.istiod:
            name, _, rest = spec.partition("=")
            http_hp, _, tls_hp = rest.partition(",")
            if name not in names or not http_hp or not tls_hp:
                raise VerifyUsageError(
                    f"--istiod {spec!r}: expected CLUSTER=HTTP_HOST:PORT,TLS_HOST:PORT with CLUSTER one of "
                    f"{sorted(names)}"
                )
            _hostport(http_hp), _hostport(tls_hp)
            access[name] = functools.partial(DirectAccess, http_hp, tls_hp)
        doc = run_verify(targets, access, root_pem, args.service, mesh_id)
    except (VerifyUsageError, ValueError) as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    print(json.dumps(doc, indent=2) if args.json else render_text(doc))
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
