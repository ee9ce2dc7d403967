"""Telling a lab stack's state from one deployed to a lab since purged (``scripts/lab_stack.py``)."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import lab_stack

OLD_CA = b"-----BEGIN CERTIFICATE-----\nold lab\n-----END CERTIFICATE-----\n"
NEW_CA = b"-----BEGIN CERTIFICATE-----\nnew lab\n-----END CERTIFICATE-----\n"


def _provider(name: str, ca: bytes, delete: bool = False) -> dict[str, Any]:
    kubeconfig = (
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.1.1:20143\n"
        f"    certificate-authority-data: {base64.b64encode(ca).decode()}\n"
    )
    # What `pulumi stack export --show-secrets` prints for a secret input: a signature and the JSON plaintext.
    secret = {
        "4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
        "plaintext": json.dumps(kubeconfig),
    }
    resource = {"type": lab_stack.PROVIDER_TYPE, "urn": f"urn:{name}", "inputs": {"kubeconfig": secret}}
    return resource | ({"delete": True} if delete else {})


def _run(resources: list[dict[str, Any]], ca: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    (tmp_path / "ca.crt").write_bytes(ca)
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps({"deployment": {"resources": resources}})))
    return lab_stack.main(["stale", str(tmp_path / "ca.crt")])


def test_a_state_whose_providers_trust_this_labs_ca_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        _run([_provider("k8s-cluster1", NEW_CA), _provider("k8s-cluster2", NEW_CA)], NEW_CA, tmp_path, monkeypatch) == 1
    )


def test_a_state_deployed_to_a_purged_lab_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _run([_provider("k8s-cluster1", OLD_CA), _provider("k8s-cluster2", OLD_CA)], NEW_CA, tmp_path, monkeypatch) == 0
    )
    assert "urn:k8s-cluster1: its kubeconfig trusts another CA" in capsys.readouterr().out


def test_old_providers_a_failed_run_left_pending_deletion_make_it_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A run against the new lab replaced the providers, then failed deleting through the old ones.
    resources = [_provider("k8s-cluster1", NEW_CA), _provider("k8s-cluster1", OLD_CA, delete=True)]
    assert _run(resources, NEW_CA, tmp_path, monkeypatch) == 0
    assert capsys.readouterr().out.count("urn:k8s-cluster1") == 1


def test_an_empty_state_is_not_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run([{"type": "pulumi:pulumi:Stack", "urn": "urn:stack"}], NEW_CA, tmp_path, monkeypatch) == 1
