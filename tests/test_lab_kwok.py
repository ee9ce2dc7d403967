"""The KWOK files the lab writes for a cluster, pinned to what they loaded to before issue 13.

``OLD_*`` are ``yaml.safe_load`` of the f-string YAML lab/cluster.py wrote for cluster2 before the
files were built as data: the new files must load to the same objects.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import kwok, layout
from lab.layout import Cluster

OLD_LB_STAGE: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
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
                    "template": 'loadBalancer:\n  ingress:\n  - ip: "198.19.200.2"\n    ipMode: VIP\n',
                }
            ]
        },
    },
}

OLD_PORT_FORWARD: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
    "kind": "ClusterPortForward",
    "metadata": {"name": "lab-istiod"},
    "spec": {
        "selector": {"matchNamespaces": ["istio-system"]},
        "forwards": [
            {"ports": [8080], "target": {"address": "127.0.2.1", "port": 20208}},
            {"ports": [15010], "target": {"address": "127.0.2.1", "port": 20210}},
            {"ports": [15012], "target": {"address": "127.0.2.1", "port": 20212}},
            {"ports": [15014], "target": {"address": "127.0.2.1", "port": 20214}},
        ],
    },
}


@pytest.fixture
def c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    c = Cluster(2)
    c.dir.mkdir()
    return c


def _with_template_loaded(stage: dict[str, Any]) -> dict[str, Any]:
    """The Stage with its patch template (a string: KWOK renders it, then reads it as YAML) as data."""
    out = copy.deepcopy(stage)
    patch = out["spec"]["next"]["patches"][0]
    patch["template"] = yaml.safe_load(patch["template"])
    return out


def test_the_load_balancer_stage_loads_as_before(c: Cluster) -> None:
    kwok.write_lb_stage(c)
    text = (c.dir / kwok.LB_STAGE_FILE).read_text()
    assert text.startswith(f"# Written by `python -m lab up` for {c.name}")
    new = yaml.safe_load(text)
    assert _with_template_loaded(new) == _with_template_loaded(OLD_LB_STAGE)
    assert _with_template_loaded(new)["spec"]["next"]["patches"][0]["template"] == {
        "loadBalancer": {"ingress": [{"ip": "198.19.200.2", "ipMode": "VIP"}]}
    }


def test_the_port_forward_loads_as_before(c: Cluster) -> None:
    kwok.write_port_forward(c)
    text = (c.dir / kwok.PORT_FORWARD_FILE).read_text()
    assert text.startswith(f"# Written by `python -m lab up` for {c.name}")
    assert yaml.safe_load(text) == OLD_PORT_FORWARD
