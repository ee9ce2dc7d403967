"""Reusable Pulumi components for a multi-primary, multi-network Istio mesh.

Import what you need; nothing happens at import time. ``MultiPrimaryMesh`` composes the rest; the
option types (``IstioSettings``, ``CASettings``, ``MeshCluster``, ...) live in ``options``.
"""

from .cluster_ca import ClusterCA, ClusterCAArgs
from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
from .intermediate_cert import IntermediateCertificate, sign_intermediate
from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
from .multi_primary_mesh import MultiPrimaryMesh, MultiPrimaryMeshArgs
from .options import (
    DEFAULT_ISTIO_VERSION,
    READER_ISTIO,
    READER_MESH,
    CASettings,
    ChartSource,
    ExternalIntermediate,
    GatewaySettings,
    IstioSettings,
    MeshCluster,
    RemoteAccessSettings,
    SampleSettings,
)
from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
from .root_ca import RootCA
from .sample_apps import SampleApps, SampleAppsArgs

__all__ = [
    "DEFAULT_ISTIO_VERSION",
    "READER_ISTIO",
    "READER_MESH",
    "CASettings",
    "ChartSource",
    "ClusterCA",
    "ClusterCAArgs",
    "EastWestGateway",
    "EastWestGatewayArgs",
    "ExternalIntermediate",
    "GatewaySettings",
    "IntermediateCertificate",
    "IstioControlPlane",
    "IstioControlPlaneArgs",
    "IstioSettings",
    "MeshCluster",
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
