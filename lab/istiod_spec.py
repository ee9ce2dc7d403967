"""istiod's command line, environment and files, from what the program put into one lab cluster.

``materialize`` configures the local ``pilot-discovery`` (started by ``lab/istiod.py``) ONLY from that
cluster's objects, the way the kubelet would hand them to the container:

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

The files go to istiod's working directory ``.lab/<cluster>/istiod/`` (``workdir``): the chart's absolute
paths become relative to it.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml

from . import atomic_writer
from .istiod_names import (
    CONTAINER,
    DEPLOYMENT,
    NAMESPACE,
    SERVICE_ACCOUNT,
    IstiodError,
    deployment_path,
    identity,
    injector_present,
    workdir,
)
from .kubeapi import ApiError, Client
from .layout import Cluster
from .pki import CA_CERT

TOKEN_SECONDS = 24 * 3600
#: Chart flags that name a listen address: replaced by the cluster's own address and port.
ADDRESS_FLAGS = {
    "--httpAddr": 8080,
    "--grpcAddr": 15010,
    "--secureGRPCAddr": 15012,
    "--monitoringAddr": 15014,
    "--httpsAddr": 15017,
}


def _deployment_container(api: Client, c: Cluster) -> dict[str, Any]:
    try:
        dep = api.get(deployment_path())
    except ApiError as e:
        if e.status == 404:
            raise IstiodError(
                f"{c.name}: there is no Deployment {NAMESPACE}/{DEPLOYMENT}; install the mesh first "
                "(scripts/mesh-up, or pulumi up on the cluster-lab stack)"
            ) from None
        raise
    for container in dep["spec"]["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER:
            return {
                "container": container,
                "sa": dep["spec"]["template"]["spec"].get("serviceAccountName"),
                "deployment": dep,
            }
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


#: istiod's two volumes from cluster objects: where the chart mounts each, relative to the working directory.
MOUNTS = {"config": Path("etc/istio/config"), "cacerts": Path("etc/cacerts")}


def mounted_files(api: Client, c: Cluster) -> dict[str, dict[str, bytes]]:
    """What istiod's volumes hold now: ConfigMap ``istio`` (``mesh``, ``meshNetworks``) and, like the chart's
    optional secret volume, Secret ``cacerts`` (no files when it is absent)."""
    try:
        cm = api.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/istio")
    except ApiError as e:
        raise IstiodError(f"{c.name}: ConfigMap {NAMESPACE}/istio is missing ({e}); reinstall the mesh") from None
    data = cm.get("data") or {}
    networks = data.get("meshNetworks", "networks: {}\n")
    config = {"mesh": data.get("mesh", "").encode(), "meshNetworks": networks.encode()}
    try:
        secret = api.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/cacerts")
        cacerts = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    except ApiError as e:
        if e.status != 404:
            raise
        cacerts = {}
    return {"config": config, "cacerts": cacerts}


def sync_mounts(api: Client, c: Cluster) -> tuple[dict[str, dict[str, bytes]], list[str]]:
    """Brings istiod's volumes up to date in place, as the kubelet does (``lab/atomic_writer.py``): a running
    istiod sees the swap and reloads (its mesh config watcher, its ``cacerts`` watcher), no restart.
    Returns the volumes' files and the names of those rewritten."""
    wd = workdir(c)
    files = mounted_files(api, c)
    changed = [
        name
        for name, rel in MOUNTS.items()
        if atomic_writer.write(wd / rel, files[name], 0o600 if name == "cacerts" else 0o644)
    ]
    return files, changed


def materialize(api: Client, c: Cluster) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Writes istiod's files from the cluster's objects; returns (args, env, facts for the log)."""
    wd = workdir(c)
    spec = _deployment_container(api, c)
    container, sa = spec["container"], spec["sa"] or SERVICE_ACCOUNT
    source = identity(spec["deployment"], injector_present(api, spec["deployment"]))

    volumes, _ = sync_mounts(api, c)
    cacerts = sorted(volumes["cacerts"])
    config_dir, ca_dir = wd / MOUNTS["config"], wd / MOUNTS["cacerts"]
    files = {"mesh": config_dir / "mesh", "meshNetworks": config_dir / "meshNetworks", "kubeconfig": wd / "kubeconfig"}

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
    facts = {
        "CLUSTER_ID": env.get("CLUSTER_ID"),
        "cacerts": cacerts,
        "serviceAccount": f"{NAMESPACE}/{sa}",
        "source": source,
    }
    return args, env, facts
