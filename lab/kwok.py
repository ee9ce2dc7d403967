"""KWOK in a lab cluster: the files that configure it beyond its default stages, and the fake nodes it plays.

KWOK manages the nodes annotated ``kwok.x-k8s.io/node=fake`` (``KWOK_NODE_ANNOTATION``): it keeps them
Ready through their Leases, marks the pods scheduled on them Running and gives them IPs from the node's
``spec.podCIDR``. The lab adds two KWOK objects of its own, written as data and dumped as YAML next to
the cluster's other files and passed to KWOK with ``--config``: a Stage that plays the cloud's
load-balancer controller, and a ClusterPortForward that sends port-forwards to istio-system pods to the
lab's istiod.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .kubeapi import ApiError, Client
from .layout import Cluster

KWOK_API_VERSION = "kwok.x-k8s.io/v1alpha1"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
LB_STAGE_FILE = "kwok-loadbalancer-stage.yaml"
PORT_FORWARD_FILE = "kwok-port-forward.yaml"
#: istiod's in-cluster ports a port-forward to an istio-system pod reaches (8080 and 15012 are used).
FORWARDED_ISTIOD_PORTS = (8080, 15010, 15012, 15014)


# ---- configuration files -------------------------------------------------------------------------
def lb_stage(c: Cluster) -> dict[str, Any]:
    """A KWOK Stage that plays the cloud's load-balancer controller: every Service of type
    LoadBalancer gets ``status.loadBalancer.ingress[0].ip`` = the cluster's load-balancer address
    (``Cluster.load_balancer_ip``, reachable from every lab network: ``lab/network.py``, where the data
    plane forwards it to the Service's pods).

    This is how the east-west gateway gets its address in the lab. Istio reads a network gateway's
    address from that status, and Pulumi's await logic for a LoadBalancer Service waits for it.
    """
    # KWOK renders the template (a Go template) and applies the YAML it yields as a merge patch.
    status = {"loadBalancer": {"ingress": [{"ip": c.load_balancer_ip, "ipMode": "VIP"}]}}
    return {
        "apiVersion": KWOK_API_VERSION,
        "kind": "Stage",
        "metadata": {"name": "lab-service-loadbalancer"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Service"},
            "selector": {
                "matchExpressions": [
                    {"key": ".spec.type", "operator": "In", "values": ["LoadBalancer"]},
                    {"key": ".status.loadBalancer.ingress", "operator": "DoesNotExist"},
                ]
            },
            "next": {
                "patches": [
                    {
                        "subresource": "status",
                        "root": "status",
                        "type": "merge",
                        "template": yaml.safe_dump(status, sort_keys=False),
                    }
                ]
            },
        },
    }


def port_forward(c: Cluster) -> dict[str, Any]:
    """A KWOK ClusterPortForward: ``kubectl port-forward`` to a pod in ``istio-system`` reaches the lab's
    istiod of that cluster (ports 8080 and 15012, and 15010/15014 for completeness).

    The API server forwards a pod port-forward to the kubelet of the pod's node; here that is KWOK's
    server (``--node-port``, TLS), which dials the configured target. So the path a real client takes
    (API server -> kubelet -> pod) is the one exercised: only the last hop ends at a local process
    instead of a container. The istiod pods the chart creates are fake; their ports are these.
    """
    return {
        "apiVersion": KWOK_API_VERSION,
        "kind": "ClusterPortForward",
        "metadata": {"name": "lab-istiod"},
        "spec": {
            "selector": {"matchNamespaces": ["istio-system"]},
            "forwards": [
                {"ports": [port], "target": {"address": c.ip, "port": c.istiod_ports[port]}}
                for port in FORWARDED_ISTIOD_PORTS
            ],
        },
    }


def write_lb_stage(c: Cluster) -> None:
    """``.lab/<cluster>/kwok-loadbalancer-stage.yaml`` (``lb_stage``)."""
    _write(c.dir / LB_STAGE_FILE, f"{c.name}: KWOK acts as the load-balancer controller", lb_stage(c))


def write_port_forward(c: Cluster) -> None:
    """``.lab/<cluster>/kwok-port-forward.yaml`` (``port_forward``)."""
    _write(
        c.dir / PORT_FORWARD_FILE,
        f"{c.name}: port-forwards to istio-system pods reach the lab's istiod",
        port_forward(c),
    )


def _write(path: Path, purpose: str, doc: dict[str, Any]) -> None:
    """Write ``doc`` under a comment saying who wrote it; an unchanged file is left alone."""
    text = f"# Written by `python -m lab up` for {purpose}.\n" + yaml.safe_dump(doc, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


# ---- KWOK's own CRDs ----------------------------------------------------------------------------
#: KWOK is started with these kinds read from the API (one object per pod, made by the data plane).
ENABLED_CRDS = ("Exec", "PortForward")


def install_crds(c: Cluster, crds_file: Path) -> None:
    """Create KWOK's Exec and PortForward CRDs (the toolchain's ``share/kwok/crds.yaml``; an existing
    one is kept): KWOK watches them from its start."""
    api = Client(c)
    for doc in yaml.safe_load_all(crds_file.read_text()):
        if doc:
            api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)


def crds_established(c: Cluster, crds_file: Path) -> bool:
    api = Client(c)
    try:
        for doc in yaml.safe_load_all(crds_file.read_text()):
            if not doc:
                continue
            crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{doc['metadata']['name']}")
            conds = {x["type"]: x["status"] for x in crd.get("status", {}).get("conditions", [])}
            if conds.get("Established") != "True":
                return False
    except (OSError, ApiError):
        return False
    return True


# ---- the fake nodes ------------------------------------------------------------------------------
def ensure_nodes(c: Cluster, count: int) -> None:
    """Create the fake nodes ``<cluster>-node1..count`` (an existing one is kept)."""
    api = Client(c)
    for k, name in enumerate(c.node_names(count), start=1):
        cidr = c.node_pod_cidr(k)
        api.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                        "topology.istio.io/network": c.network,
                    },
                },
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                "status": {
                    "allocatable": {"cpu": "32", "memory": "128Gi", "pods": "250"},
                    "capacity": {"cpu": "32", "memory": "128Gi", "pods": "250"},
                },
            },
        )


def release_node_leases(c: Cluster) -> None:
    """Delete the Leases of the fake nodes before a new KWOK starts.

    KWOK names itself ``<hostname>_<random uuid>`` and only simulates nodes whose Lease it holds, so
    after a restart it would wait for the previous instance's Leases to expire (up to 40 s) while
    the nodes still look Ready and new pods stay Pending.
    """
    api = Client(c)
    for n in api.get("/api/v1/nodes").get("items", []):
        if n["metadata"].get("annotations", {}).get(KWOK_NODE_ANNOTATION) == "fake":
            api.delete(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n['metadata']['name']}")


def node_readiness(api: Client) -> dict[str, bool]:
    out = {}
    for n in api.get("/api/v1/nodes").get("items", []):
        conds = {x["type"]: x["status"] for x in n.get("status", {}).get("conditions", [])}
        out[n["metadata"]["name"]] = conds.get("Ready") == "True"
    return out


def nodes_ready(c: Cluster, count: int) -> bool:
    """Every fake node Ready, and its Lease held (by the running KWOK: stale ones were deleted)."""
    api = Client(c)
    try:
        ready = node_readiness(api)
        if not all(ready.get(n) for n in c.node_names(count)):
            return False
        for n in c.node_names(count):
            lease = api.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n}")
            if not lease.get("spec", {}).get("holderIdentity"):
                return False
    except (OSError, ApiError):
        return False
    return True
