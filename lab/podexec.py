"""``kubectl exec`` and ``kubectl port-forward`` into the pods the data plane runs.

The API server sends both to the pod's kubelet, which in the lab is KWOK's server. KWOK runs an exec as
a local command and a port-forward as a local command piped to the stream, configured per pod by its
``Exec`` and ``PortForward`` objects (KWOK started with ``--enable-crds=Exec,PortForward``). The data
plane creates one of each for every pod it runs, named like the pod:

* ``PortForward``: for each port the pod's containers declare, plus Envoy's and the agent's (15000,
  15020, 15021, 15090), ``nsenter --net=<pod namespace> socat STDIO TCP:127.0.0.1:<port>``;
* ``Exec``: the environment ``LAB_POD_NETNS=<pod namespace>`` (and ``LAB_POD_UID=1337`` for
  ``istio-proxy``) and the pod's directory as working directory. KWOK resolves the command's name
  through its own ``PATH``, which the lab sets to ``.lab/<cluster>/exec-path/``: there every program
  of the host's ``PATH`` is a link to ``lab/podexec-shim``, which runs the program of that name inside
  the pod's namespace (``ip netns exec``: its hosts file too). A command given by absolute path
  (``/bin/sh``) bypasses the shim and would run on the host, so the shim's directory holds every name;
  use names, as the guide does (``curl``, ``sh``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .layout import LAB_DIR, REPO, Cluster
from .pod_spec import PROXY_CONTAINER, PROXY_UID, container_ports

KWOK_API = "kwok.x-k8s.io/v1alpha1"
SHIM = REPO / "lab" / "podexec-shim"
#: Ports every injected pod serves besides its containers' own: Envoy admin (localhost), the agent's
#: status/health, Envoy's readiness and Prometheus ports.
PROXY_PORTS = (15000, 15020, 15021, 15090)
#: The PATH the shim runs programs with.
REAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The proxy container's programs besides the host's: Istio's agent, as in its image (``pilot-agent request
#: GET certs``, what istioctl and the rotation gate ask a proxy), from the lab's copy (``cluster.py``).
PROXY_PROGRAMS = ("pilot-agent",)
PROXY_PATH = f"{LAB_DIR / 'bin'}:{REAL_PATH}"


def exec_path(c: Cluster) -> Path:
    """KWOK's PATH: a link to the shim for every program name of the host's PATH."""
    return c.dir / "exec-path"


def write_exec_path(c: Cluster) -> Path:
    """Create (or refresh) ``exec_path``; returns it."""
    d = exec_path(c)
    d.mkdir(parents=True, exist_ok=True)
    names: set[str] = set()
    for entry in REAL_PATH.split(":"):
        p = Path(entry)
        if p.is_dir():
            names.update(x.name for x in p.iterdir() if os.access(x, os.X_OK) and not x.is_dir())
    for name in sorted(names | set(PROXY_PROGRAMS)):
        link = d / name
        if not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(SHIM)
    return d


def exec_object(pod: Mapping[str, Any], netns_name: str, workdir: Path) -> dict[str, Any]:
    meta = pod["metadata"]
    base = [{"name": "LAB_POD_NETNS", "value": netns_name}, {"name": "LAB_REAL_PATH", "value": REAL_PATH}]
    return {
        "apiVersion": KWOK_API,
        "kind": "Exec",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {"lab.istio-mesh/pod-uid": meta["uid"]},
        },
        "spec": {
            "execs": [
                {
                    "containers": [PROXY_CONTAINER],
                    "local": {
                        "workDir": str(workdir),
                        "envs": [
                            {"name": "LAB_POD_NETNS", "value": netns_name},
                            {"name": "LAB_REAL_PATH", "value": PROXY_PATH},
                            {"name": "LAB_POD_UID", "value": str(PROXY_UID)},
                        ],
                    },
                },
                {"local": {"workDir": str(workdir), "envs": base}},
            ]
        },
    }


def port_forward_object(pod: Mapping[str, Any], netns_name: str) -> dict[str, Any]:
    meta = pod["metadata"]
    ports = sorted(set(container_ports(pod)) | set(PROXY_PORTS))
    nsenter = shutil.which("nsenter") or "nsenter"
    socat = shutil.which("socat") or "socat"
    return {
        "apiVersion": KWOK_API,
        "kind": "PortForward",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {"lab.istio-mesh/pod-uid": meta["uid"]},
        },
        "spec": {
            "forwards": [
                {
                    "ports": [p],
                    "command": [nsenter, f"--net=/run/netns/{netns_name}", "--", socat, "STDIO", f"TCP:127.0.0.1:{p}"],
                }
                for p in ports
            ]
        },
    }


def object_path(kind: str, namespace: str, name: str | None = None) -> str:
    plural = {"Exec": "execs", "PortForward": "portforwards"}[kind]
    base = f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base
