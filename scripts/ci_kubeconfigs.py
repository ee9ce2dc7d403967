"""Writes each cluster's kubeconfig where a stack's config expects it, from one JSON secret (CI).

    python scripts/ci_kubeconfigs.py STACK   # reads $KUBECONFIGS: {"<cluster name>": "<kubeconfig>", ...}

For every entry of ``istio-mesh:clusters`` in ``Pulumi.<STACK>.yaml`` the kubeconfig named after the
cluster is written to the entry's ``kubeconfig`` path (``~`` and ``$VARS`` expanded, relative paths
relative to the project), readable by the owner only. Any number of clusters; a cluster without a
kubeconfig in the secret is an error naming it (nothing is written then), and so is a secret entry
for a cluster the stack does not have (a typo would otherwise go unnoticed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = '{"<cluster name>": "<kubeconfig>", ...}'
sys.path.insert(0, str(ROOT))

from stack_config.settings import CONFIG_NAMESPACE, expand_path  # noqa: E402


def targets(stack_file: Path, project_dir: Path) -> dict[str, Path]:
    """Cluster name -> where its kubeconfig must be, from the stack's config file."""
    doc: Any = yaml.safe_load(stack_file.read_text()) or {}
    clusters = (doc.get("config") or {}).get(f"{CONFIG_NAMESPACE}:clusters") or []
    out = {}
    for i, c in enumerate(clusters):
        if not isinstance(c, dict) or not c.get("name") or not c.get("kubeconfig"):
            raise SystemExit(f"{stack_file.name}: clusters[{i}] needs a name and a kubeconfig path")
        out[c["name"]] = Path(expand_path(str(c["kubeconfig"]), str(project_dir)))
    if not out:
        raise SystemExit(f"{stack_file.name}: no {CONFIG_NAMESPACE}:clusters")
    return out


def write_kubeconfigs(stack: str, secret: str, project_dir: Path = ROOT) -> list[Path]:
    """Writes every kubeconfig the stack names from ``secret`` (JSON map); returns the paths written."""
    wanted = targets(project_dir / f"Pulumi.{stack}.yaml", project_dir)
    try:
        given = json.loads(secret)
    except json.JSONDecodeError as exc:
        raise SystemExit(f'KUBECONFIGS is not JSON ({exc}); expected {{"<cluster>": "<kubeconfig>", ...}}') from None
    if not isinstance(given, dict):
        raise SystemExit('KUBECONFIGS must be a JSON object: {"<cluster>": "<kubeconfig>", ...}')
    missing = sorted(set(wanted) - set(given))
    extra = sorted(set(given) - set(wanted))
    if missing or extra:
        raise SystemExit(
            f"KUBECONFIGS does not match stack {stack}'s clusters {sorted(wanted)}: "
            + "; ".join(
                x for x in (f"missing {missing}" if missing else "", f"not in the stack {extra}" if extra else "") if x
            )
        )
    written = []
    for name, path in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(given[name]))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    secret = os.environ.get("KUBECONFIGS")
    if not secret:
        print("KUBECONFIGS is not set (a JSON object: cluster name -> kubeconfig)", file=sys.stderr)
        return 1
    for path in write_kubeconfigs(argv[1], secret):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
