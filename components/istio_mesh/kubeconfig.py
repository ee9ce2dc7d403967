"""The kubeconfig inside a remote secret, built as data and serialised (never a string template)."""

from __future__ import annotations

from typing import Any

import yaml


def remote_kubeconfig(cluster_name: str, server: str, ca_data_b64: str, token: str) -> str:
    """A kubeconfig as ``istioctl create-remote-secret`` writes it.

    Cluster, context, user and current-context are all named ``cluster_name`` (the source cluster's
    ID); ``server`` must be reachable from the reader's istiod; ``ca_data_b64`` is the token secret's
    ``ca.crt`` (already base64); ``token`` is the reader ServiceAccount's token (decoded).
    """
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": ca_data_b64}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{"name": cluster_name, "user": {"token": token}}],
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
