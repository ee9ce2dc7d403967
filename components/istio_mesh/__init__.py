"""Reusable Pulumi components for a multi-primary, multi-network Istio mesh.

Import what you need; nothing happens at import time, and the package imports a module (and Pulumi) only
when one of its names is first used: ``import istio_mesh.constants`` stays cheap for tools such as
``scripts/verify`` and the lab. ``MultiPrimaryMesh`` composes the rest; the
option types (``IstioSettings``, ``CASettings``, ``MeshCluster``, ...) live in ``options``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster_ca import ClusterCA, ClusterCAArgs
    from .constants import DEFAULT_ISTIO_VERSION
    from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
    from .intermediate_cert import IntermediateCertificate, sign_intermediate
    from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
    from .multi_primary_mesh import MultiPrimaryMesh, MultiPrimaryMeshArgs
    from .options import (
        READER_ISTIO,
        READER_MESH,
        CASettings,
        ChartSource,
        ClusterIstioSettings,
        ExternalIntermediate,
        GatewaySettings,
        IstioSettings,
        MeshCluster,
        MeshGatewaySettings,
        RemoteAccessSettings,
        SampleSettings,
    )
    from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
    from .root_ca import RootCA
    from .sample_apps import SampleApps, SampleAppsArgs

#: Public name -> the module that defines it (imported on first use, PEP 562).
_EXPORTS = {
    "ClusterCA": ".cluster_ca",
    "ClusterCAArgs": ".cluster_ca",
    "EastWestGateway": ".east_west_gateway",
    "EastWestGatewayArgs": ".east_west_gateway",
    "IntermediateCertificate": ".intermediate_cert",
    "sign_intermediate": ".intermediate_cert",
    "IstioControlPlane": ".istio_control_plane",
    "IstioControlPlaneArgs": ".istio_control_plane",
    "MultiPrimaryMesh": ".multi_primary_mesh",
    "MultiPrimaryMeshArgs": ".multi_primary_mesh",
    "DEFAULT_ISTIO_VERSION": ".constants",
    "READER_ISTIO": ".options",
    "READER_MESH": ".options",
    "CASettings": ".options",
    "ChartSource": ".options",
    "ClusterIstioSettings": ".options",
    "ExternalIntermediate": ".options",
    "GatewaySettings": ".options",
    "IstioSettings": ".options",
    "MeshCluster": ".options",
    "MeshGatewaySettings": ".options",
    "RemoteAccessSettings": ".options",
    "SampleSettings": ".options",
    "MeshMember": ".remote_secret_pair",
    "RemoteSecretPair": ".remote_secret_pair",
    "RemoteSecretPairArgs": ".remote_secret_pair",
    "RootCA": ".root_ca",
    "SampleApps": ".sample_apps",
    "SampleAppsArgs": ".sample_apps",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "DEFAULT_ISTIO_VERSION",
    "READER_ISTIO",
    "READER_MESH",
    "CASettings",
    "ChartSource",
    "ClusterCA",
    "ClusterCAArgs",
    "ClusterIstioSettings",
    "EastWestGateway",
    "EastWestGatewayArgs",
    "ExternalIntermediate",
    "GatewaySettings",
    "IntermediateCertificate",
    "IstioControlPlane",
    "IstioControlPlaneArgs",
    "IstioSettings",
    "MeshCluster",
    "MeshGatewaySettings",
    "MeshMember",
    "MultiPrimaryMesh",
    "MultiPrimaryMeshArgs",
    "RemoteAccessSettings",
    "RemoteSecretPair",
    "RemoteSecretPairArgs",
    "RootCA",
    "SampleApps",
    "SampleAppsArgs",
    "SampleSettings",
    "sign_intermediate",
]
