"""Refuse to take a cluster back under a different mesh root: the stack's state lost its root CA.

The create guard (``create_guard``) takes back an object that this very resource created in an ``up``
that died before the state recorded it. A stack whose state was lost, or replaced by a new stack of the
same name, looks the same to it: every live object carries this stack's created-by annotation. But a
generated root CA lives only in the state, so such a run has generated a *new* root, and taking the
clusters back would write it into every ``cacerts``: the running mesh would move to a root its
workloads' certificates do not chain to, and mTLS between them would fail until every proxy had new
certificates. (Even without that, the provider's server-side apply refuses the new ``cacerts`` with a
bare field-conflict error, after the run has already taken back the cluster's other objects.)

So before the guard takes back anything in a cluster it compares that cluster's ``cacerts``, when this
stack made it, with the root this run writes; a different root fails the take-back with what happened
and the ways out, and nothing in that cluster is taken over. An interrupted ``up`` (the state has the
root, the clusters hold it) and a lost state with an imported or external root (the same root again)
pass.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from .constants import CACERTS_SECRET, CREATED_BY_ANNOTATION, ISTIO_NAMESPACE, ROOT_CERT_KEY
from .fingerprint import pem_fingerprint


class RootChangeError(Exception):
    """Taking a cluster back would replace the root of its running mesh (nothing was taken over)."""


def _fingerprint(pem: str) -> str | None:
    try:
        return pem_fingerprint(pem)
    except ValueError:  # not a certificate
        return None


def _fingerprints(bundle_pem: str) -> list[str]:
    from .rotation import split_pems

    return [fp for fp in (_fingerprint(p) for p in split_pems(bundle_pem)) if fp]


def live_root_pem(cacerts: Mapping[str, Any]) -> str | None:
    """The root certificate a live ``cacerts`` Secret holds (``data`` is base64), if readable."""
    data = cacerts.get("data")
    value = data.get(ROOT_CERT_KEY) if isinstance(data, Mapping) else None
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def root_change_refusal(
    cluster: str, cacerts: Mapping[str, Any] | None, stack_prefix: str, new_root_pem: str
) -> str | None:
    """Why taking ``cluster`` back would change its mesh root, or None when it would not.

    ``cacerts`` is the cluster's live ``istio-system/cacerts`` (None: there is none); ``stack_prefix`` is
    ``<project>/<stack>/``, the start of every created-by value this stack writes. A ``cacerts`` that
    this stack did not make is not this guard's business (the create guard refuses it by itself).
    """
    if cacerts is None:
        return None
    metadata = cacerts.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    made_by = annotations.get(CREATED_BY_ANNOTATION) if isinstance(annotations, Mapping) else None
    if not isinstance(made_by, str) or not made_by.startswith(stack_prefix):
        return None
    # Bundles during a root rotation (``rotation``): one root in common is the same mesh.
    new_all = _fingerprints(new_root_pem)
    live_pem = live_root_pem(cacerts)
    live_all = _fingerprints(live_pem) if live_pem is not None else []
    if set(live_all) & set(new_all):
        return None
    new = ", ".join(new_all) or "that cannot be read"
    live = ", ".join(live_all) or None
    held = f"the root CA with SHA-256 fingerprint {live}" if live else "a root certificate that cannot be read"
    return (
        f"Cluster {cluster!r} already runs this stack's mesh under another root CA: its "
        f"{ISTIO_NAMESPACE}/{CACERTS_SECRET}, made by this stack ({made_by!r}), holds {held}, and this run would "
        f"write the root {new}. The root that signed the running mesh is not in this stack's state: the state "
        f"was lost or replaced (a new stack of the same name), so a new root was generated. Writing it would move "
        f"the running mesh to a root its workloads' certificates do not chain to, and mTLS between them would "
        f"fail until every proxy had new certificates. Nothing was taken over in cluster {cluster!r}. Restore "
        f"the stack's state (`pulumi stack import --file` of an export; the file backend also keeps a copy after "
        f"each update under .pulumi/backups/<project>/<stack>/ in its directory: docs/operations.md, "
        f'"A lost state"), or, '
        f"holding the old root's key, import it (stack config: ca.source import, ca.rootCertPem and the secret "
        f"caRootKeyPem). Only if this mesh carries no traffic: delete {CACERTS_SECRET} in every cluster "
        f"(`kubectl --context {cluster} -n {ISTIO_NAMESPACE} delete secret {CACERTS_SECRET}`) and rerun, which "
        f"starts the mesh under the new root."
    )
