"""Reading the facts: each cluster's own objects (admin kubeconfig), each remote secret's credentials
(used from here as istiod would use them), and each istiod's debug endpoints and serving certificate.

Nothing here raises for a problem in the mesh: an API error, an unreachable server or a malformed object
is recorded in the facts, and ``verify.checks`` turns it into a finding.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable, Mapping
from typing import Any

from istio_mesh.constants import (
    CA_CERT_KEY,
    CACERTS_SECRET,
    CLUSTER_ANNOTATION,
    EASTWEST_RELEASE,
    EASTWEST_SELECTOR,
    ISTIO_NAMESPACE,
    ISTIOD_DEPLOYMENT,
    ISTIOD_SERVER_NAME,
    MULTICLUSTER_LABEL,
    NETWORK_LABEL,
    READER_RULES,
    ROOT_CERT_KEY,
    SECRET_RULE,
)

from .access import IstiodAccess
from .certs import der_to_pem
from .edits import collect_mesh_objects
from .facts import ClusterFacts, IstiodFacts, RemoteSecretFacts
from .kube import client_for, error_text, is_ready, read, status_of

#: What a remote istiod must be able to list and watch in a cluster it reads (``istio_mesh.constants``:
#: the narrow reader's rules, Secrets included: without them istiod never reports the peer synced).
READER_NEEDS: tuple[tuple[str, str], ...] = tuple(
    (group, resource)
    for groups, resources in (*READER_RULES, SECRET_RULE)
    for group in groups
    for resource in resources
)


# ---- istiod -------------------------------------------------------------------------------------------


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
    except (OSError, ValueError, AttributeError) as e:  # AttributeError: JSON of an unexpected shape
        f.error = f"cannot read istiod's debug endpoints at {access.address}: {e}"
        return f
    f.serving_cert_pem, f.tls_error = serving_cert(access, root_pem)
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


def serving_cert(access: IstiodAccess, root_pem: str | None) -> tuple[str | None, str | None]:
    """(istiod's 15012 certificate as PEM, the error verifying it against the root — None if it verifies)."""
    tls_error = None
    if root_pem:
        ctx = ssl.create_default_context(cadata=root_pem)
        try:
            with access.tls_socket() as raw, ctx.wrap_socket(raw, server_hostname=ISTIOD_SERVER_NAME) as tls:
                der = tls.getpeercert(binary_form=True)
                if der:
                    return der_to_pem(der), None
        except ssl.SSLCertVerificationError as e:
            tls_error = e.verify_message or str(e)
        except (OSError, ssl.SSLError, ValueError) as e:
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
        return (der_to_pem(der) if der else None), tls_error
    except (OSError, ssl.SSLError, ValueError) as e:
        return None, f"TLS handshake failed: {e}"


# ---- a remote secret's credentials --------------------------------------------------------------------


def probe_remote_credentials(kubeconfig: Mapping[str, Any], timeout: float = 5.0) -> tuple[str | None, list[str]]:
    """Uses a remote secret's kubeconfig as istiod would: (access problem or None, permissions missing)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        api = client_for(kubeconfig, retries=0)
    except Exception as e:  # any malformed kubeconfig is the finding
        return f"its kubeconfig is unusable: {e}", []
    try:
        client.VersionApi(api).get_code(_request_timeout=timeout)
    except ApiException as e:
        if e.status == 401:
            return "unauthorised: the API server rejects the token (HTTP 401)", []
        if e.status != 403:  # 403 on /version still proves the server and the token answered
            return f"the API server answered {error_text(e)}", []
    except Exception as e:  # connection refused, TLS, DNS: the server is unreachable
        return f"unreachable from here: {error_text(e)}", []
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
            except Exception as e:  # the server stopped answering half-way
                return f"unreachable from here: {error_text(e)}", []
            if not allowed:
                missing.append(f"{verb} {resource}{'.' + group if group else ''}")
    return None, missing


def _server_of(kubeconfig: Mapping[str, Any]) -> str:
    """The API server a kubeconfig's current context points at (KeyError/StopIteration/TypeError if none)."""
    ctx_name = kubeconfig.get("current-context")
    ctx = next(c["context"] for c in kubeconfig["contexts"] if c["name"] == ctx_name)
    return str(next(c["cluster"]["server"] for c in kubeconfig["clusters"] if c["name"] == ctx["cluster"]))


# ---- a cluster's own objects --------------------------------------------------------------------------


class _Reader:
    """Reads for one cluster: a 404 is "absent" (None), any other failure is recorded under its topic in
    ``facts.read_errors`` (the checks of that topic are then skipped: nothing is concluded from a read
    that failed) and also returns None."""

    def __init__(self, facts: ClusterFacts) -> None:
        self.facts = facts

    def __call__(self, topic: str, what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return read(fn, *args, **kw)
        except Exception as e:  # API errors and connection errors alike: the finding names them
            if status_of(e) == 404:
                return None
            self.facts.read_errors.setdefault(topic, f"{what}: {error_text(e)}")
            return None


def collect_cluster(
    name: str,
    kubeconfig: Mapping[str, Any],
    context: str | None,
    expected_network: str | None,
    service: tuple[str, str],
    probe: Callable[[Mapping[str, Any]], tuple[str | None, list[str]]] = probe_remote_credentials,
    client_app: str | None = None,
    gateway_pods: bool = False,
    edits: bool = False,
) -> ClusterFacts:
    """Reads one cluster through its admin kubeconfig; with ``client_app`` also what the proxy view needs
    (the service's ports, a running pod labelled ``app=<client_app>`` in its namespace, a running east-west
    gateway pod, istiod's version); with ``gateway_pods`` whether each east-west gateway pod is ready; with
    ``edits`` the program's objects and their field managers (``verify.edits``)."""
    import yaml
    from kubernetes import client

    f = ClusterFacts(name=name, expected_network=expected_network)
    try:
        api = client_for(kubeconfig, context)
        core = client.CoreV1Api(api)
        ns = read(core.read_namespace, ISTIO_NAMESPACE)
    except Exception as e:  # unreachable, bad kubeconfig, forbidden: reported, not raised
        if status_of(e) == 404:
            f.istio_namespace_exists = False
        else:
            f.api_error = error_text(e)
        return f
    f.network_label = ((ns.get("metadata") or {}).get("labels") or {}).get(NETWORK_LABEL)
    get = _Reader(f)

    cacerts = get("cacerts", f"Secret {ISTIO_NAMESPACE}/{CACERTS_SECRET}", core.read_namespaced_secret,
                  CACERTS_SECRET, ISTIO_NAMESPACE)  # fmt: skip
    if cacerts is not None:
        try:
            data = {k: base64.b64decode(v).decode() for k, v in (cacerts.get("data") or {}).items()}
        except (ValueError, UnicodeDecodeError) as e:
            f.read_errors["cacerts"] = f"Secret {ISTIO_NAMESPACE}/{CACERTS_SECRET} has undecodable data: {e}"
            data = {}
        f.cacerts_keys = sorted(data)
        f.root_pem = data.get(ROOT_CERT_KEY)
        f.intermediate_pem = data.get(CA_CERT_KEY)

    secrets = get(
        "remote-secrets",
        f"Secrets labelled {MULTICLUSTER_LABEL}=true in {ISTIO_NAMESPACE}",
        core.list_namespaced_secret,
        ISTIO_NAMESPACE,
        label_selector=f"{MULTICLUSTER_LABEL}=true",
    )
    for s in sorted((secrets or {}).get("items") or [], key=lambda s: str(s["metadata"]["name"])):
        data = s.get("data") or {}
        rs = RemoteSecretFacts(
            name=s["metadata"]["name"],
            annotation_cluster=(s["metadata"].get("annotations") or {}).get(CLUSTER_ANNOTATION),
            keys=sorted(data),
        )
        for key, value in sorted(data.items()):
            try:
                kc = yaml.safe_load(base64.b64decode(value).decode())
                rs.servers[key] = _server_of(kc)
            except Exception as e:  # any malformed kubeconfig is the finding
                rs.access[key] = f"its kubeconfig cannot be parsed ({type(e).__name__}: {e})"
                continue
            rs.access[key], rs.missing_permissions[key] = probe(kc)
        f.remote_secrets.append(rs)

    svc = get("gateway", f"Service {ISTIO_NAMESPACE}/{EASTWEST_RELEASE}", core.read_namespaced_service,
              EASTWEST_RELEASE, ISTIO_NAMESPACE)  # fmt: skip
    if svc is not None:
        f.gateway_exists = True
        f.gateway_network_label = ((svc.get("metadata") or {}).get("labels") or {}).get(NETWORK_LABEL)
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        f.gateway_addresses = [
            str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")
        ]
        f.gateway_addresses += list((svc.get("spec") or {}).get("externalIPs") or [])
    if gateway_pods:
        gw_selector = ",".join(f"{k}={v}" for k, v in EASTWEST_SELECTOR.items())
        gw_pods = get("gateway-pods", f"Pods {gw_selector} in {ISTIO_NAMESPACE}", core.list_namespaced_pod,
                      ISTIO_NAMESPACE, label_selector=gw_selector)  # fmt: skip
        if gw_pods is not None:
            f.gateway_pods = {str(p["metadata"]["name"]): is_ready(p) for p in gw_pods.get("items") or []}

    svc_name, svc_ns = service
    service_obj = get("service", f"Service {svc_ns}/{svc_name}", core.read_namespaced_service, svc_name, svc_ns)
    if service_obj is not None:
        f.service_exists = True
        f.service_ports = sorted(
            int(p["port"])
            for p in (service_obj.get("spec") or {}).get("ports") or []
            if p.get("port") and p.get("protocol", "TCP") == "TCP"
        )
        slices = get(
            "service",
            f"EndpointSlices of Service {svc_ns}/{svc_name}",
            client.DiscoveryV1Api(api).list_namespaced_endpoint_slice,
            svc_ns,
            label_selector=f"kubernetes.io/service-name={svc_name}",
        )
        for sl in (slices or {}).get("items") or []:
            for ep in sl.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is not False:
                    f.service_endpoints.extend(ep.get("addresses") or [])
        f.service_endpoints.sort()
        selector = (service_obj.get("spec") or {}).get("selector") or {}
        if selector:
            pods = get(
                "service",
                f"Pods of Service {svc_ns}/{svc_name}",
                core.list_namespaced_pod,
                svc_ns,
                label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
            )
            f.service_pods = [
                {
                    "name": p["metadata"]["name"],
                    "ip": (p.get("status") or {}).get("podIP"),
                    "network": (p["metadata"].get("labels") or {}).get(NETWORK_LABEL),
                }
                for p in sorted((pods or {}).get("items") or [], key=lambda p: str(p["metadata"]["name"]))
                if (p.get("status") or {}).get("phase") == "Running"
            ]
    if client_app:
        f.client_pod = _running_pod(get, core, svc_ns, f"app={client_app}")
        f.gateway_pod = _running_pod(
            get, core, ISTIO_NAMESPACE, ",".join(f"{k}={v}" for k, v in EASTWEST_SELECTOR.items())
        )
        istiod = get(
            "istiod",
            f"Deployment {ISTIO_NAMESPACE}/{ISTIOD_DEPLOYMENT}",
            client.AppsV1Api(api).read_namespaced_deployment,
            ISTIOD_DEPLOYMENT,
            ISTIO_NAMESPACE,
        )
        f.istio_version = _image_tag(istiod)
    if edits:
        collect_mesh_objects(api, f)
    return f


def _running_pod(get: _Reader, core: Any, namespace: str, selector: str) -> dict[str, Any] | None:
    """The first running pod (by name) matching ``selector``, as {"name", "ip", "labels", "serviceAccount"}."""
    pods = get("pods", f"Pods {selector} in {namespace}", core.list_namespaced_pod, namespace, label_selector=selector)
    running = sorted(
        (p for p in (pods or {}).get("items") or [] if (p.get("status") or {}).get("phase") == "Running"),
        key=lambda p: str(p["metadata"]["name"]),
    )
    for p in running:
        if p["status"].get("podIP"):
            return {
                "name": p["metadata"]["name"],
                "ip": p["status"]["podIP"],
                "labels": p["metadata"].get("labels") or {},
                "serviceAccount": (p.get("spec") or {}).get("serviceAccountName") or "default",
            }
    return None


def _image_tag(deployment: Mapping[str, Any] | None) -> str | None:
    """The tag of the ``discovery`` container's image (``.../pilot:1.30.4`` -> ``1.30.4``), if it has one."""
    containers = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    for c in containers:
        image = str(c.get("image") or "")
        name_part = image.rsplit("/", 1)[-1]
        if ":" in name_part:
            return name_part.split(":", 1)[1].split("@", 1)[0] or None
    return None
