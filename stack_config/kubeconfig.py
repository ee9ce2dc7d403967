"""Reading a cluster's kubeconfig file: its content, the chosen context and that context's API server."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from .validators import Problems


def read_kubeconfig(p: Problems, path: str, file: str, context: str | None) -> tuple[str, str, str] | None:
    """Returns (content, context, server) of ``file``; reports a missing file, context or server."""
    if not os.path.isfile(file):
        p.add(path, f"kubeconfig file {file!r} does not exist; point it at the cluster's kubeconfig")
        return None
    with open(file, encoding="utf-8") as fh:
        content = fh.read()
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        p.add(path, f"kubeconfig file {file!r} is not valid YAML: {exc}")
        return None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("contexts"), list):
        p.add(path, f"kubeconfig file {file!r} has no 'contexts' list; is it a kubeconfig?")
        return None
    contexts: dict[str, Mapping[str, Any]] = {
        str(c.get("name")): c.get("context") or {} for c in doc["contexts"] if isinstance(c, Mapping)
    }
    chosen = context or doc.get("current-context")
    if not chosen:
        p.add(path, f"kubeconfig file {file!r} has no current-context; set 'context' to one of {sorted(contexts)}")
        return None
    if chosen not in contexts:
        p.add(path, f"context {chosen!r} is not in {file!r}; available contexts: {sorted(contexts)}")
        return None
    cluster_name = contexts[chosen].get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or [] if isinstance(c, Mapping)}
    server = clusters.get(cluster_name, {}).get("server")
    if not server:
        p.add(path, f"context {chosen!r} in {file!r} refers to cluster {cluster_name!r}, which has no server")
        return None
    return content, chosen, server
