#!/usr/bin/env python3
"""Turns a ``pulumi preview`` into a Markdown summary fit for a pull-request comment.

    pulumi preview --json --diff -s <stack> > preview.json
    scripts/preview_summary.py preview.json > comment.md        # or: ... | scripts/preview_summary.py -

The summary counts changes per operation, then lists every changed Kubernetes object grouped by the
cluster it lands in (the provider it is bound to), with kind, namespace/name and the changed fields,
so a reviewer sees "cluster2: Secret istio-system/istio-remote-secret-cluster1 updated (data)" rather
than a wall of URNs. Unchanged resources are counted, not listed. Exit code: 0, or 2 when the input is
not a Pulumi preview (with the reason).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

#: Display order and symbols of step operations (as in Pulumi's own output).
OPS = {
    "create": "+",
    "update": "~",
    "replace": "+-",
    "create-replacement": "++",
    "delete-replaced": "--",
    "delete": "-",
    "read": ">",
    "refresh": "~",
    "import": "=",
    "same": " ",
}
CHANGING = ("create", "update", "replace", "create-replacement", "delete", "import")


class NotAPreviewError(ValueError):
    """The input is not the JSON ``pulumi preview --json`` prints."""


def _urn_parts(urn: str) -> tuple[str, str]:
    """(type, name) of a URN: ``urn:pulumi:<stack>::<project>::<parent types$>type::name``."""
    parts = urn.split("::")
    if len(parts) < 4:
        return "", urn
    return parts[2].split("$")[-1], "::".join(parts[3:])


def _provider_name(ref: str | None) -> str:
    """``<provider urn>::<id>`` -> the provider's logical name (``k8s-cluster1``)."""
    if not ref:
        return ""
    parts = ref.split("::")
    return parts[-2] if len(parts) >= 2 else ref


def _cluster_of(step: Mapping[str, Any]) -> str:
    state = step.get("newState") or step.get("oldState") or {}
    provider = _provider_name(state.get("provider") or step.get("provider"))
    return provider.removeprefix("k8s-") if provider else "(no cluster)"


def _object_name(step: Mapping[str, Any]) -> str:
    state = step.get("newState") or step.get("oldState") or {}
    for source in (state.get("inputs") or {}, state.get("outputs") or {}):
        meta = source.get("metadata") if isinstance(source, Mapping) else None
        if isinstance(meta, Mapping) and meta.get("name"):
            ns = meta.get("namespace")
            return f"{ns}/{meta['name']}" if ns else str(meta["name"])
    return _urn_parts(step.get("urn", ""))[1]


def _kind(resource_type: str) -> str:
    """``kubernetes:apps/v1:Deployment`` -> ``Deployment``; other types unchanged."""
    return resource_type.rsplit(":", 1)[-1] if resource_type.startswith("kubernetes:") else resource_type


def _changed_fields(step: Mapping[str, Any]) -> str:
    diff = step.get("detailedDiff") or {}
    fields = sorted(diff) if isinstance(diff, Mapping) else []
    if not fields:
        fields = sorted(step.get("diffReasons") or [])
    replace = sorted(step.get("replaceReasons") or [])
    text = ", ".join(f"`{f}`" for f in fields[:8]) + (f" (+{len(fields) - 8} more)" if len(fields) > 8 else "")
    if replace:
        text += ("; " if text else "") + "replace because " + ", ".join(f"`{f}`" for f in replace)
    return text


def parse(preview: Any) -> dict[str, Any]:
    """Validates and normalises a preview document."""
    if not isinstance(preview, Mapping) or ("steps" not in preview and "changeSummary" not in preview):
        raise NotAPreviewError(
            "expected the JSON of `pulumi preview --json` (an object with 'steps' and 'changeSummary')"
        )
    steps = preview.get("steps") or []
    if not isinstance(steps, list):
        raise NotAPreviewError("'steps' is not a list")
    return {
        "steps": steps,
        "summary": preview.get("changeSummary") or {},
        "diagnostics": preview.get("diagnostics") or [],
    }


def render(preview: Any, stack: str = "") -> str:
    """The Markdown comment for ``preview``."""
    doc = parse(preview)
    counts: dict[str, int] = defaultdict(int)
    for op, n in doc["summary"].items():
        counts[op] += int(n)
    if not counts:
        for step in doc["steps"]:
            counts[step.get("op", "?")] += 1

    by_cluster: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    others: list[tuple[str, str, str]] = []
    for step in doc["steps"]:
        op = step.get("op", "")
        if op not in CHANGING:
            continue
        rtype, name = _urn_parts(step.get("urn", ""))
        if rtype.startswith("kubernetes:") and not rtype.startswith("kubernetes:helm.sh/"):
            by_cluster[_cluster_of(step)].append((op, _kind(rtype), _object_name(step), _changed_fields(step)))
        elif not rtype.startswith("pulumi:"):
            others.append((op, rtype, name))

    title = f"### `pulumi preview`{f' — stack `{stack}`' if stack else ''}"
    lines = [title, ""]
    changing = sum(n for op, n in counts.items() if op in CHANGING)
    if changing == 0:
        lines.append(f"No changes. {counts.get('same', 0)} resources unchanged.")
    else:
        lines.append("| operation | count |")
        lines.append("|---|---:|")
        for op in OPS:
            if counts.get(op):
                lines.append(f"| {op} | {counts[op]} |")
    errors = [d for d in doc["diagnostics"] if d.get("severity") == "error"]
    warnings = [d for d in doc["diagnostics"] if d.get("severity") == "warning"]
    for label, diags in (("Errors", errors), ("Warnings", warnings)):
        if diags:
            lines += ["", f"**{label}**", ""]
            lines += [
                f"- {str(d.get('message', '')).strip().splitlines()[0] if d.get('message') else ''}" for d in diags
            ]
    for cluster in sorted(by_cluster):
        rows = sorted(by_cluster[cluster], key=lambda r: (list(OPS).index(r[0]) if r[0] in OPS else 99, r[1], r[2]))
        lines += ["", f"#### Cluster `{cluster}` — {len(rows)} Kubernetes object(s) change", ""]
        lines += ["| | kind | namespace/name | changed |", "|---|---|---|---|"]
        lines += [f"| {OPS.get(op, op)} {op} | {kind} | `{name}` | {fields} |" for op, kind, name, fields in rows]
    if others:
        lines += ["", "#### Other resources", "", "| | type | name |", "|---|---|---|"]
        lines += [f"| {OPS.get(op, op)} {op} | `{rtype}` | `{name}` |" for op, rtype, name in sorted(others)]
    return "\n".join(lines) + "\n"


def _read(path: str) -> Any:
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotAPreviewError(f"not JSON ({exc}); run `pulumi preview --json --diff`") from None


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("preview", help="file with `pulumi preview --json` output, or - for stdin")
    parser.add_argument("--stack", default="", help="stack name for the title")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        sys.stdout.write(render(_read(args.preview), args.stack))
    except NotAPreviewError as exc:
        print(f"preview_summary: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
