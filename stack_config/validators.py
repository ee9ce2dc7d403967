"""Generic checks of config values: each reports a mistake (path, value, what would be valid) to a
problems collector and returns a usable default, so one run reports every mistake at once."""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Problems:
    """Collects problems so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


#: What a cluster's ``istio`` and the mesh-wide ``eastWestGateway`` hold: chart values only.
_VALUES_ONLY_KEYS = {"values"}


def unknown_keys(p: Problems, path: str, data: Mapping[str, Any], known: set[str]) -> None:
    """Reports every key of ``data`` that is not in ``known`` (a misspelt setting is not ignored)."""
    for key in data:
        if key not in known:
            p.add(f"{path}{key}", f"unknown setting; valid settings here: {', '.join(sorted(known))}")


def as_mapping(p: Problems, path: str, value: Any) -> Mapping[str, Any]:
    """``value`` as an object (``None``: empty); anything else is reported and read as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        p.add(path, f"expected an object, got {type(value).__name__} {value!r}")
        return {}
    return value


def as_str(p: Problems, path: str, value: Any, default: str | None = None, required: bool = False) -> str | None:
    """``value`` as a non-empty string, or ``default``; reports a missing required or a wrong value."""
    if value is None:
        if required:
            p.add(path, "is required")
        return default
    if not isinstance(value, str) or not value:
        p.add(path, f"expected a non-empty string, got {value!r}")
        return default
    return value


def as_bool(p: Problems, path: str, value: Any, default: bool) -> bool:
    """``value`` as true or false (YAML booleans or their spelling as text), or ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    p.add(path, f"expected true or false, got {value!r}")
    return default


def as_positive_int(p: Problems, path: str, value: Any, default: int) -> int:
    """``value`` as a positive integer (a number or its text), or ``default``."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    try:
        number = int(value)
    except ValueError:
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    if number <= 0:
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    return number


def as_helm_values(p: Problems, path: str, raw: Any, chart: str) -> dict[str, Any]:
    """Helm values for ``chart`` at ``path``: an object (a mapping with string keys), copied."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        p.add(
            path,
            f"expected an object of Helm values for the {chart} chart (e.g. {{pilot: {{env: {{...}}}}}}), "
            f"got {type(raw).__name__} {raw!r}",
        )
        return {}
    return copy.deepcopy(dict(raw))


def expand_path(raw: str, base_dir: str) -> str:
    """Expands ``~`` and ``$VARS`` and makes a relative path relative to ``base_dir`` (the project)."""
    expanded = os.path.expanduser(os.path.expandvars(raw))
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def as_path(p: Problems, path: str, raw: str, base_dir: str) -> str | None:
    """``raw`` as an absolute path (``expand_path``); reports an environment variable that is not set."""
    expanded = expand_path(raw, base_dir)
    unresolved = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unresolved:
        p.add(path, f"{raw!r} uses the environment variable {unresolved.group(1)}, which is not set")
        return None
    return expanded


def as_https_url(p: Problems, path: str, value: str) -> str | None:
    """``value`` as an API server URL, ``https://<host>[:<port>]`` without a trailing slash, or None."""
    parsed = urlparse(value)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme != "https" or not parsed.hostname or port == -1 or parsed.path not in ("", "/"):
        p.add(
            path,
            f"{value!r} is not a valid API server URL; expected https://<host>[:<port>], e.g. https://10.0.0.1:6443",
        )
        return None
    return value.rstrip("/")


def parse_values_only(p: Problems, path: str, raw: Any, chart: str) -> dict[str, Any]:
    """``values`` of a setting that holds nothing else (a cluster's ``istio``, the mesh's ``eastWestGateway``)."""
    data = as_mapping(p, path, raw)
    unknown_keys(p, f"{path}.", data, _VALUES_ONLY_KEYS)
    return as_helm_values(p, f"{path}.values", data.get("values"), chart)
