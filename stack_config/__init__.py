"""This stack's configuration and what the program builds from it (not part of the ``istio_mesh`` package).

``load_settings`` parses every ``istio-mesh:*`` key (all mistakes at once); ``preflight_problems``
asks every API server before anything is registered; ``cluster_provider`` makes one Kubernetes
provider per cluster; ``mesh_args`` turns the settings into the package's ``MultiPrimaryMeshArgs``.
"""

from .mesh_args import mesh_args
from .preflight import preflight_problems
from .providers import cluster_provider
from .settings import (
    CONFIG_NAMESPACE,
    ClusterSettings,
    ConfigError,
    MeshSettings,
    expand_path,
    load_settings,
    parse_settings,
)

__all__ = [
    "CONFIG_NAMESPACE",
    "ClusterSettings",
    "ConfigError",
    "MeshSettings",
    "cluster_provider",
    "expand_path",
    "load_settings",
    "mesh_args",
    "parse_settings",
    "preflight_problems",
]
