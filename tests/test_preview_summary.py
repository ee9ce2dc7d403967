"""The PR-comment summary groups changed Kubernetes objects by the cluster they land in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import preview_summary

STACK_URN = "urn:pulumi:prod::istio-mesh::"
P1 = f"{STACK_URN}pulumi:providers:kubernetes::k8s-cluster1::1111"
P2 = f"{STACK_URN}pulumi:providers:kubernetes::k8s-cluster2::2222"


def _step(op: str, typ: str, name: str, provider: str, meta: dict[str, str], **extra: Any) -> dict[str, Any]:
    urn = f"{STACK_URN}istiomesh:index:MultiPrimaryMesh${typ}::{name}"
    state = {"urn": urn, "type": typ, "provider": provider, "inputs": {"metadata": meta}}
    return {"op": op, "urn": urn, "newState": state, **extra}


def _preview() -> dict[str, Any]:
    return {
        "steps": [
            _step(
                "create",
                "kubernetes:core/v1:Secret",
                "m-c1-c2-cluster2-remote-secret-in-cluster1",
                P1,
                {"name": "istio-remote-secret-cluster2", "namespace": "istio-system"},
            ),
            _step(
                "update",
                "kubernetes:core/v1:Namespace",
                "m-cluster2-namespace",
                P2,
                {"name": "istio-system"},
                detailedDiff={"metadata.labels.topology.istio.io/network": {"kind": "update"}},
                diffReasons=["metadata"],
            ),
            _step(
                "same",
                "kubernetes:core/v1:Secret",
                "m-cluster1-ca-cacerts",
                P1,
                {"name": "cacerts", "namespace": "istio-system"},
            ),
            _step("replace", "tls:index/privateKey:PrivateKey", "m-root-ca-key", "", {}, replaceReasons=["rsaBits"]),
        ],
        "changeSummary": {"create": 1, "update": 1, "same": 1, "replace": 1},
        "diagnostics": [{"severity": "warning", "message": "the remote secret points at a loopback address\nmore"}],
    }


def test_groups_changes_by_cluster_and_counts_the_rest() -> None:
    md = preview_summary.render(_preview(), "prod")
    assert md.startswith("### `pulumi preview` — stack `prod`")
    assert "| create | 1 |" in md and "| update | 1 |" in md and "| replace | 1 |" in md
    c1, c2 = md.index("#### Cluster `cluster1`"), md.index("#### Cluster `cluster2`")
    assert "| + create | Secret | `istio-system/istio-remote-secret-cluster2` |" in md[c1:c2]
    assert "| ~ update | Namespace | `istio-system` | `metadata.labels.topology.istio.io/network` |" in md[c2:]
    assert "cacerts" not in md  # unchanged objects are counted, not listed
    assert "| +- replace | `tls:index/privateKey:PrivateKey` | `m-root-ca-key` |" in md.split("#### Other resources")[1]
    assert "- the remote secret points at a loopback address" in md


def test_no_changes() -> None:
    md = preview_summary.render({"steps": [], "changeSummary": {"same": 57}})
    assert "No changes. 57 resources unchanged." in md


def test_rejects_what_is_not_a_preview(tmp_path: Any) -> None:
    with pytest.raises(preview_summary.NotAPreviewError):
        preview_summary.render({"hello": 1})
    bad = tmp_path / "x.json"
    bad.write_text("Previewing update (prod)")
    script = os.path.join(os.path.dirname(preview_summary.__file__), "preview_summary.py")
    proc = subprocess.run([sys.executable, script, str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "pulumi preview --json" in proc.stderr
    good = tmp_path / "p.json"
    good.write_text(json.dumps(_preview()))
    proc = subprocess.run([sys.executable, script, str(good)], capture_output=True, text=True, check=True)
    assert "#### Cluster `cluster1`" in proc.stdout
