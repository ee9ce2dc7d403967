"""The edits check (pure): the program's objects whose fields someone other than the program, istiod or
Kubernetes' own controllers has set (``kubectl edit``, ``kubectl set env``, ``kubectl patch``, a script).

``pulumi preview --refresh`` compares only the fields the program applies (server-side apply): a field it does
not set, such as an environment variable added to istiod with ``kubectl set env``, never shows up there,
and ``pulumi up`` leaves it as it is. ``metadata.managedFields`` says who set what; every field set by a manager
that ``verify.managed_fields.role_of`` does not know is named, with the manager, the operation and when.

Not named: fields a known manager holds as well (the program applying the same value: a field moved into the
stack config is the program's from the next ``up``), observed state (``status``, and anything written
through the status subresource: a load balancer's address), and annotations that record a write and change
nothing (``kubectl rollout restart``'s ``restartedAt``, ``kubectl apply``'s last-applied configuration).

These are warnings, not findings: an edit is drift from the program, not a mesh that is broken; when an edit
does break the mesh, the check of what broke fails verify and the warning names the likely cause.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from .facts import ClusterFacts, Finding, MeshObject
from .managed_fields import Path, leaf_paths, render, role_of, unexplained

#: The most fields a warning lists per manager (the JSON's ``edits`` has them all).
MAX_FIELDS_SHOWN = 8

#: Where the stack config holds the values of a chart the program installs (docs/configuration.md), by the
#: chart's name (its ``helm.sh/chart`` label): what makes an edit of its objects the program's own.
CHART_SETTINGS = {
    "istiod": "istio.values (the istiod chart's values; clusters[].istio.values for one cluster)",
    "gateway": "eastWestGateway.values (the east-west gateway chart's values; clusters[].eastWestGateway.values "
    "for one cluster)",
}
#: How ``kubectl`` names each kind the check reads (``gateway`` alone could mean the Gateway API's).
KUBECTL_RESOURCE = {
    "Namespace": "namespace",
    "MutatingWebhookConfiguration": "mutatingwebhookconfiguration",
    "ValidatingWebhookConfiguration": "validatingwebhookconfiguration",
    "Deployment": "deployment",
    "Service": "service",
    "ConfigMap": "configmap",
    "Secret": "secret",
    "Gateway": "gateways.networking.istio.io",
}


@dataclass(frozen=True)
class Change:
    """What one manager (by one operation) set on an object that no known manager holds."""

    manager: str
    operation: str
    time: str | None
    fields: tuple[str, ...]
    #: The same fields as paths (for the fix: environment variables named in them).
    paths: frozenset[Path]


@dataclass(frozen=True)
class Edit:
    """An object of the program changed by others."""

    cluster: str
    obj: MeshObject
    changes: tuple[Change, ...]


def changes_of(o: MeshObject) -> list[Change]:
    """The fields of ``o`` set by managers other than the program, istiod and Kubernetes, per manager and
    operation (sorted by manager); empty when there are none or ``o`` has no managed fields."""
    known: set[Path] = set()
    others: dict[tuple[str, str], tuple[set[Path], list[str]]] = {}
    for e in o.managed_fields:
        paths = leaf_paths(e.fields)
        if role_of(e.manager, o.patch_field_manager):
            known |= paths
        elif e.subresource != "status":  # observed state, written by whichever controller serves it
            held, times = others.setdefault((e.manager, e.operation), (set(), []))
            held |= paths
            if e.time:
                times.append(e.time)
    out = []
    for (manager, operation), (paths, times) in sorted(others.items()):
        left = frozenset(unexplained(paths, known))
        if left:
            out.append(Change(manager, operation, max(times) if times else None, tuple(render(left)), left))
    return out


def edits_in(c: ClusterFacts) -> list[Edit]:
    """The program's objects in cluster ``c`` that others changed (none when they were not read)."""
    out = []
    for o in c.mesh_objects or []:
        changes = changes_of(o)
        if changes:
            out.append(Edit(c.name, o, tuple(changes)))
    return out


def check_edits(clusters: Sequence[ClusterFacts]) -> list[Finding]:
    """Warnings: one per object of the program that others changed, and one per list that could not be read."""
    out: list[Finding] = []
    for c in clusters:
        if c.api_error or not c.istio_namespace_exists:
            continue  # the cluster's own finding says why nothing was read
        out += [
            Finding(
                c.name,
                "edit-unread",
                f"in {c.name} the edits check could not list {what}; those objects are not checked for edits by others",
                "give the kubeconfig's user list access to them (verify reads their metadata only)",
            )
            for what in c.unread_objects
        ]
        out += [Finding(e.cluster, "edit", edit_cause(e), edit_fix(e)) for e in edits_in(c)]
    return out


def edit_cause(e: Edit) -> str:
    """``Deployment istio-system/istiod in cluster2 was changed outside the program by kubectl-set (Update,
    2026-09-01T10:00:00Z): spec.template.spec.containers[name=discovery].env[name=X]``."""
    by = "; by ".join(
        f"{c.manager or '(no manager)'} ({c.operation or '?'}, {c.time or 'time unknown'}): {_fields(c.fields)}"
        for c in e.changes
    )
    return f"{e.obj.describe()} in {e.cluster} was changed outside the program by {by}"


def edit_fix(e: Edit) -> str:
    """Undo it, or, where the stack config can say the same (the charts' values), move it there."""
    o = e.obj
    where = f"-n {o.namespace} " if o.namespace else ""
    env = sorted({name for c in e.changes for name in env_names(c.paths)})
    if o.kind == "Deployment" and env:
        undo = f"kubectl --context {e.cluster} {where}set env deployment/{o.name} {' '.join(n + '-' for n in env)}"
    else:
        undo = f"kubectl --context {e.cluster} {where}edit {KUBECTL_RESOURCE.get(o.kind, o.kind.lower())} {o.name}"
    text = f"if it is not meant, undo it ({undo}; pulumi up --refresh restores only the fields the program sets)"
    setting = CHART_SETTINGS.get(o.chart or "")
    if setting is None:
        return text + "; the stack config has no setting for it"
    text += f"; if it is meant, put it into the stack config's {setting} so the program applies it"
    if o.chart == "istiod" and o.kind == "Deployment" and env:
        text += f" (istiod's environment variables go under pilot.env: {', '.join(f'pilot.env.{n}' for n in env)})"
    return text


def env_names(paths: frozenset[Path]) -> list[str]:
    """The environment variables a set of paths names (``...f:env`` then ``k:{"name":"X"}``)."""
    names = set()
    for p in paths:
        for a, b in itertools.pairwise(p):
            if a == "f:env" and b.startswith("k:"):
                try:
                    key = json.loads(b[2:])
                except ValueError:
                    continue
                if isinstance(key, dict) and isinstance(key.get("name"), str):
                    names.add(key["name"])
    return sorted(names)


def _fields(fields: Sequence[str]) -> str:
    shown = ", ".join(fields[:MAX_FIELDS_SHOWN])
    more = len(fields) - MAX_FIELDS_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
