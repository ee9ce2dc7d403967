"""The gate of a root rotation's phases: before a phase changes any ``cacerts``, the clusters must allow it.

What breaks mTLS during a rotation is a proxy that does not trust the root a peer's certificate chains
to (Envoy checks peers against its ``ROOTCA`` only). So a new target (the roots ``root-cert.pem`` will
hold, the root the signing intermediate will chain to) is refused, naming every cluster, pod and fact in
the way, unless, in every cluster of the mesh:

* every proxy (sidecars and gateways) already trusts the root the target signs with, when that changes:
  the certificates issued after the change chain to it, and so will istiod's own serving certificate,
  which agents check with the namespace's ``istio-ca-root-cert``, which must hold it too;
* every proxy's certificate chains to a root the target still trusts;
* every istiod has loaded the ``cacerts`` it was given (its ``istio-ca-root-cert`` in istio-system holds
  the same roots as ``cacerts``).

What a proxy trusts and holds is read from its Envoy (``pilot-agent request GET
config_dump?resource=dynamic_active_secrets`` in its ``istio-proxy`` container: the ``ROOTCA`` and
``default`` secrets), as ``istioctl proxy-config secret`` reads it. The gate reads proxies only when the
target differs from what some cluster's ``cacerts`` holds, so a no-op run costs one GET per cluster.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from .constants import CA_CERT_KEY, CACERTS_SECRET, ISTIO_NAMESPACE, ROOT_CERT_KEY
from .fingerprint import pem_fingerprint
from .rotation import XDS_AGENT_ENV, split_pems

#: The container Istio injects into every proxy pod (sidecars and gateways).
PROXY_CONTAINER = "istio-proxy"
#: The ConfigMap istiod writes into every namespace with the roots it loaded (agents check istiod with it).
ROOT_CONFIGMAP = "istio-ca-root-cert"
#: What a proxy's Envoy is asked (istioctl proxy-config secret's source).
SECRETS_COMMAND = ["pilot-agent", "request", "GET", "config_dump?resource=dynamic_active_secrets"]
#: Seconds one API request or exec may take.
TIMEOUT_SECONDS = 20.0
#: The thread the gate runs on in a program (it reads the clusters on threads of its own, ``read_mesh``).
GATE_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rotation-gate")


class RotationRefused(pulumi.RunError):
    """A phase would break mTLS somewhere (nothing was changed); the message names where and why. A
    ``RunError``: the language host prints the message alone, without a Python traceback."""


@dataclass(frozen=True)
class ProxyTrust:
    """What one proxy trusts and presents."""

    cluster: str
    namespace: str
    pod: str
    #: Fingerprints of the roots in its ``ROOTCA`` (every peer certificate must chain to one).
    trusted: tuple[str, ...] = ()
    #: Fingerprint of the root its own certificate chains to (``None``: not found among the chain's certs).
    chains_to: str | None = None
    #: Its agent takes pushed trust bundles (``PROXY_CONFIG_XDS_AGENT`` in its container's environment).
    xds_agent: bool = False
    #: When its agent renews its certificate by itself (half its lifetime, Istio's default), ISO 8601.
    renews_at: str | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod} in {self.cluster}"


@dataclass(frozen=True)
class ClusterTrust:
    """One cluster's ``cacerts``, what its istiod published, and its proxies."""

    cluster: str
    #: Fingerprints of ``cacerts``' ``root-cert.pem`` (``None``: no ``cacerts``).
    cacerts_trust: tuple[str, ...] | None = None
    #: Fingerprint of the root ``cacerts``' intermediate chains to.
    cacerts_signer: str | None = None
    #: ``istio-ca-root-cert`` per namespace: fingerprints of the roots istiod wrote there.
    published: dict[str, tuple[str, ...]] = field(default_factory=dict)
    proxies: tuple[ProxyTrust, ...] = ()
    error: str | None = None


def fingerprints(bundle_pem: str) -> tuple[str, ...]:
    """The fingerprints of a PEM bundle's certificates, in order, without repeats."""
    return tuple(dict.fromkeys(pem_fingerprint(p) for p in split_pems(bundle_pem)))


def _issued_by(cert: Any, issuer: Any) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except Exception:  # another issuer, or a key type it cannot check
        return False


def chain_root(chain_pem: str, roots_pem: str = "") -> str | None:
    """The fingerprint of the self-signed root ``chain_pem``'s first certificate chains to, looking for
    issuers among the chain's own certificates and ``roots_pem``; ``None`` when the chain stops short."""
    from cryptography import x509

    certs = [x509.load_pem_x509_certificate(p.encode()) for p in split_pems(chain_pem + roots_pem)]
    if not certs:
        return None
    current = certs[0]
    for _ in range(len(certs)):
        if current.issuer == current.subject and _issued_by(current, current):
            return pem_fingerprint(current.public_bytes(_pem()).decode())
        issuer = next((c for c in certs if c.subject == current.issuer and _issued_by(current, c)), None)
        if issuer is None:
            return None
        current = issuer
    return None


def _pem() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.PEM


def secrets_of_dump(dump: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Envoy's active dynamic secrets by name, from ``config_dump?resource=dynamic_active_secrets`` (items
    at ``configs[]``) or a whole config dump (``configs[].dynamic_active_secrets[]``)."""
    out: dict[str, Mapping[str, Any]] = {}
    for item in dump.get("configs") or []:
        entries = item.get("dynamic_active_secrets") if "dynamic_active_secrets" in item else [item]
        for entry in entries or []:
            if isinstance(entry, Mapping) and entry.get("name"):
                out[str(entry["name"])] = entry.get("secret") or {}
    return out


def _inline(value: Mapping[str, Any] | None) -> str:
    data = (value or {}).get("inline_bytes")
    return base64.b64decode(data).decode() if isinstance(data, str) else ""


def proxy_trust(cluster: str, pod: Mapping[str, Any], dump: Mapping[str, Any]) -> ProxyTrust:
    """A proxy's trust from its pod object and its Envoy's secrets."""
    from cryptography import x509

    meta = pod.get("metadata") or {}
    secrets = secrets_of_dump(dump)
    roots = _inline(((secrets.get("ROOTCA") or {}).get("validation_context") or {}).get("trusted_ca"))
    chain = _inline(((secrets.get("default") or {}).get("tls_certificate") or {}).get("certificate_chain"))
    base = {"cluster": cluster, "namespace": meta.get("namespace", ""), "pod": meta.get("name", "")}
    xds_agent = _xds_agent(pod)
    if not roots or not chain:
        missing = " and ".join(n for n, v in (("ROOTCA", roots), ("default", chain)) if not v)
        return ProxyTrust(**base, xds_agent=xds_agent, error=f"its Envoy has no {missing} secret yet")
    leaf = x509.load_pem_x509_certificate(split_pems(chain)[0].encode())
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    return ProxyTrust(
        **base,
        trusted=fingerprints(roots),
        chains_to=chain_root(chain, roots),
        xds_agent=xds_agent,
        renews_at=(start + (end - start) / 2).replace(microsecond=0).isoformat(),
    )


def _xds_agent(pod: Mapping[str, Any]) -> bool:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == PROXY_CONTAINER:
            return any(e.get("name") == XDS_AGENT_ENV and e.get("value") == "true" for e in c.get("env") or [])
    return False


def is_proxy(pod: Mapping[str, Any]) -> bool:
    """A running pod (not being deleted) with an ``istio-proxy`` container."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    return (
        status.get("phase") == "Running"
        and not meta.get("deletionTimestamp")
        and any(c.get("name") == PROXY_CONTAINER for c in spec.get("containers") or [])
    )


def cacerts_trust(secret: Mapping[str, Any] | None) -> tuple[tuple[str, ...] | None, str | None]:
    """(root fingerprints, signing root fingerprint) of a live ``cacerts`` Secret (``None``s: no Secret)."""
    if not secret:
        return None, None
    data = secret.get("data") or {}
    try:
        roots = base64.b64decode(data.get(ROOT_CERT_KEY) or "").decode()
        cert = base64.b64decode(data.get(CA_CERT_KEY) or "").decode()
        chain = base64.b64decode(data.get("cert-chain.pem") or "").decode()
        return fingerprints(roots), chain_root(cert + chain, roots)
    except ValueError:  # not base64 or not certificates: the gate says so by what it cannot match
        return (), None


@dataclass(frozen=True)
class Target:
    """What a run writes: the roots every ``cacerts`` trusts and the root its intermediate chains to, with a
    label per root fingerprint for messages."""

    trust: tuple[str, ...]
    signer: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def label(self, fp: str | None) -> str:
        if fp is None:
            return "no root it holds"
        return f"the {self.labels[fp]} root ({fp[:11]}...)" if fp in self.labels else f"root {fp[:11]}..."


def changing(target: Target, clusters: Sequence[ClusterTrust]) -> list[str]:
    """The clusters whose ``cacerts`` the target changes (trusted roots or signer); none without one."""
    return [
        c.cluster
        for c in clusters
        if c.cacerts_trust is not None
        and (set(c.cacerts_trust) != set(target.trust) or c.cacerts_signer != target.signer)
    ]


def gate_problems(target: Target, clusters: Sequence[ClusterTrust]) -> list[str]:
    """Everything in the mesh that the target would break (empty: the phase may go ahead). ``clusters``
    carry their proxies (read when ``changing`` is not empty)."""
    problems: list[str] = []
    signer_changes = any(c.cacerts_trust is not None and c.cacerts_signer != target.signer for c in clusters)
    for c in clusters:
        if c.error:
            problems.append(f"cluster {c.cluster}: {c.error}")
            continue
        loaded = c.published.get(ISTIO_NAMESPACE)
        if c.cacerts_trust is not None and loaded is not None and set(loaded) != set(c.cacerts_trust):
            problems.append(
                f"istiod in {c.cluster} has not loaded its {CACERTS_SECRET} yet: its {ROOT_CONFIGMAP} holds "
                f"{_names(target, loaded)}, {CACERTS_SECRET} holds {_names(target, c.cacerts_trust)}; wait for istiod "
                f"(`kubectl --context {c.cluster} -n {ISTIO_NAMESPACE} rollout status deployment/istiod`)"
            )
        for p in c.proxies:
            if p.error:
                problems.append(f"cannot read what proxy {p.name} trusts: {p.error}")
                continue
            if signer_changes and target.signer not in p.trusted:
                problems.append(
                    f"proxy {p.name} does not trust {target.label(target.signer)} yet (it trusts "
                    f"{_names(target, p.trusted)}): it would reject the certificates this phase has signed. "
                    + _how_to_refresh(p)
                )
            if p.chains_to not in target.trust:
                problems.append(
                    f"the certificate of proxy {p.name} chains to {target.label(p.chains_to)}, which this phase "
                    f"stops trusting: its peers would reject it. " + _how_to_refresh(p)
                )
        if signer_changes:
            for ns in sorted({p.namespace for p in c.proxies}):
                held = c.published.get(ns)
                if held is not None and target.signer not in held:
                    problems.append(
                        f"{ns}/{ROOT_CONFIGMAP} in {c.cluster} does not hold {target.label(target.signer)}: agents "
                        "there check istiod's certificate with it and would not reconnect once istiod is signed by "
                        "it; wait for istiod to publish the roots of the previous phase"
                    )
    return problems


def _names(target: Target, fps: Sequence[str]) -> str:
    return ", ".join(target.label(f) for f in fps) or "no root"


def _how_to_refresh(p: ProxyTrust) -> str:
    restart = f"`kubectl --context {p.cluster} -n {p.namespace} delete pod {p.pod}` (its controller recreates it)"
    if p.xds_agent:
        return f"Its agent takes pushed trust bundles: wait a minute and rerun, or restart it: {restart}."
    return (
        f"It was created before the mesh was set up for rotation ({XDS_AGENT_ENV} is not set in it), so it "
        f"learns new roots only with a new certificate: restart it ({restart}) or wait until it renews its "
        f"certificate (about {p.renews_at})."
    )


# --- reading the clusters ---------------------------------------------------------------------------


class ClusterReader:
    """Reads one cluster's trust facts with the official client, from its kubeconfig's content."""

    def __init__(self, cluster: str, kubeconfig: str | Mapping[str, Any], context: str | None) -> None:
        self.cluster, self._kubeconfig, self._context = cluster, kubeconfig, context

    def _core(self) -> Any:
        import yaml
        from kubernetes import client

        from .kube_client import api_client

        text = self._kubeconfig if isinstance(self._kubeconfig, str) else yaml.safe_dump(dict(self._kubeconfig))
        return client.CoreV1Api(api_client(text, self._context))

    def cacerts(self) -> Mapping[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            raw = self._core().read_namespaced_secret(
                CACERTS_SECRET, ISTIO_NAMESPACE, _request_timeout=TIMEOUT_SECONDS, _preload_content=False
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return json.loads(raw.data)

    def published(self) -> dict[str, tuple[str, ...]]:
        raw = self._core().list_config_map_for_all_namespaces(
            field_selector=f"metadata.name={ROOT_CONFIGMAP}", _request_timeout=TIMEOUT_SECONDS, _preload_content=False
        )
        out = {}
        for cm in json.loads(raw.data).get("items") or []:
            pem = (cm.get("data") or {}).get(ROOT_CERT_KEY) or ""
            try:
                out[cm["metadata"]["namespace"]] = fingerprints(pem)
            except ValueError:
                out[cm["metadata"]["namespace"]] = ()
        return out

    def proxy_pods(self) -> list[Mapping[str, Any]]:
        raw = self._core().list_pod_for_all_namespaces(_request_timeout=TIMEOUT_SECONDS, _preload_content=False)
        return [p for p in json.loads(raw.data).get("items") or [] if is_proxy(p)]

    def envoy_secrets(self, pod: Mapping[str, Any]) -> Mapping[str, Any]:
        """The proxy's Envoy's active secrets (one exec; an ApiClient of its own: the stream module swaps its
        client's request method while it opens the websocket)."""
        from kubernetes.stream import stream

        meta = pod["metadata"]
        core = self._core()
        ws = stream(
            core.connect_get_namespaced_pod_exec,
            meta["name"],
            meta["namespace"],
            container=PROXY_CONTAINER,
            command=SECRETS_COMMAND,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
            _request_timeout=TIMEOUT_SECONDS,
        )
        try:
            ws.run_forever(timeout=TIMEOUT_SECONDS)
            out, err, code = ws.read_stdout(), ws.read_stderr(), ws.returncode
        finally:
            ws.close()
        if code not in (0, None) or not out.strip():
            raise RuntimeError(f"`{' '.join(SECRETS_COMMAND)}` exited {code}: {(err or out).strip()[:300]}")
        return json.loads(out)

    def read(self, proxies: bool) -> ClusterTrust:
        try:
            trust, signer = cacerts_trust(self.cacerts())
            if not proxies:
                return ClusterTrust(self.cluster, trust, signer)
            published = self.published()
            found = []
            for pod in self.proxy_pods():
                try:
                    found.append(proxy_trust(self.cluster, pod, self.envoy_secrets(pod)))
                except Exception as e:  # one unreadable proxy is a finding, not a crash
                    meta = pod["metadata"]
                    found.append(
                        ProxyTrust(self.cluster, meta["namespace"], meta["name"], error=f"{type(e).__name__}: {e}")
                    )
            return ClusterTrust(self.cluster, trust, signer, published, tuple(found))
        except Exception as e:  # unreachable, refused: the gate cannot say the phase is safe
            return ClusterTrust(self.cluster, error=f"cannot read its trust state: {type(e).__name__}: {e}")


def read_mesh(readers: Sequence[ClusterReader], proxies: bool) -> list[ClusterTrust]:
    """Every cluster's trust facts, read in parallel."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(readers))) as pool:
        return list(pool.map(lambda r: r.read(proxies), readers))


def check(target: Target, readers: Sequence[ClusterReader], what: str) -> None:
    """Raises ``RotationRefused`` naming every problem when ``target`` may not be written now (``what``: the
    phase, for the message). Reads proxies only when some cluster's ``cacerts`` would change."""
    clusters = read_mesh(readers, proxies=False)
    unreadable = [c for c in clusters if c.error]
    if not unreadable and not changing(target, clusters):
        return
    clusters = read_mesh(readers, proxies=True)
    problems = gate_problems(target, clusters)
    if problems:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
        raise RotationRefused(
            f"{what}: refused at {now}, nothing was changed; the previous phase does not hold everywhere yet:\n  - "
            + "\n  - ".join(problems)
        )
