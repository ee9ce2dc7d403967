"""What this stack's configuration is parsed into, and the names it is read under.

``MeshSettings`` (with one ``ClusterSettings`` per cluster) is the typed, frozen result of
``parse_settings``; ``ConfigError`` carries every mistake found. The config namespace and the secret
keys outside it are named here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from istio_mesh.chart_requirements import SCHEMA_NAMES
from istio_mesh.options import (
    CASettings,
    IstioSettings,
    MeshCluster,
    MeshGatewaySettings,
    RemoteAccessSettings,
    SampleSettings,
)

#: The Pulumi project (and so the config namespace) this program reads.
CONFIG_NAMESPACE = "istio-mesh"
#: Secret config keys: the private key of an imported root CA; the intermediates' keys (external CA).
ROOT_KEY_CONFIG = "caRootKeyPem"
#: The private key of an imported next root (``ca.rotation.nextRoot.source: import``).
NEXT_ROOT_KEY_CONFIG = "caNextRootKeyPem"
#: The keys of an external next root's intermediates (``ca.rotation.nextRoot.source: external``).
NEXT_INTERMEDIATE_KEYS_CONFIG = "caNextIntermediateKeyPems"
INTERMEDIATE_KEYS_CONFIG = "caIntermediateKeyPems"
#: This config's spelling of the settings chart-value messages name: the package schema's (one spelling).
CONFIG_NAMES = SCHEMA_NAMES


class ConfigError(ValueError):
    """Raised with every configuration mistake found, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid istio-mesh configuration (nothing was changed):\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True, kw_only=True)
class ClusterSettings(MeshCluster):
    """One cluster entry of the stack config: the package's ``MeshCluster`` (what the mesh takes of a
    cluster, handed to it as is) plus where this stack read its kubeconfig and whether it is gone for good."""

    #: The kubeconfig file's content: credentials, so it is only ever handed to a provider as a secret.
    kubeconfig: str = field(repr=False)
    context: str
    kubeconfig_path: str
    #: The cluster is gone for good: remove it from the mesh without contacting it (its objects leave
    #: the state with a warning; the other clusters drop its remote secrets).
    unreachable: bool = False
    #: The API server URL in the kubeconfig (what this program talks to; ``api_server`` is what peers use).
    kubeconfig_server: str = ""


@dataclass(frozen=True)
class MeshSettings:
    """Everything the program builds, for N clusters."""

    mesh_id: str
    clusters: tuple[ClusterSettings, ...]
    istio: IstioSettings = IstioSettings()
    ca: CASettings = CASettings()
    samples: SampleSettings = SampleSettings()
    remote_access: RemoteAccessSettings = RemoteAccessSettings()
    #: The stack runs against the local lab: loopback API server addresses are expected there.
    lab: bool = False
    #: Every cluster's east-west gateway chart values (``eastWestGateway.values``).
    east_west_gateway: MeshGatewaySettings = field(default_factory=MeshGatewaySettings)

    @property
    def members(self) -> tuple[ClusterSettings, ...]:
        """The clusters that are in the mesh: every entry not marked ``unreachable``."""
        return tuple(c for c in self.clusters if not c.unreachable)

    @property
    def networks(self) -> tuple[str, ...]:
        """Distinct networks of the mesh's members, in cluster order."""
        return tuple(dict.fromkeys(c.network for c in self.members))

    @property
    def multi_network(self) -> bool:
        """East-west gateways exist only when the mesh spans more than one network."""
        return len(self.networks) > 1

    def cluster(self, name: str) -> ClusterSettings:
        """The cluster named ``name``."""
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)
