"""Where one lab cluster's istiod is: its Deployment's names in the cluster and its files in the lab.

The names the chart gives istiod in ``istio-system`` (Deployment, container, ServiceAccount, Service, the
injector's ConfigMap); istiod's working directory ``.lab/<cluster>/istiod/``; and what says which
Deployment it runs from: ``identity`` (uid, pod template, whether the injector's ConfigMap existed),
recorded in ``istiod/source.json`` when it starts, and the manual stop's ``run/istiod.stopped``. Shared by
the command line (``lab/istiod_spec.py``), the process (``lab/istiod.py``, which re-exports these names)
and the follower (``lab/follower.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .kubeapi import ApiError, Client
from .layout import Cluster

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
