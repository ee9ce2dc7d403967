"""A lost stack state, brought back from the file backend's own backups.

    python scripts/state_backups.py list STACK [--backend DIR] [--project NAME] [--json]
    python scripts/state_backups.py deployment BACKUP_FILE > state.json
    pulumi stack import --stack STACK --file state.json

The file backend copies a stack's state after every update into
``<DIR>/.pulumi/backups/<project>/<stack>/<stack>.<time>.json`` and keeps those copies when the stack
is removed (``pulumi stack rm --force``) or made anew under the same name. ``list`` shows each copy,
oldest first: when it was saved, how many resources it holds, and the SHA-256 fingerprint of the mesh
root CA in it, the one to match with the root a cluster's ``cacerts`` holds (the create guard's "lost
state" error names it). ``deployment`` prints a copy as what ``pulumi stack import`` takes (a copy is
a checkpoint; its ``checkpoint.latest`` is the deployment). ``DIR`` defaults to ``$PULUMI_BACKEND_URL``
(``file://...``), the project to ``name`` in ``Pulumi.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ROOT_CA_TYPE = "istiomesh:index:RootCA"


def backups_dir(backend: str, project: str, stack: str) -> Path:
    """Where the file backend at ``backend`` (a directory or a ``file://`` URL) keeps ``stack``'s copies."""
    path = backend.split("?", 1)[0]
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif "://" in path:
        raise SystemExit(f"backend {backend!r} is not a file backend: only file:// backends keep these copies")
    return Path(path).expanduser() / ".pulumi" / "backups" / project / stack


def summary(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """time, resources and root fingerprint(s) of one saved checkpoint."""
    latest = (checkpoint.get("checkpoint") or {}).get("latest") or {}
    resources = latest.get("resources") or []
    roots = sorted(
        {
            str(r["outputs"]["fingerprint"])
            for r in resources
            if r.get("type") == ROOT_CA_TYPE and isinstance((r.get("outputs") or {}).get("fingerprint"), str)
        }
    )
    return {
        "time": (latest.get("manifest") or {}).get("time", "?"),
        "resources": len(resources),
        "roots": roots,
        "pending": len(latest.get("pending_operations") or []),
    }


def deployment(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A saved checkpoint as ``pulumi stack import`` takes it."""
    latest = (checkpoint.get("checkpoint") or {}).get("latest")
    if not isinstance(latest, dict):
        raise SystemExit("not a stack checkpoint (no checkpoint.latest): give a file from .pulumi/backups/")
    return {"version": 3, "deployment": latest}


def list_backups(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, summary) of every copy in ``directory``, oldest first (the file names carry the time)."""
    if not directory.is_dir():
        raise SystemExit(f"no backups in {directory} (is the backend and the stack name right?)")
    files = sorted(directory.glob("*.json"), key=lambda p: int(p.stem.rsplit(".", 1)[-1]))
    return [(f, summary(json.loads(f.read_text()))) for f in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/state_backups.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="the saved copies of a stack's state, oldest first")
    listing.add_argument("stack")
    listing.add_argument("--backend", default=os.environ.get("PULUMI_BACKEND_URL"))
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true", help="one JSON list: file, time, resources, roots, pending")
    export = sub.add_parser("deployment", help="one copy as `pulumi stack import --file` takes it")
    export.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command == "deployment":
        json.dump(deployment(json.loads(args.file.read_text())), sys.stdout)
        return 0
    if not args.backend:
        parser.error("give --backend DIR (or set PULUMI_BACKEND_URL=file://DIR)")
    project = args.project or (yaml.safe_load((ROOT / "Pulumi.yaml").read_text()) or {}).get("name")
    copies = list_backups(backups_dir(args.backend, str(project), args.stack))
    if args.json:
        json.dump([{"file": str(f), **s} for f, s in copies], sys.stdout, indent=1)
        return 0
    for f, s in copies:
        roots = ", ".join(s["roots"]) or "none"
        pending = f", {s['pending']} pending operations" if s["pending"] else ""
        print(f"{f}\n  saved {s['time']}, {s['resources']} resources{pending}, root CA {roots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
