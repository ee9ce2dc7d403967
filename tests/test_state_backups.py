"""Bringing a lost state back from the file backend's copies (``scripts/state_backups.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import state_backups


def _checkpoint(time: str, fingerprint: str | None, extra: int = 0) -> dict[str, Any]:
    resources: list[dict[str, Any]] = [{"type": "pulumi:pulumi:Stack", "urn": "urn:stack"}]
    if fingerprint:
        resources.append({"type": state_backups.ROOT_CA_TYPE, "outputs": {"fingerprint": fingerprint}})
    resources += [{"type": "kubernetes:core/v1:Secret", "urn": f"urn:{i}"} for i in range(extra)]
    latest = {"manifest": {"time": time}, "secrets_providers": {"type": "passphrase"}, "resources": resources}
    return {"version": 4, "checkpoint": {"stack": "organization/istio-mesh/lab", "latest": latest}}


def test_the_copies_are_listed_oldest_first_with_their_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = state_backups.backups_dir(f"file://{tmp_path}?metadata=skip", "istio-mesh", "lab")
    assert directory == tmp_path / ".pulumi/backups/istio-mesh/lab"
    directory.mkdir(parents=True)
    # File names carry the time in nanoseconds: 9 digits sort before 10 by number, not by text.
    (directory / "lab.1000000000.json").write_text(json.dumps(_checkpoint("t2", "AB:CD", extra=3)))
    (directory / "lab.999999999.json").write_text(json.dumps(_checkpoint("t1", None)))
    (directory / "lab.1000000000.json.attrs").write_text("{}")
    listed = state_backups.list_backups(directory)
    assert [f.name for f, _ in listed] == ["lab.999999999.json", "lab.1000000000.json"]
    assert listed[1][1] == {"time": "t2", "resources": 5, "roots": ["AB:CD"], "pending": 0}

    assert state_backups.main(["list", "lab", "--backend", str(tmp_path), "--project", "istio-mesh"]) == 0
    out = capsys.readouterr().out
    assert "saved t1, 1 resources, root CA none" in out and "saved t2, 5 resources, root CA AB:CD" in out
    assert (
        state_backups.main(["list", "lab", "--backend", f"file://{tmp_path}", "--project", "istio-mesh", "--json"]) == 0
    )
    as_json = json.loads(capsys.readouterr().out)
    assert [(c["file"], c["roots"]) for c in as_json] == [
        (str(directory / "lab.999999999.json"), []),
        (str(directory / "lab.1000000000.json"), ["AB:CD"]),
    ]


def test_a_copy_becomes_what_stack_import_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "lab.1.json"
    checkpoint = _checkpoint("t1", "AB:CD")
    saved.write_text(json.dumps(checkpoint))
    assert state_backups.main(["deployment", str(saved)]) == 0
    assert json.loads(capsys.readouterr().out) == {"version": 3, "deployment": checkpoint["checkpoint"]["latest"]}
    with pytest.raises(SystemExit, match="not a stack checkpoint"):
        state_backups.deployment({"version": 3, "deployment": {}})


def test_only_a_file_backend_has_copies(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not a file backend"):
        state_backups.backups_dir("s3://bucket", "istio-mesh", "lab")
    with pytest.raises(SystemExit, match="no backups in"):
        state_backups.list_backups(tmp_path / "missing")
