"""Real istiod (``pilot-discovery``) for each lab cluster, as a local process.

No container runs in the lab (KWOK fakes the kubelets), so the istiod Deployment the program installs
stays a Deployment of fake Pods. ``python -m lab istiod start`` runs, for every lab cluster, the real
``pilot-discovery`` the toolchain built from the same Istio commit as the charts, configured ONLY from
what the program put into that cluster, the way the kubelet would hand it to the container:

* arguments and environment: the ``discovery`` container of Deployment ``istio-system/istiod``
  (``CLUSTER_ID``, ``REVISION``, ``PILOT_CERT_PROVIDER``, ...); downward-API fields resolved as the
  kubelet resolves them; listen addresses moved to the cluster's loopback address and port block
  (``Cluster.istiod_ports``);
* mesh config and mesh networks: ConfigMap ``istio-system/istio`` (keys ``mesh``, ``meshNetworks``),
  written where the chart mounts it (``./etc/istio/config``);
* plugged-in CA: Secret ``istio-system/cacerts`` written to ``./etc/cacerts`` exactly like the
  chart's optional secret volume; when the Secret is missing the directory is empty and istiod falls
  back to its self-signed CA, as it would in a real cluster;
* identity: a token of ServiceAccount ``istio-system/istiod`` (TokenRequest API), so istiod talks to
  its own API server with exactly the RBAC the chart grants it. Other clusters are reached only
  through the remote secrets in ``istio-system`` (label ``istio/multiCluster=true``), as in a cluster.

Each istiod's files live in ``.lab/<cluster>/istiod/`` (its working directory: the chart's absolute
paths become relative to it) and its log in ``.lab/<cluster>/logs/istiod.log``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from . import procs
from .kubeapi import ApiError, Client
from .layout import Cluster
from .pki import CA_CERT

NAMESPACE = "istio-system"
DEPLOYMENT = "istiod"
CONTAINER = "discovery"
SERVICE_ACCOUNT = "istiod"
TOKEN_SECONDS = 24 * 3600
#: Chart flags that name a listen address: replaced by the cluster's own address and port.
ADDRESS_FLAGS = {
    "--httpAddr": 8080,
    "--grpcAddr": 15010,
    "--secureGRPCAddr": 15012,
    "--monitoringAddr": 15014,
    "--httpsAddr": 15017,
}


class IstiodError(Exception):
    """istiod cannot be started in a lab cluster (the message says why and what to do)."""


def workdir(c: Cluster) -> Path:
    return c.dir / "istiod"


def http_url(c: Cluster) -> str:
    """Where this cluster's istiod serves /ready and /debug/* (its port 8080)."""
    return f"http://{c.ip}:{c.istiod_ports[8080]}"


def xds_address(c: Cluster) -> str:
    """istiod's plaintext xDS (its port 15010)."""
    return f"{c.ip}:{c.istiod_ports[15010]}"


def _deployment_container(api: Client, c: Cluster) -> dict[str, Any]:
    try:
        dep = api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}")
    except ApiError as e:
        if e.status == 404:
            raise IstiodError(
                f"{c.name}: there is no Deployment {NAMESPACE}/{DEPLOYMENT}; install the mesh first "
                "(scripts/mesh-up, or pulumi up on the cluster-lab stack)"
            ) from None
        raise
    for container in dep["spec"]["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER:
            return {"container": container, "sa": dep["spec"]["template"]["spec"].get("serviceAccountName")}
    raise IstiodError(f"{c.name}: Deployment {NAMESPACE}/{DEPLOYMENT} has no '{CONTAINER}' container")


def _resolve_env(api: Client, c: Cluster, entries: list[dict[str, Any]], sa: str) -> dict[str, str]:
    """Container env as the kubelet resolves it (values, downward API, ConfigMap/Secret keys)."""
    fields = {"metadata.name": f"istiod-lab-{c.name}", "metadata.namespace": NAMESPACE, "spec.serviceAccountName": sa}
    env: dict[str, str] = {}
    for e in entries:
        name = e["name"]
        if "value" in e:
            env[name] = str(e["value"])
            continue
        src = e.get("valueFrom") or {}
        if "fieldRef" in src:
            path = src["fieldRef"]["fieldPath"]
            if path not in fields:
                raise IstiodError(f"{c.name}: istiod env {name} uses fieldRef {path}, which the lab does not provide")
            env[name] = fields[path]
        elif "resourceFieldRef" in src:
            env[name] = str(os.cpu_count() or 1)  # GOMAXPROCS from limits.cpu: the cores there are
        elif "configMapKeyRef" in src or "secretKeyRef" in src:
            ref = src.get("configMapKeyRef") or src["secretKeyRef"]
            kind = "configmaps" if "configMapKeyRef" in src else "secrets"
            try:
                obj = api.get(f"/api/v1/namespaces/{NAMESPACE}/{kind}/{ref['name']}")
                raw = (obj.get("data") or {})[ref["key"]]
                env[name] = base64.b64decode(raw).decode() if kind == "secrets" else raw
            except (ApiError, KeyError):
                if not ref.get("optional"):
                    raise IstiodError(
                        f"{c.name}: istiod env {name} needs {kind}/{ref['name']} key {ref['key']}"
                    ) from None
    return env


def _args(c: Cluster, chart_args: list[str], files: dict[str, Path]) -> list[str]:
    """The chart's arguments with listen addresses moved onto the cluster's address/ports."""
    out: list[str] = []
    skip = False
    for a in chart_args:
        if skip:
            skip = False
            continue
        flag = a.split("=", 1)[0]
        if flag in ADDRESS_FLAGS or flag in (
            "--kubeconfig",
            "--meshConfig",
            "--networksConfig",
            "--ctrlz_port",
            "--ctrlz_address",
        ):
            skip = "=" not in a
            continue
        out.append(a)
    for flag, port in ADDRESS_FLAGS.items():
        out.append(f"{flag}={c.ip}:{c.istiod_ports[port]}")
    out += [
        # ControlZ (istiod's introspection page) defaults to 127.0.0.1:9876: one per cluster here.
        f"--ctrlz_address={c.ip}",
        f"--ctrlz_port={c.istiod_ports[9876]}",
        f"--kubeconfig={files['kubeconfig']}",
        f"--meshConfig={files['mesh']}",
        f"--networksConfig={files['meshNetworks']}",
    ]
    return out


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def materialize(api: Client, c: Cluster) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Writes istiod's files from the cluster's objects; returns (args, env, facts for the log)."""
    wd = workdir(c)
    spec = _deployment_container(api, c)
    container, sa = spec["container"], spec["sa"] or SERVICE_ACCOUNT

    # Mesh config, where the chart mounts ConfigMap istio (./etc/istio/config).
    try:
        cm = api.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/istio")
    except ApiError as e:
        raise IstiodError(f"{c.name}: ConfigMap {NAMESPACE}/istio is missing ({e}); reinstall the mesh") from None
    data = cm.get("data") or {}
    config_dir = wd / "etc" / "istio" / "config"
    files = {"mesh": config_dir / "mesh", "meshNetworks": config_dir / "meshNetworks", "kubeconfig": wd / "kubeconfig"}
    _write(files["mesh"], data.get("mesh", ""))
    _write(files["meshNetworks"], data.get("meshNetworks", "networks: {}\n"))

    # Plugged-in CA, like the optional secret volume: present keys only, nothing when absent.
    ca_dir = wd / "etc" / "cacerts"
    shutil.rmtree(ca_dir, ignore_errors=True)
    ca_dir.mkdir(parents=True)
    try:
        secret = api.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/cacerts")
        for key, value in (secret.get("data") or {}).items():
            _write(ca_dir / key, base64.b64decode(value).decode(), 0o600)
        cacerts = sorted(secret.get("data") or {})
    except ApiError as e:
        if e.status != 404:
            raise
        cacerts = []

    # istiod's own identity: a token of its ServiceAccount, not the lab admin.
    try:
        tr = api.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{sa}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": TOKEN_SECONDS},
            },
        )
    except ApiError as e:
        raise IstiodError(f"{c.name}: cannot get a token for ServiceAccount {NAMESPACE}/{sa}: {e}") from None
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": c.name,
                "cluster": {
                    "server": c.server,
                    "certificate-authority-data": base64.b64encode(CA_CERT.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": f"{NAMESPACE}-{sa}", "user": {"token": tr["status"]["token"]}}],
        "contexts": [
            {"name": c.name, "context": {"cluster": c.name, "user": f"{NAMESPACE}-{sa}", "namespace": NAMESPACE}}
        ],
        "current-context": c.name,
    }
    _write(files["kubeconfig"], yaml.safe_dump(kubeconfig, sort_keys=False), 0o600)
    (wd / "var" / "run" / "secrets" / "istio-dns").mkdir(parents=True, exist_ok=True)

    env = _resolve_env(api, c, container.get("env") or [], sa)
    env.pop("KUBECONFIG", None)  # the chart points it at an optional remote-istiod mount; --kubeconfig rules
    env["ROOT_CA_DIR"] = str(ca_dir)  # the chart's /etc/cacerts, made explicit
    args = _args(c, list(container.get("args") or []), files)
    facts = {"CLUSTER_ID": env.get("CLUSTER_ID"), "cacerts": cacerts, "serviceAccount": f"{NAMESPACE}/{sa}"}
    return args, env, facts


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


def ready(c: Cluster, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(http_url(c) + "/ready", timeout=timeout) as r:
            return r.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


def start(binary: Path, cl: list[Cluster], timeout: float = 120.0, restart: bool = False) -> dict[str, Any]:
    """Starts (or, with ``restart``, restarts) istiod for each cluster and waits until each is ready."""
    facts: dict[str, Any] = {}
    for c in cl:
        pidfile, log = c.pidfile("istiod"), c.log("istiod")
        if restart:
            procs.stop(pidfile, binary)
        elif procs.running_pid(pidfile, binary) is not None:
            facts[c.name] = {"state": "already running"}
            continue
        api = Client(c)
        args, env, f = materialize(api, c)
        pid = procs.start(binary, args, pidfile, log, workdir(c), {**_base_env(), **env})
        facts[c.name] = {**f, "pid": pid, "http": http_url(c)}
        print(
            f"[lab] {c.name}: istiod pid {pid} (CLUSTER_ID={f['CLUSTER_ID']}, cacerts keys {f['cacerts'] or 'none'}, "
            f"identity {f['serviceAccount']}) on {http_url(c)}",
            flush=True,
        )
    deadline = time.monotonic() + timeout
    pending = [c for c in cl if "pid" in facts.get(c.name, {})]
    while pending:
        for c in list(pending):
            pid = facts[c.name]["pid"]
            if procs.exited(pid):
                raise IstiodError(
                    f"{c.name}: istiod exited during start-up. Last lines of {c.log('istiod')}:\n"
                    + procs.tail(c.log("istiod"), 30)
                )
            if ready(c):
                pending.remove(c)
        if pending and time.monotonic() > deadline:
            raise IstiodError(
                f"istiod not ready after {timeout:.0f}s in {', '.join(c.name for c in pending)}; see "
                + ", ".join(str(c.log("istiod")) for c in pending)
            )
        time.sleep(0.5)
    return facts


def stop(binary: Path | str, cl: list[Cluster]) -> list[str]:
    return [c.name for c in cl if procs.stop(c.pidfile("istiod"), binary)]


def debug(c: Cluster, path: str, timeout: float = 10.0) -> Any:
    """GET istiod's /debug/<path> as JSON."""
    with urllib.request.urlopen(f"{http_url(c)}/debug/{path}", timeout=timeout) as r:
        return json.loads(r.read() or b"null")
