"""Who set which fields of an object: its ``metadata.managedFields``, read as plain data (pure).

The API server records, per field manager and operation (``Apply``: server-side apply, ``Update``: any other
write), the fields that manager set, as a ``fieldsV1`` tree: ``f:<name>`` a field or map key, ``k:<json>``
the list item with those keys, ``v:<json>`` the set member of that value, ``i:<n>`` the item at that
index, ``.`` the item or field itself. The manager of a write is the request's ``fieldManager`` or, when
the client names none, the command name at the start of its user agent (``kubectl-set``, ``pilot-discovery``).

This module says which managers are the program, istiod or Kubernetes itself (``role_of``, the edits check
names every other one), turns a ``fieldsV1`` tree into the set of leaf paths it holds, and renders paths as
people read them: ``spec.template.spec.containers[name=discovery].env[name=X]``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

#: One leaf of a ``fieldsV1`` tree: its keys from the root (``("f:data", "f:mesh")``); a path ending in
#: ``"."`` is the item or field above it as a whole.
Path = tuple[str, ...]

#: pulumi-kubernetes under server-side apply (its default): ``pulumi-kubernetes-<8 hex digits>``, a name drawn
#: once per resource and kept in its state (``fieldManagerName`` in the provider's pkg/provider/provider.go,
#: ``resource.NewUniqueName(seed, "pulumi-kubernetes-", 0, 0, nil)``; Patch resources draw their own).
PROGRAM_SSA_MANAGER = re.compile(r"pulumi-kubernetes-[0-9a-f]+")
#: pulumi-kubernetes under client-side apply (``enableServerSideApply: false``), the names the provider
#: itself takes over when it moves such an object to server-side apply (pkg/await/await.go
#: ``fixCSAFieldManagers``).
PROGRAM_CSA_MANAGERS = frozenset({"pulumi-kubernetes", "pulumi-kubernetes.exe", "pulumi-resource-kubernetes"})
#: The annotation that names an object's pulumi-kubernetes field manager instead (pkg/metadata/annotations.go
#: ``AnnotationPatchFieldManager``): when an object carries it, its value is the program's manager too.
PATCH_FIELD_MANAGER_ANNOTATION = "pulumi.com/patchFieldManager"
#: istiod writes with client-go's default manager, its command name (pkg/kube/util.go ``IstioUserAgent``:
#: ``pilot-discovery/<version>``): its webhook patcher (pkg/webhooks/webhookpatch.go) sets the injector's and
#: the validator's ``caBundle``, the validation controller (pkg/webhooks/validation/controller) flips the
#: validator's ``failurePolicy`` to ``Fail``; its config client names ``pilot-discovery`` explicitly.
ISTIOD_MANAGERS = frozenset({"pilot-discovery"})
#: Kubernetes' own components, by command name: the controller manager (a Deployment's
#: ``deployment.kubernetes.io/revision`` annotation, the token controller filling the readers' token
#: Secrets, status), the API server (``kubernetes.io/legacy-token-last-used`` on a token Secret whose token
#: is used: pkg/serviceaccount/legacy.go, through its loopback client), the cloud controller manager (a load
#: balancer's finalizer and status), the scheduler and the kubelet (pods, listed for completeness).
KUBERNETES_MANAGERS = frozenset(
    {"kube-apiserver", "kube-controller-manager", "cloud-controller-manager", "kube-scheduler", "kubelet"}
)

#: Annotations that record a write and change nothing the object does: ``kubectl rollout restart``'s
#: restart time on a pod template (the pods restart with the same configuration; the documented fix for a
#: ``cacerts`` made anew) and ``kubectl apply``'s copy of what it applied.
NEUTRAL_ANNOTATIONS = frozenset(
    {"kubectl.kubernetes.io/restartedAt", "kubectl.kubernetes.io/last-applied-configuration"}
)

_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def role_of(manager: str, patch_field_manager: str | None = None) -> str | None:
    """``"program"``, ``"istiod"`` or ``"kubernetes"`` for a manager verify expects on the program's objects;
    None for anyone else (an edit by others). ``patch_field_manager``: the object's
    ``PATCH_FIELD_MANAGER_ANNOTATION``, if any."""
    if manager in PROGRAM_CSA_MANAGERS or PROGRAM_SSA_MANAGER.fullmatch(manager) or manager == patch_field_manager:
        return "program"
    if manager in ISTIOD_MANAGERS:
        return "istiod"
    if manager in KUBERNETES_MANAGERS:
        return "kubernetes"
    return None


def leaf_paths(fields: Mapping[str, Any] | None) -> set[Path]:
    """Every leaf of a ``fieldsV1`` tree as a path from the root."""
    return set(_walk(fields or {}, ()))


def _walk(node: Mapping[str, Any], prefix: Path) -> Iterator[Path]:
    if not node and prefix:
        yield prefix
    for key, child in node.items():
        if key == ".":
            yield (*prefix, ".")
        elif isinstance(child, Mapping):
            yield from _walk(child, (*prefix, key))
        else:  # not a fieldsV1 tree below here: the key itself is the leaf
            yield (*prefix, key)


def is_neutral(path: Path) -> bool:
    """A path whose change alters nothing the mesh does: observed state (``status``, what controllers write)
    and ``NEUTRAL_ANNOTATIONS`` (wherever they sit: the object's or a pod template's annotations)."""
    if path[:1] == ("f:status",):
        return True
    return any(
        a == "f:annotations" and b.startswith("f:") and b[2:] in NEUTRAL_ANNOTATIONS
        for a, b in itertools.pairwise(path)
    )


def unexplained(theirs: set[Path], known: set[Path]) -> set[Path]:
    """The paths of ``theirs`` that explain themselves: not held by a known manager as well (a field two
    managers hold has the value both set), not neutral (``is_neutral``), and not an item's or map's ``.``
    whose contents all went: ``kubectl rollout restart`` on a pod template without annotations holds
    ``annotations`` itself (``.``) besides ``restartedAt``, and neither changes what the pods do."""
    left = {p for p in theirs - known if not is_neutral(p)}
    return {p for p in left if not (p[-1] == "." and _has_contents(theirs, p[:-1]) and not _has_contents(left, p[:-1]))}


def _has_contents(paths: set[Path], prefix: Path) -> bool:
    """Whether ``paths`` holds anything below ``prefix`` other than its own ``.``."""
    n = len(prefix)
    return any(len(p) > n and p[:n] == prefix and p[n] != "." for p in paths)


def render(paths: Iterable[Path]) -> list[str]:
    """Paths as people read them, sorted: an item or field set as a whole (``.`` among its leaves) is shown
    once, not field by field (``env[name=X]``, not ``env[name=X].name`` and ``env[name=X].value``)."""
    items = set(paths)
    whole = {p[:-1] for p in items if p and p[-1] == "."}
    shown: set[Path] = set()
    for p in items:
        cut = next((p[:i] for i in range(1, len(p) + 1) if p[:i] in whole), None)
        shown.add(cut if cut is not None else p)
    return sorted(render_path(p) for p in shown)


def render_path(path: Path) -> str:
    """One path: ``f:spec`` -> ``spec``, ``k:{"name":"X"}`` -> ``[name=X]``, ``v:"x"`` -> ``["x"]``,
    ``i:0`` -> ``[0]``; a map key that is not a plain name is quoted (``annotations["a.b/c"]``)."""
    out = ""
    for key in path:
        kind, _, raw = key.partition(":")
        if key == ".":
            continue
        if kind == "f":
            out += f".{raw}" if _PLAIN_NAME.fullmatch(raw) else f"[{json.dumps(raw)}]"
        elif kind == "k":
            out += f"[{_item_keys(raw)}]"
        elif kind in ("v", "i"):  # a set member (JSON, so a string is quoted) or an index
            out += f"[{raw}]"
        else:  # not a fieldsV1 key: shown as it is
            out += f".{key}"
    return out.lstrip(".") or "(the whole object)"


def _item_keys(raw: str) -> str:
    """``{"name":"X","port":80}`` -> ``name=X,port=80`` (the keys a list item is identified by)."""
    try:
        keys = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(keys, Mapping):
        return raw
    return ",".join(f"{k}={v if isinstance(v, str | int | float) else json.dumps(v)}" for k, v in keys.items())
