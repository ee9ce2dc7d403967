"""scripts/ci_kubeconfigs.py: every cluster's kubeconfig from one JSON secret, for any number of clusters."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from ci_kubeconfigs import write_kubeconfigs

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "preview.yml"


def _stack(project: Path, names: list[str]) -> None:
    clusters = [{"name": n, "network": f"net-{n}", "kubeconfig": f"kube/{n}.yaml"} for n in names]
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": {"istio-mesh:clusters": clusters}}))


def test_every_cluster_of_the_stack_gets_its_kubeconfig(tmp_path: Path) -> None:
    _stack(tmp_path, ["east", "west", "north"])
    secret = json.dumps({n: f"apiVersion: v1\n# {n}\n" for n in ("east", "west", "north")})
    written = write_kubeconfigs("prod", secret, tmp_path)
    assert sorted(p.name for p in written) == ["east.yaml", "north.yaml", "west.yaml"]
    for p in written:
        assert p.read_text() == f"apiVersion: v1\n# {p.stem}\n"
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_a_missing_or_unknown_cluster_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    _stack(tmp_path, ["east", "west"])
    with pytest.raises(SystemExit) as err:
        write_kubeconfigs("prod", json.dumps({"east": "x", "wets": "y"}), tmp_path)
    assert str(err.value) == (
        "KUBECONFIGS does not match stack prod's clusters ['east', 'west']: missing ['west']; not in the stack ['wets']"
    )
    assert not (tmp_path / "kube").exists()
    with pytest.raises(SystemExit, match="KUBECONFIGS is not JSON"):
        write_kubeconfigs("prod", "east: x", tmp_path)


def test_the_preview_workflow_hands_secrets_only_to_a_reviewed_run() -> None:
    """The workflow's guard rails (README threat model): an environment that requires a reviewer holds
    the secrets, forks get no run, never pull_request_target, kubeconfigs for any number of clusters."""
    doc = yaml.safe_load(WORKFLOW.read_text())
    triggers = doc[True]  # (YAML 1.1 reads the key `on` as a boolean)
    assert set(triggers) == {"pull_request"}
    job = doc["jobs"]["preview"]
    assert job["environment"] == "pr-preview"
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    text = WORKFLOW.read_text()
    assert "KUBECONFIG_CLUSTER" not in text and "scripts/ci_kubeconfigs.py" in text
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
