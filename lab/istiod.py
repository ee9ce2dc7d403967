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

Who starts it: the lab's follower (``lab/follower.py``) whenever the Deployment appears or rolls, and
``python -m lab istiod start|restart|stop`` by hand. Both take ``.lab/<cluster>/run/istiod.lock`` so
they never act at once. ``istiod/source.json`` records which Deployment (uid, pod template, whether the
injector's ConfigMap existed) the running istiod was configured from; a manual ``stop`` leaves
``run/istiod.stopped`` naming the Deployment it applied to, and the follower leaves istiod stopped until
that Deployment changes or goes (or ``start``/``restart`` removes the marker).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from . import procs
from .kubeapi import ApiError, Client
from .layout import Cluster
from .pki import CA_CERT
from .wait import wait_for_each, wait_until

NAMESPACE = "istio-system"
DEPLOYMENT = "istiod"
CONTAINER = "discovery"
SERVICE_ACCOUNT = "istiod"
#: The Service the chart's webhooks name (``clientConfig.service``: istiod.istio-system:443 -> 15017).
SERVICE = "istiod"
#: istiod reads its injection templates from this ConfigMap (``-<revision>`` appended for a revision)
#: once, when it starts, if ``./var/lib/istio/inject`` is absent: when the ConfigMap is missing then, it
#: logs "Skipping sidecar injector, template not found" and never injects (pilot/pkg/bootstrap/sidecarinjector.go).
INJECTOR_CONFIGMAP = "istio-sidecar-injector"
TOKEN_SECONDS = 24 * 3600
LOCK_TIMEOUT = 60.0
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


def source_file(c: Cluster) -> Path:
    """What the running istiod was configured from (``identity``), written when it starts."""
    return workdir(c) / "source.json"


def stop_marker(c: Cluster) -> Path:
    """Written by a manual ``lab istiod stop``: the Deployment identity the stop applies to."""
    return c.dir / "run" / "istiod.stopped"


def deployment_path() -> str:
    return f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}"


def injector_configmap(revision: str) -> str:
    return f"{INJECTOR_CONFIGMAP}-{revision}" if revision and revision != "default" else INJECTOR_CONFIGMAP


def identity(deployment: dict[str, Any], injector_present: bool) -> dict[str, Any]:
    """What makes one istiod configuration differ from another: the Deployment (its uid: a recreated
    one is new), its pod template (a change is a rollout: the kubelet would start new pods), and
    whether the injector's ConfigMap existed (read once at start, see ``INJECTOR_CONFIGMAP``)."""
    template = json.dumps(deployment.get("spec", {}).get("template", {}), sort_keys=True, separators=(",", ":"))
    return {
        "uid": deployment.get("metadata", {}).get("uid", ""),
        "template": hashlib.sha256(template.encode()).hexdigest()[:16],
        "injector": injector_present,
    }


def _revision(deployment: dict[str, Any]) -> str:
    for container in deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        if container.get("name") == CONTAINER:
            for e in container.get("env") or []:
                if e.get("name") == "REVISION":
                    return str(e.get("value") or "")
    return ""


def injector_present(api: Client, deployment: dict[str, Any]) -> bool:
    """Whether the injector's ConfigMap for this Deployment's revision exists (ApiError but 404 raises)."""
    try:
        api.get(f"/api/v1/namespaces/{NAMESPACE}/configmaps/{injector_configmap(_revision(deployment))}")
    except ApiError as e:
        if e.status == 404:
            return False
        raise
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON object the lab wrote, or None (missing or unreadable: treated as absent)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_json(path: Path, doc: dict[str, Any] | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n")
    tmp.replace(path)


@contextlib.contextmanager
def lock(c: Cluster, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Exclusive hold on this cluster's istiod (the follower and the manual commands take it)."""
    path = c.dir / "run" / "istiod.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:

        def take() -> bool:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        wait_until(
            f"the lock {path}",
            take,
            timeout,
            0.2,
            lambda: IstiodError(
                f"{c.name}: {path} is held by another lab process (the follower starting istiod?) "
                f"for more than {timeout:.0f}s"
            ),
        )
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def http_url(c: Cluster) -> str:
    """Where this cluster's istiod serves /ready and /debug/* (its port 8080)."""
    return f"http://{c.ip}:{c.istiod_ports[8080]}"


def xds_address(c: Cluster) -> str:
    """istiod's plaintext xDS (its port 15010)."""
    return f"{c.ip}:{c.istiod_ports[15010]}"


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


def materialize(api: Client, c: Cluster) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Writes istiod's files from the cluster's objects; returns (args, env, facts for the log)."""
    wd = workdir(c)
    spec = _deployment_container(api, c)
    container, sa = spec["container"], spec["sa"] or SERVICE_ACCOUNT
    source = identity(spec["deployment"], injector_present(api, spec["deployment"]))

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
    facts = {
        "CLUSTER_ID": env.get("CLUSTER_ID"),
        "cacerts": cacerts,
        "serviceAccount": f"{NAMESPACE}/{sa}",
        "source": source,
    }
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


def launch(binary: Path, c: Cluster, restart: bool = False) -> dict[str, Any]:
    """Starts this cluster's istiod (stopping it first with ``restart``) without waiting for it to be
    ready; returns facts for the log, with ``pid`` when one was started. The caller holds ``lock(c)``."""
    pidfile, log = c.pidfile("istiod"), c.log("istiod")
    if restart:
        procs.stop(pidfile, binary)
    elif procs.running_pid(pidfile, binary) is not None:
        return {"state": "already running"}
    api = Client(c)
    args, env, f = materialize(api, c)
    pid = procs.start(binary, args, pidfile, log, workdir(c), {**_base_env(), **env})
    write_json(source_file(c), f["source"])
    print(
        f"[lab] {c.name}: istiod pid {pid} (CLUSTER_ID={f['CLUSTER_ID']}, cacerts keys {f['cacerts'] or 'none'}, "
        f"identity {f['serviceAccount']}, injector ConfigMap {'present' if f['source']['injector'] else 'absent'}) "
        f"on {http_url(c)}",
        flush=True,
    )
    return {**f, "pid": pid, "http": http_url(c)}


def wait_ready(binary: Path, cl: list[Cluster], timeout: float) -> None:
    """Waits until every cluster's istiod answers /ready; fails with its log if one exits or times out."""

    def started(c: Cluster) -> bool:
        if procs.running_pid(c.pidfile("istiod"), binary) is None:
            # The follower restarts istiod under the lock (a rollout seen meanwhile): between its stop and
            # its start no istiod runs. Only one that is still gone once the lock is free has exited.
            with lock(c):
                if procs.running_pid(c.pidfile("istiod"), binary) is None:
                    raise IstiodError(
                        f"{c.name}: istiod exited during start-up. Last lines of {c.log('istiod')}:\n"
                        + procs.tail(c.log("istiod"), 30)
                    )
            return False
        return ready(c)

    wait_for_each(
        "istiod /ready",
        cl,
        started,
        timeout,
        0.5,
        lambda pending: IstiodError(
            f"istiod not ready after {timeout:.0f}s in {', '.join(c.name for c in pending)}; see "
            + ", ".join(str(c.log("istiod")) for c in pending)
        ),
    )


def start(binary: Path, cl: list[Cluster], timeout: float = 120.0, restart: bool = False) -> dict[str, Any]:
    """Starts (or, with ``restart``, restarts) istiod for each cluster and waits until each is ready
    (one already running too). A manual start lifts a manual ``stop`` (its marker is removed)."""
    facts: dict[str, Any] = {}
    for c in cl:
        with lock(c):
            stop_marker(c).unlink(missing_ok=True)
            facts[c.name] = launch(binary, c, restart)
        if "pid" not in facts[c.name]:
            print(f"[lab] {c.name}: istiod already running", flush=True)
    wait_ready(binary, cl, timeout)
    return facts


def stop(binary: Path | str, cl: list[Cluster], hold: bool = False) -> list[str]:
    """Stops istiod in each cluster; returns the clusters where one ran.

    ``hold`` (a manual ``lab istiod stop``): first records the Deployment the stop applies to in
    ``stop_marker``, so the follower leaves istiod stopped until that Deployment changes or is deleted.
    """
    stopped = []
    for c in cl:
        with lock(c):
            if hold:
                current: dict[str, Any] | None = None
                try:
                    api = Client(c, timeout=5)
                    dep = api.get(deployment_path())
                    current = identity(dep, injector_present(api, dep))
                except (OSError, ApiError, ValueError):
                    current = read_json(source_file(c))  # no answer: the Deployment istiod last ran from
                write_json(stop_marker(c), {"deployment": current, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
            if procs.stop(c.pidfile("istiod"), binary):
                stopped.append(c.name)
    return stopped


def debug(c: Cluster, path: str, timeout: float = 10.0) -> Any:
    """GET istiod's /debug/<path> as JSON."""
    with urllib.request.urlopen(f"{http_url(c)}/debug/{path}", timeout=timeout) as r:
        return json.loads(r.read() or b"null")
