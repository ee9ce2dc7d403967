"""Reusable Pulumi components for a multi-primary, multi-network Istio mesh.

Import what you need; nothing happens at import time. ``MultiPrimaryMesh`` composes the rest.
"""

from .cluster_ca import ClusterCA, ClusterCAArgs
from .east_west_gateway import EastWestGateway, EastWestGatewayArgs
from .intermediate_cert import IntermediateCertificate, sign_intermediate
from .istio_control_plane import IstioControlPlane, IstioControlPlaneArgs
from .multi_primary_mesh import MultiPrimaryMesh, MultiPrimaryMeshArgs
from .providers import cluster_provider
from .remote_secret_pair import MeshMember, RemoteSecretPair, RemoteSecretPairArgs
from .root_ca import RootCA
from .sample_apps import SampleApps, SampleAppsArgs
from .settings import (
    CASettings,
    ChartSource,
    ClusterSettings,
    ConfigError,
    GatewaySettings,
    IstioSettings,
    MeshSettings,
    SampleSettings,
    load_settings,
    parse_settings,
)

__all__ = [
    "CASettings",
    "ChartSource",
    "ClusterCA",
    "ClusterCAArgs",
    "ClusterSettings",
    "ConfigError",
    "EastWestGateway",
    "EastWestGatewayArgs",
    "GatewaySettings",
    "IntermediateCertificate",
    "IstioControlPlane",
    "IstioControlPlaneArgs",
    "IstioSettings",
    "MeshMember",
    "MeshSettings",
    "MultiPrimaryMesh",
    "MultiPrimaryMeshArgs",
    "RemoteSecretPair",
    "RemoteSecretPairArgs",
    "RootCA",
    "SampleApps",
    "SampleAppsArgs",
    "SampleSettings",
    "cluster_provider",
    "load_settings",
    "parse_settings",
    "sign_intermediate",
]
