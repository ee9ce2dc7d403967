"""``python -m lab verify``: prove each running cluster does what the Pulumi stack relies on.

In a scratch namespace of every cluster: a Deployment of 2 replicas becomes Available (scheduler,
ReplicaSet controller, KWOK); a ServiceAccount's ``kubernetes.io/service-account-token`` Secret gets
``token`` and ``ca.crt`` and that token, with that CA, lists pods (RBAC, token authentication); a
``type: LoadBalancer`` Service gets the cluster's loopback address as its load-balancer IP. The
namespace is deleted afterwards.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from .errors import LabError
from .kubeapi import ApiError, Client
from .layout import Cluster
from .wait import wait_until


def _poll(what: str, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
    """``fn()`` once it returns something true; an error reaching the API server counts as not yet."""
    last: Exception | None = None

    def attempt() -> Any:
        nonlocal last
        try:
            return fn()
        except (OSError, ApiError) as e:
            last = e
            return None

    return wait_until(
        what,
        attempt,
        timeout,
        0.25,
        lambda: LabError(f"timed out after {timeout:.0f}s: {what}" + (f" (last error: {last})" if last else "")),
    )


def verify_cluster(c: Cluster) -> float:
    t0 = time.monotonic()
    api = Client(c)
    # A fresh namespace each run: the previous one may still be terminating.
    ns = f"lab-verify-{int(time.time() * 1000) % 10**9}"
    base = f"/api/v1/namespaces/{ns}"
    api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        labels = {"app": "lab-verify"}
        api.create(
            f"/apis/apps/v1/namespaces/{ns}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]},
                    },
                },
            },
        )
        api.create(
            f"{base}/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
        )
        api.create(
            f"{base}/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "reader-token", "annotations": {"kubernetes.io/service-account.name": "reader"}},
                "type": "kubernetes.io/service-account-token",
            },
        )
        api.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
            },
        )
        api.create(
            f"{base}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "gateway"},
                "spec": {"type": "LoadBalancer", "selector": labels, "ports": [{"name": "tls", "port": 15443}]},
            },
        )

        def available() -> bool:
            d = api.get(f"/apis/apps/v1/namespaces/{ns}/deployments/web")
            conds = {x["type"]: x["status"] for x in d.get("status", {}).get("conditions", [])}
            return d.get("status", {}).get("availableReplicas") == 2 and conds.get("Available") == "True"

        _poll(f"{c.name}: Deployment {ns}/web Available with 2 replicas", available)
        pods = api.get(f"{base}/pods")["items"]
        ips = sorted(p["status"].get("podIP", "") for p in pods)
        cidr = ipaddress.ip_network(c.pod_cidr)
        if len(pods) != 2 or not all(ip and ipaddress.ip_address(ip) in cidr for ip in ips):
            raise LabError(f"{c.name}: expected 2 pods with IPs in {c.pod_cidr}, got {ips}")

        data = _poll(
            f"{c.name}: token controller fills Secret {ns}/reader-token",
            lambda: (lambda d: d if d.get("token") and d.get("ca.crt") else None)(
                api.get(f"{base}/secrets/reader-token").get("data") or {}
            ),
        )
        token = base64.b64decode(data["token"]).decode()
        with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
            ca.write(base64.b64decode(data["ca.crt"]))
            ca.flush()
            ctx = ssl.create_default_context(cafile=ca.name)
            req = urllib.request.Request(f"{c.server}{base}/pods", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                listed = json.load(r)["items"]
        if len(listed) != 2:
            raise LabError(f"{c.name}: the service-account token listed {len(listed)} pods, expected 2")

        ingress = _poll(
            f"{c.name}: LoadBalancer Service {ns}/gateway gets an ingress IP",
            lambda: api.get(f"{base}/services/gateway").get("status", {}).get("loadBalancer", {}).get("ingress"),
        )
        if ingress[0].get("ip") != c.load_balancer_ip:
            raise LabError(f"{c.name}: load-balancer IP {ingress} is not {c.load_balancer_ip}")
        elapsed = time.monotonic() - t0
        print(
            f"[lab] {c.name}: ok in {elapsed:.1f}s (Deployment Available, pod IPs {', '.join(ips)}; "
            f"token lists pods; LoadBalancer IP {c.load_balancer_ip})",
            flush=True,
        )
        return elapsed
    finally:
        api.delete(base)


def verify(cl: list[Cluster]) -> None:
    if not cl:
        raise LabError("no lab clusters (run: python -m lab up)")
    for c in cl:
        verify_cluster(c)
