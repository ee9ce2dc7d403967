"""The stack's settings as the package's arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pulumi_kubernetes as k8s

from istio_mesh import MultiPrimaryMeshArgs

from .settings import MeshSettings


def mesh_args(settings: MeshSettings, providers: Mapping[str, k8s.Provider]) -> MultiPrimaryMeshArgs:
    """``MultiPrimaryMeshArgs`` for the settings' member clusters (those not marked ``unreachable``), each
    with its provider from ``providers`` (by cluster name) and its kubeconfig (for the create guard).

    Loopback API server addresses are expected on the local lab (``lab: true``) and warned about
    elsewhere: a peer cluster cannot reach them.
    """
    missing = [c.name for c in settings.members if c.name not in providers]
    if missing:
        raise ValueError(f"no provider for clusters {missing}")
    return MultiPrimaryMeshArgs(
        mesh_id=settings.mesh_id,
        # A stack's cluster entry is a MeshCluster: handed over as it is, with its provider.
        clusters=tuple(dataclasses.replace(c, provider=providers[c.name]) for c in settings.members),
        istio=settings.istio,
        ca=settings.ca,
        remote_access=settings.remote_access,
        samples=settings.samples,
        allow_loopback_api_servers=settings.lab,
        east_west_gateway=settings.east_west_gateway,
    )
