"""Users' values for Istio's ``istiod`` and ``gateway`` charts, merged under the values the mesh requires.

Users set chart values on every install (resources, replicas, ``pilot.env``, ``meshConfig``). Each
chart's values come in two layers, the mesh-wide ones and one cluster's own, deep-merged in that order
(``deep_merge``: mappings merge key by key, lists and scalars replace); the values the mesh requires
(``chart_requirements``) go over the result. A user value that contradicts a required one is refused
before anything is registered (``mesh_values_problems``), naming where it was given, the value, what the
mesh sets and why; a value equal to the required one is accepted. With no user values the charts get
exactly the required ones.

One home for the rules: the stack config, ``MultiPrimaryMeshArgs`` and the plugin all check with
``mesh_values_problems`` (each passing its own spelling of the settings, ``SettingNames``), and the
components render with ``chart_values``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .chart_requirements import Required, SettingNames, gateway_requirements, istiod_requirements, show_value
from .options import ClusterIstioSettings, GatewaySettings, IstioSettings, MeshGatewaySettings

#: Helm values: a mapping of plain data (str keys; str, numbers, bools, None, lists and mappings).
Values = Mapping[str, Any]


def deep_merge(base: Values, override: Values) -> dict[str, Any]:
    """``override`` over ``base``: mappings merge key by key (recursively), lists and scalars replace.
    Neither argument is modified; the result shares nothing with them."""
    merged: dict[str, Any] = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def key_path(base: str, path: Iterable[str]) -> str:
    """``base`` followed by ``path`` (``istio.values.global.meshID``); keys with dots or slashes are quoted
    (``service.annotations["pulumi.com/skipAwait"]``)."""
    out = base
    for key in path:
        out += f".{key}" if _PLAIN_KEY.match(key) else f"[{json.dumps(key)}]"
    return out


def required_values(requirements: Iterable[Required]) -> dict[str, Any]:
    """The values the mesh writes (the ``sets`` requirements), nested, in the requirements' order."""
    out: dict[str, Any] = {}
    for r in requirements:
        if not r.sets:
            continue
        node = out
        for key in r.path[:-1]:
            node = node.setdefault(key, {})
        node[r.path[-1]] = copy.deepcopy(r.value)
    return out


def chart_values(layers: Sequence[Values], requirements: Iterable[Required]) -> dict[str, Any]:
    """A chart's values: the user's ``layers`` deep-merged in order (later wins), the required values over them."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    return deep_merge(merged, required_values(requirements))


_MISSING = object()


def conflicts(layers: Sequence[tuple[str, Values]], requirements: Iterable[Required]) -> list[tuple[str, str]]:
    """(where, message) for every user value that contradicts a requirement. ``layers`` are (where they
    were given, values), merged in order; a value is reported where it comes from (the last layer that
    has it)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for r in requirements:
        for depth in range(1, len(r.path) + 1):
            prefix = r.path[:depth]
            value, origin = _lookup(layers, prefix)
            if value is _MISSING:
                break
            where = key_path(origin, prefix)
            if depth < len(r.path):
                if isinstance(value, Mapping):
                    continue
                if where not in seen:
                    seen.add(where)
                    below = ".".join(r.path[depth:])
                    found.append(
                        (
                            where,
                            f"{show_value(value)} is not an object, but the mesh needs {below} in it: "
                            f"{r.source}, {r.why}; remove it",
                        )
                    )
                break
            if not r.accepts(value) and where not in seen:
                seen.add(where)
                found.append((where, f"{show_value(value)} contradicts {r.source}, {r.why}; remove it"))
    return found


def _lookup(layers: Sequence[tuple[str, Values]], path: tuple[str, ...]) -> tuple[Any, str]:
    """The merged value at ``path`` and the layer it comes from (for a mapping: the last that has it)."""
    value: Any = _MISSING
    origin = ""
    for where, values in layers:
        node: Any = values
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                node = _MISSING
                break
            node = node[key]
        if node is _MISSING:
            continue
        # A mapping merges with the earlier layers' one; anything else replaces it (as ``deep_merge``).
        value = deep_merge(value, node) if isinstance(node, Mapping) and isinstance(value, Mapping) else node
        origin = where
    return value, origin


class ClusterLike(Protocol):
    """What ``mesh_values_problems`` reads of a cluster (``MeshCluster``, the stack's ``ClusterSettings``)."""

    @property
    def name(self) -> str: ...
    @property
    def network(self) -> str: ...
    @property
    def istio(self) -> ClusterIstioSettings: ...
    @property
    def gateway(self) -> GatewaySettings: ...


def mesh_values_problems(
    names: SettingNames,
    *,
    mesh_id: str,
    istio: IstioSettings,
    east_west_gateway: MeshGatewaySettings,
    clusters: Iterable[tuple[int, ClusterLike]],
) -> list[tuple[str, str]]:
    """(where, message) for every chart value of the mesh's users that is not a mapping or contradicts
    what the mesh requires in one of ``clusters`` ((index in the user's list, cluster)); each once."""
    problems: list[tuple[str, str]] = []
    not_mappings = [
        (names.istio_values, istio.values),
        (names.gateway_values, east_west_gateway.values),
    ]
    members = list(clusters)
    for i, c in members:
        not_mappings.append((names.at(names.cluster_istio_values, i), c.istio.values))
        not_mappings.append((names.at(names.cluster_gateway_values, i), c.gateway.values))
    bad = {where for where, values in not_mappings if not _is_values(values)}
    problems.extend((where, "is not a mapping of Helm values (string keys)") for where in sorted(bad))
    for i, c in members:
        istiod_layers = [
            (names.istio_values, istio.values),
            (names.at(names.cluster_istio_values, i), c.istio.values),
        ]
        gateway_layers = [
            (names.gateway_values, east_west_gateway.values),
            (names.at(names.cluster_gateway_values, i), c.gateway.values),
        ]
        istiod = istiod_requirements(
            mesh_id=mesh_id,
            cluster_name=c.name,
            network=c.network,
            hub=istio.hub,
            tag=istio.tag,
            names=names,
            index=i,
        )
        gateway = gateway_requirements(network=c.network, gateway=c.gateway, names=names, index=i)
        for layers, requirements in ((istiod_layers, istiod), (gateway_layers, gateway)):
            usable = [(where, values) for where, values in layers if where not in bad]
            problems.extend(conflicts(usable, requirements))
    return list(dict.fromkeys(problems))


def _is_values(values: Any) -> bool:
    return isinstance(values, Mapping) and all(isinstance(k, str) for k in values)
