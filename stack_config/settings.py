"""This stack's configuration (``istio-mesh:*`` keys), parsed once into typed, frozen objects.

The program's business, not the package's: the components take ``istio_mesh`` options and clusters;
this module turns a stack's config into them (``mesh_args``). Every check lives here, and every mistake
is reported before any resource is registered, with the setting's path, the value found and what
would be valid. ``parse_settings`` works on plain data (so tests can call it); ``load_settings`` reads
it from the stack's Pulumi config.

The parsing is split by concept: ``validators`` (generic checks), ``kubeconfig`` (reading a cluster's
kubeconfig), ``clusters`` (``clusters[]`` and their gateways), ``ca_settings`` (``ca``),
``mesh_options`` (``istio``, ``samples``, ``remoteAccess``), ``model`` (the typed result and the key
names) and ``loader`` (``parse_settings``, ``load_settings``). This module keeps every name it offered.
"""

from .loader import load_settings, parse_settings
from .model import (
    CONFIG_NAMES,
    CONFIG_NAMESPACE,
    INTERMEDIATE_KEYS_CONFIG,
    ROOT_KEY_CONFIG,
    ClusterSettings,
    ConfigError,
    MeshSettings,
)
from .validators import expand_path

__all__ = [
    "CONFIG_NAMES",
    "CONFIG_NAMESPACE",
    "INTERMEDIATE_KEYS_CONFIG",
    "ROOT_KEY_CONFIG",
    "ClusterSettings",
    "ConfigError",
    "MeshSettings",
    "expand_path",
    "load_settings",
    "parse_settings",
]
