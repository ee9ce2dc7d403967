"""Reading the program's objects with their field managers, for the edits check (``verify.edit_checks``).

What the program created is what carries ``CREATED_BY_ANNOTATION`` (``components/istio_mesh/create_guard.py``
puts it on every Kubernetes object the mesh makes, the charts' objects included), so nothing here lists the
objects by name. Per cluster: one list of Namespaces, which says which namespaces the program made
(istio-system and the samples' namespace; istio-system is read in any case), one list of each kind of
webhook configuration, and in each of those namespaces one list per kind: Deployments, Services, ConfigMaps,
Secrets and Istio Gateways. Each list asks for metadata only (``PartialObjectMetadataList``: no Secret's data
leaves the API server), which holds ``managedFields``.

A kind the API server does not serve (HTTP 404: Istio's CRDs not installed) has no objects; any other failure
is recorded in ``ClusterFacts.unread_objects`` and nothing is said about the objects it would have listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from istio_mesh.constants import CREATED_BY_ANNOTATION, ISTIO_NAMESPACE

from .facts import ClusterFacts, FieldsEntry, MeshObject
from .kube import error_text, read, status_of
from .managed_fields import PATCH_FIELD_MANAGER_ANNOTATION

#: Ask for metadata only (the API server's server-side conversion; JSON of whole objects if it cannot).
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"}
#: The label Helm charts put on what they render: ``<chart>-<version>``.
HELM_CHART_LABEL = "helm.sh/chart"
_CHART_VERSION = re.compile(r"-v?\d[^-]*(-.*)?$")


@dataclass(frozen=True)
class Kind:
    """A kind the edits check reads: its name, how a message names a list of it, and how to list it
    (``list_for(api)`` gives the client method; namespaced kinds take the namespace first)."""

    kind: str
    plural: str
    namespaced: bool
    list_for: Callable[[Any], Callable[..., Any]]


def _core(api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api)


def _admission(api: Any) -> Any:
    from kubernetes import client

    return client.AdmissionregistrationV1Api(api)


def _istio_gateways(api: Any) -> Callable[..., Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    return lambda namespace, **kw: custom.list_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "gateways", **kw
    )


def _deployments(api: Any) -> Callable[..., Any]:
    from kubernetes import client

    return client.AppsV1Api(api).list_namespaced_deployment


NAMESPACES = Kind("Namespace", "Namespaces", False, lambda api: _core(api).list_namespace)
#: Cluster-wide kinds the program creates (the istiod chart's webhooks; istiod patches their CA bundle).
CLUSTER_KINDS = (
    Kind(
        "MutatingWebhookConfiguration",
        "MutatingWebhookConfigurations",
        False,
        lambda api: _admission(api).list_mutating_webhook_configuration,
    ),
    Kind(
        "ValidatingWebhookConfiguration",
        "ValidatingWebhookConfigurations",
        False,
        lambda api: _admission(api).list_validating_webhook_configuration,
    ),
)
#: Kinds read in each namespace the program made: istiod's and the east-west gateway's Deployments and
#: Services, istiod's ConfigMaps (istio, istio-sidecar-injector, values), cacerts, the remote secrets and the
#: readers' tokens, the cross-network Gateway, and the samples' Deployments and Services.
NAMESPACED_KINDS = (
    Kind("Deployment", "Deployments", True, _deployments),
    Kind("Service", "Services", True, lambda api: _core(api).list_namespaced_service),
    Kind("ConfigMap", "ConfigMaps", True, lambda api: _core(api).list_namespaced_config_map),
    Kind("Secret", "Secrets", True, lambda api: _core(api).list_namespaced_secret),
    Kind("Gateway", "Gateways (networking.istio.io)", True, _istio_gateways),
)


def collect_mesh_objects(api: Any, facts: ClusterFacts) -> None:
    """Fills ``facts.mesh_objects`` (the program's objects, sorted by kind as listed here, namespace and name)
    and ``facts.unread_objects`` (the lists that failed)."""
    found: list[MeshObject] = []
    namespaces = _list(api, NAMESPACES, None, facts)
    found += namespaces
    for kind in CLUSTER_KINDS:
        found += _list(api, kind, None, facts)
    for ns in sorted({ISTIO_NAMESPACE, *(o.name for o in namespaces)}):
        for kind in NAMESPACED_KINDS:
            found += _list(api, kind, ns, facts)
    facts.mesh_objects = found


def _list(api: Any, kind: Kind, namespace: str | None, facts: ClusterFacts) -> list[MeshObject]:
    """The program's objects among one list (sorted by name); a failed list recorded, a 404 is no objects."""
    args = (namespace,) if kind.namespaced else ()
    try:
        body = read(kind.list_for(api), *args, _headers=METADATA_ONLY)
    except Exception as e:  # API and connection errors alike: named in the report
        if status_of(e) != 404:
            facts.unread_objects.append(f"{kind.plural}{' in ' + namespace if namespace else ''}: {error_text(e)}")
        return []
    objects = [mesh_object(kind.kind, item.get("metadata") or {}) for item in (body or {}).get("items") or []]
    return sorted((o for o in objects if o is not None), key=lambda o: o.name)


def mesh_object(kind: str, metadata: dict[str, Any]) -> MeshObject | None:
    """The object as the edits check sees it; None when the program did not create it (no
    ``CREATED_BY_ANNOTATION``) or it has no name."""
    annotations = metadata.get("annotations") or {}
    created_by = annotations.get(CREATED_BY_ANNOTATION)
    if not isinstance(created_by, str) or not metadata.get("name"):
        return None
    chart = (metadata.get("labels") or {}).get(HELM_CHART_LABEL)
    entries = tuple(
        FieldsEntry(
            manager=str(m.get("manager") or ""),
            operation=str(m.get("operation") or ""),
            time=m.get("time"),
            fields=m.get("fieldsV1") or {},
            subresource=str(m.get("subresource") or ""),
        )
        for m in metadata.get("managedFields") or []
        if isinstance(m, dict)
    )
    patch_manager = annotations.get(PATCH_FIELD_MANAGER_ANNOTATION)
    return MeshObject(
        kind=kind,
        namespace=metadata.get("namespace") or None,
        name=str(metadata["name"]),
        created_by=created_by,
        managed_fields=entries,
        chart=_CHART_VERSION.sub("", chart) if isinstance(chart, str) and chart else None,
        patch_field_manager=patch_manager if isinstance(patch_manager, str) else None,
    )
