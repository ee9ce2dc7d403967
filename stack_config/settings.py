"""This stack's configuration (``istio-mesh:*`` keys), parsed once into typed, frozen objects.

The program's business, not the package's: the components take ``istio_mesh`` options and clusters;
this module turns a stack's config into them (``mesh_args``). Every check lives here, and every mistake
is reported before any resource is registered, with the setting's path, the value found and what
would be valid. ``parse_settings`` works on plain data (so tests can call it); ``load_settings`` reads
it from the stack's Pulumi config.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import yaml

from istio_mesh.chart_requirements import SCHEMA_NAMES
from istio_mesh.chart_values import mesh_values_problems
from istio_mesh.constants import DEFAULT_CHART_REPOSITORY, DEFAULT_HUB
from istio_mesh.options import (
    CA_SOURCES,
    DEFAULT_ISTIO_VERSION,
    READER_ISTIO,
    READER_MESH,
    CASettings,
    ChartSource,
    ClusterIstioSettings,
    ExternalIntermediate,
    GatewaySettings,
    IstioSettings,
    MeshGatewaySettings,
    RemoteAccessSettings,
    SampleSettings,
)

#: The Pulumi project (and so the config namespace) this program reads.
CONFIG_NAMESPACE = "istio-mesh"
#: Secret config keys: the private key of an imported root CA; the intermediates' keys (external CA).
ROOT_KEY_CONFIG = "caRootKeyPem"
INTERMEDIATE_KEYS_CONFIG = "caIntermediateKeyPems"
#: This config's spelling of the settings chart-value messages name: the schema's, but a cluster's
#: gateway is ``eastWestGateway`` here (and its addresses ``externalIPs``).
CONFIG_NAMES = dataclasses.replace(
    SCHEMA_NAMES,
    service_type="clusters[].eastWestGateway.serviceType",
    external_ips="clusters[].eastWestGateway.externalIPs",
    cluster_gateway_values="clusters[].eastWestGateway.values",
)

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")
_HELLOWORLD_VERSION = re.compile(r"^v[0-9]+$")


class ConfigError(ValueError):
    """Raised with every configuration mistake found, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid istio-mesh configuration (nothing was changed):\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class ClusterSettings:
    """One primary cluster of the mesh."""

    name: str
    network: str
    kubeconfig_path: str
    #: The kubeconfig file's content: credentials, so it is only ever handed to a provider as a secret.
    kubeconfig: str = field(repr=False)
    context: str
    #: API server URL written into the remote secrets other clusters read (must be reachable from them).
    api_server: str
    gateway: GatewaySettings = GatewaySettings()
    #: helloworld versions this cluster runs when samples are enabled (the walkthrough: v1 in one
    #: cluster, v2 in the other). Said per cluster, so reordering ``clusters`` moves nothing.
    helloworld_versions: tuple[str, ...] = ()
    #: The cluster is gone for good: remove it from the mesh without contacting it (its objects leave
    #: the state with a warning; the other clusters drop its remote secrets).
    unreachable: bool = False
    #: The API server URL in the kubeconfig (what this program talks to; ``api_server`` is what peers use).
    kubeconfig_server: str = ""
    #: This cluster's own Istio values (``clusters[].istio.values``: its istiod chart's, over ``istio.values``).
    istio: ClusterIstioSettings = field(default_factory=ClusterIstioSettings)


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


# ---- parsing ------------------------------------------------------------------------------------------


class _Problems:
    """Collects problems so one run reports them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


_TOP_KEYS = {
    "meshId",
    "clusters",
    "istio",
    "ca",
    "samples",
    "remoteAccess",
    "lab",
    "eastWestGateway",
    ROOT_KEY_CONFIG,
    INTERMEDIATE_KEYS_CONFIG,
}
_CLUSTER_KEYS = {
    "name",
    "network",
    "kubeconfig",
    "context",
    "apiServer",
    "eastWestGateway",
    "helloworldVersions",
    "unreachable",
    "istio",
}
_GATEWAY_KEYS = {"serviceType", "externalIPs", "loadBalancerTimeoutSeconds", "values"}
_ISTIO_KEYS = {"version", "chartRepository", "chartDirectory", "hub", "tag", "keepCRDs", "values"}
#: What a cluster's ``istio`` and the mesh-wide ``eastWestGateway`` hold: chart values only.
_VALUES_ONLY_KEYS = {"values"}
_CA_KEYS = {
    "source",
    "protect",
    "rootValidityDays",
    "intermediateValidityDays",
    "renewBeforeDays",
    "rootCertPem",
    "intermediates",
}
_INTERMEDIATE_KEYS = {"certPem", "chainPem"}
_SAMPLE_KEYS = {"enabled", "namespace", "helloworldImagePrefix", "sleepImage"}
_REMOTE_ACCESS_KEYS = {"reader", "readSecrets", "tokenGeneration"}


def _unknown(p: _Problems, path: str, data: Mapping[str, Any], known: set[str]) -> None:
    for key in data:
        if key not in known:
            p.add(f"{path}{key}", f"unknown setting; valid settings here: {', '.join(sorted(known))}")


def _mapping(p: _Problems, path: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        p.add(path, f"expected an object, got {type(value).__name__} {value!r}")
        return {}
    return value


def _str(p: _Problems, path: str, value: Any, default: str | None = None, required: bool = False) -> str | None:
    if value is None:
        if required:
            p.add(path, "is required")
        return default
    if not isinstance(value, str) or not value:
        p.add(path, f"expected a non-empty string, got {value!r}")
        return default
    return value


def _bool(p: _Problems, path: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    p.add(path, f"expected true or false, got {value!r}")
    return default


def _positive_int(p: _Problems, path: str, value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    try:
        number = int(value)
    except ValueError:
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    if number <= 0:
        p.add(path, f"expected a positive integer, got {value!r}")
        return default
    return number


def _values(p: _Problems, path: str, raw: Any, chart: str) -> dict[str, Any]:
    """Helm values for ``chart`` at ``path``: an object (a mapping with string keys), copied."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        p.add(
            path,
            f"expected an object of Helm values for the {chart} chart (e.g. {{pilot: {{env: {{...}}}}}}), "
            f"got {type(raw).__name__} {raw!r}",
        )
        return {}
    return copy.deepcopy(dict(raw))


def expand_path(raw: str, base_dir: str) -> str:
    """Expands ``~`` and ``$VARS`` and makes a relative path relative to ``base_dir`` (the project)."""
    expanded = os.path.expanduser(os.path.expandvars(raw))
    return expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))


def _path(p: _Problems, path: str, raw: str, base_dir: str) -> str | None:
    expanded = expand_path(raw, base_dir)
    unresolved = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unresolved:
        p.add(path, f"{raw!r} uses the environment variable {unresolved.group(1)}, which is not set")
        return None
    return expanded


def _https_url(p: _Problems, path: str, value: str) -> str | None:
    parsed = urlparse(value)
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if parsed.scheme != "https" or not parsed.hostname or port == -1 or parsed.path not in ("", "/"):
        p.add(
            path,
            f"{value!r} is not a valid API server URL; expected https://<host>[:<port>], e.g. https://10.0.0.1:6443",
        )
        return None
    return value.rstrip("/")


def _read_kubeconfig(p: _Problems, path: str, file: str, context: str | None) -> tuple[str, str, str] | None:
    """Returns (content, context, server) of ``file``; reports a missing file, context or server."""
    if not os.path.isfile(file):
        p.add(path, f"kubeconfig file {file!r} does not exist; point it at the cluster's kubeconfig")
        return None
    with open(file, encoding="utf-8") as fh:
        content = fh.read()
    try:
        doc = yaml.safe_load(content)
    except yaml.YAMLError as exc:
        p.add(path, f"kubeconfig file {file!r} is not valid YAML: {exc}")
        return None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("contexts"), list):
        p.add(path, f"kubeconfig file {file!r} has no 'contexts' list; is it a kubeconfig?")
        return None
    contexts: dict[str, Mapping[str, Any]] = {
        str(c.get("name")): c.get("context") or {} for c in doc["contexts"] if isinstance(c, Mapping)
    }
    chosen = context or doc.get("current-context")
    if not chosen:
        p.add(path, f"kubeconfig file {file!r} has no current-context; set 'context' to one of {sorted(contexts)}")
        return None
    if chosen not in contexts:
        p.add(path, f"context {chosen!r} is not in {file!r}; available contexts: {sorted(contexts)}")
        return None
    cluster_name = contexts[chosen].get("cluster")
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or [] if isinstance(c, Mapping)}
    server = clusters.get(cluster_name, {}).get("server")
    if not server:
        p.add(path, f"context {chosen!r} in {file!r} refers to cluster {cluster_name!r}, which has no server")
        return None
    return content, chosen, server


def _parse_gateway(p: _Problems, path: str, raw: Any) -> GatewaySettings:
    data = _mapping(p, path, raw)
    _unknown(p, f"{path}.", data, _GATEWAY_KEYS)
    service_type = _str(p, f"{path}.serviceType", data.get("serviceType"), "LoadBalancer") or "LoadBalancer"
    if service_type not in _SERVICE_TYPES:
        p.add(
            f"{path}.serviceType",
            f"{service_type!r} is not a Service type for a gateway; valid: {', '.join(_SERVICE_TYPES)}",
        )
    ips_raw = data.get("externalIPs") or []
    ips: list[str] = []
    if not isinstance(ips_raw, list):
        p.add(f"{path}.externalIPs", f"expected a list of IP addresses, got {ips_raw!r}")
        ips_raw = []
    for i, ip in enumerate(ips_raw):
        try:
            ips.append(str(ipaddress.ip_address(str(ip))))
        except ValueError:
            p.add(f"{path}.externalIPs[{i}]", f"{ip!r} is not an IP address (e.g. 10.10.13.48)")
    timeout = _positive_int(p, f"{path}.loadBalancerTimeoutSeconds", data.get("loadBalancerTimeoutSeconds"), 600)
    return GatewaySettings(
        service_type=service_type,
        external_ips=tuple(ips),
        load_balancer_timeout_seconds=timeout,
        values=_values(p, f"{path}.values", data.get("values"), "gateway"),
    )


def _parse_values_only(p: _Problems, path: str, raw: Any, chart: str) -> dict[str, Any]:
    """``values`` of a setting that holds nothing else (a cluster's ``istio``, the mesh's ``eastWestGateway``)."""
    data = _mapping(p, path, raw)
    _unknown(p, f"{path}.", data, _VALUES_ONLY_KEYS)
    return _values(p, f"{path}.values", data.get("values"), chart)


def _parse_cluster(p: _Problems, i: int, raw: Any, base_dir: str) -> ClusterSettings | None:
    path = f"clusters[{i}]"
    data = _mapping(p, path, raw)
    if not data:
        if raw is not None and isinstance(raw, Mapping):
            p.add(path, "is empty; a cluster needs name, network and kubeconfig")
        return None
    _unknown(p, f"{path}.", data, _CLUSTER_KEYS)
    before = len(p.items)
    name = _str(p, f"{path}.name", data.get("name"), required=True)
    if name is not None and (not _DNS1123_LABEL.match(name) or len(name) > 63):
        p.add(
            f"{path}.name",
            f"{name!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters), e.g. cluster1",
        )
    network = _str(p, f"{path}.network", data.get("network"), required=True)
    if network is not None and (not _LABEL_VALUE.match(network) or len(network) > 63):
        p.add(
            f"{path}.network",
            f"{network!r} is not a valid Kubernetes label value (letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit, at most 63 characters), e.g. network1",
        )
    kubeconfig_raw = _str(p, f"{path}.kubeconfig", data.get("kubeconfig"), required=True)
    context = _str(p, f"{path}.context", data.get("context"))
    api_server = _str(p, f"{path}.apiServer", data.get("apiServer"))
    if api_server is not None:
        api_server = _https_url(p, f"{path}.apiServer", api_server)
    gateway = _parse_gateway(p, f"{path}.eastWestGateway", data.get("eastWestGateway"))
    istio = ClusterIstioSettings(values=_parse_values_only(p, f"{path}.istio", data.get("istio"), "istiod"))
    versions = _helloworld_versions(p, f"{path}.helloworldVersions", data.get("helloworldVersions"))
    unreachable = _bool(p, f"{path}.unreachable", data.get("unreachable"), False)
    kube = None
    file: str | None = None
    if kubeconfig_raw:
        file = _path(p, f"{path}.kubeconfig", kubeconfig_raw, base_dir)
        if file:
            kube = _read_kubeconfig(p, f"{path}.kubeconfig", file, context)
    if len(p.items) > before or kube is None or name is None or network is None:
        return None
    content, chosen_context, server = kube
    if api_server is None:
        api_server = _https_url(p, f"{path}.kubeconfig", server)
        if api_server is None:
            return None
    return ClusterSettings(
        name=name,
        network=network,
        kubeconfig_path=file or "",
        kubeconfig=content,
        context=chosen_context,
        api_server=api_server,
        gateway=gateway,
        helloworld_versions=versions,
        unreachable=unreachable,
        kubeconfig_server=server,
        istio=istio,
    )


def _helloworld_versions(p: _Problems, path: str, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        p.add(path, f"expected a list of helloworld versions such as [v1], got {raw!r}")
        return ()
    versions: list[str] = []
    for i, v in enumerate(raw):
        if not isinstance(v, str) or not _HELLOWORLD_VERSION.match(v):
            p.add(f"{path}[{i}]", f"{v!r} is not a helloworld version; the sample images are v1 and v2 (e.g. [v1])")
        elif v in versions:
            p.add(f"{path}[{i}]", f"{v!r} is listed twice")
        else:
            versions.append(v)
    return tuple(versions)


def _parse_istio(p: _Problems, raw: Any, base_dir: str) -> IstioSettings:
    data = _mapping(p, "istio", raw)
    _unknown(p, "istio.", data, _ISTIO_KEYS)
    version = _str(p, "istio.version", data.get("version"), DEFAULT_ISTIO_VERSION) or DEFAULT_ISTIO_VERSION
    if not re.match(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", version):
        p.add("istio.version", f"{version!r} is not an Istio release version, e.g. 1.28.0")
    repo = _str(p, "istio.chartRepository", data.get("chartRepository"))
    directory = _str(p, "istio.chartDirectory", data.get("chartDirectory"))
    charts = ChartSource()
    if repo and directory:
        p.add("istio", "set either chartRepository or chartDirectory, not both")
    elif directory:
        resolved = _path(p, "istio.chartDirectory", directory, base_dir)
        if resolved:
            missing = [
                c for c in ("base", "istiod", "gateway") if not os.path.isfile(os.path.join(resolved, c, "Chart.yaml"))
            ]
            if missing:
                p.add(
                    "istio.chartDirectory",
                    f"{resolved!r} must hold the charts base/, istiod/ and gateway/ "
                    f"(each with a Chart.yaml); missing: {', '.join(missing)}",
                )
            charts = ChartSource(repository=None, directory=resolved)
    elif repo:
        parsed = urlparse(repo)
        if parsed.scheme not in ("https", "http", "oci") or not parsed.netloc:
            p.add("istio.chartRepository", f"{repo!r} is not a chart repository URL, e.g. {DEFAULT_CHART_REPOSITORY}")
        charts = ChartSource(repository=repo)
    hub = _str(p, "istio.hub", data.get("hub"), DEFAULT_HUB) or DEFAULT_HUB
    tag = _str(p, "istio.tag", data.get("tag"), version) or version
    keep_crds = _bool(p, "istio.keepCRDs", data.get("keepCRDs"), True)
    values = _values(p, "istio.values", data.get("values"), "istiod")
    return IstioSettings(version=version, charts=charts, hub=hub, tag=tag, keep_crds=keep_crds, values=values)


def _parse_ca(p: _Problems, raw: Any, root_key: str | None, root_key_is_secret: bool | None) -> CASettings:
    data = _mapping(p, "ca", raw)
    _unknown(p, "ca.", data, _CA_KEYS)
    source = _str(p, "ca.source", data.get("source"), "generate") or "generate"
    if source not in CA_SOURCES:
        p.add("ca.source", f"{source!r} is not a CA source; valid: {', '.join(CA_SOURCES)}")
    protect = _bool(p, "ca.protect", data.get("protect"), True)
    root_days = _positive_int(p, "ca.rootValidityDays", data.get("rootValidityDays"), 3650)
    inter_days = _positive_int(p, "ca.intermediateValidityDays", data.get("intermediateValidityDays"), 3650)
    renew_raw = data.get("renewBeforeDays")
    renew_days = 0 if renew_raw in (0, "0") else _positive_int(p, "ca.renewBeforeDays", renew_raw, 30)
    cert = _str(p, "ca.rootCertPem", data.get("rootCertPem"))
    if source == "import":
        if not cert:
            p.add("ca.rootCertPem", "is required when ca.source is import (the root certificate, PEM)")
        if not root_key:
            p.add(
                ROOT_KEY_CONFIG,
                f"is required when ca.source is import: `pulumi config set --secret {ROOT_KEY_CONFIG} < root-key.pem`",
            )
        if root_key and root_key_is_secret is False:
            p.add(
                ROOT_KEY_CONFIG,
                "is stored in plain text in the stack's config file; a private key must be a secret: "
                f"`pulumi config rm {CONFIG_NAMESPACE}:{ROOT_KEY_CONFIG}` then "
                f"`pulumi config set --secret {CONFIG_NAMESPACE}:{ROOT_KEY_CONFIG} < root-key.pem`",
            )
        if cert and root_key:
            _check_imported_root(p, cert, root_key)
    elif source == "external":
        if not cert:
            p.add("ca.rootCertPem", "is required when ca.source is external (the root certificate, PEM: public)")
        else:
            _check_external_root(p, cert)
        if root_key:
            p.add(
                ROOT_KEY_CONFIG,
                "is given but ca.source is external: the root key stays offline and never enters the config "
                f"or the state; remove it (`pulumi config rm {CONFIG_NAMESPACE}:{ROOT_KEY_CONFIG}`)",
            )
    elif cert or root_key:
        p.add("ca.source", "is 'generate' but a root certificate or key was given; set ca.source to import to use them")
    if source != "external" and data.get("intermediates") is not None:
        p.add("ca.intermediates", f"is only used when ca.source is external (it is {source!r})")
    return CASettings(
        source=source,
        protect=protect,
        root_validity_days=root_days,
        intermediate_validity_days=inter_days,
        renew_before_days=renew_days,
        root_cert_pem=(cert.strip() + "\n" if source == "external" and cert else cert)
        if source in ("import", "external")
        else None,
        root_key_pem=root_key if source == "import" else None,
    )


def _check_external_root(p: _Problems, cert_pem: str) -> None:
    """The root of an external CA: one CA certificate that may have CAs below it, valid now."""
    from istio_mesh.ca_checks import ca_problems, load_one_certificate

    cert, problems = load_one_certificate("ca.rootCertPem", cert_pem)
    if cert is not None:
        problems += ca_problems("ca.rootCertPem", cert, root=True)
    for field_path, message in problems:
        p.add(field_path, message)


def _parse_external_intermediates(
    p: _Problems,
    raw_ca: Any,
    raw_keys: Any,
    keys_are_secret: bool | None,
    members: Sequence[str],
    root_pem: str | None,
) -> tuple[tuple[str, ExternalIntermediate], ...]:
    """``ca.intermediates.<cluster>`` (certificate, chain) and ``caIntermediateKeyPems.<cluster>`` (key,
    secret) for every member cluster, each checked against the root (see ``ca_checks.intermediate_problems``)."""
    import json

    from istio_mesh.ca_checks import intermediate_problems

    data = _mapping(p, "ca.intermediates", raw_ca.get("intermediates") if isinstance(raw_ca, Mapping) else None)
    if isinstance(raw_keys, str):  # the whole map set as one secret value (JSON)
        try:
            raw_keys = json.loads(raw_keys)
        except json.JSONDecodeError:
            p.add(INTERMEDIATE_KEYS_CONFIG, "is not a map of cluster name to PEM private key")
            raw_keys = {}
    keys = _mapping(p, INTERMEDIATE_KEYS_CONFIG, raw_keys)
    if keys and keys_are_secret is False:
        p.add(
            INTERMEDIATE_KEYS_CONFIG,
            "is stored in plain text in the stack's config file; private keys must be secrets: "
            f"`pulumi config set --secret --path '{CONFIG_NAMESPACE}:{INTERMEDIATE_KEYS_CONFIG}.<cluster>' "
            '"$(cat ca-key.pem)"` for each cluster',
        )
    for name in data:
        if name not in members:
            p.add(
                f"ca.intermediates.{name}", f"no cluster of the mesh is named {name!r}; clusters: {', '.join(members)}"
            )
    for name in keys:
        if name not in members:
            p.add(f"{INTERMEDIATE_KEYS_CONFIG}.{name}", f"no cluster of the mesh is named {name!r}")
    out = []
    for name in members:
        entry = _mapping(p, f"ca.intermediates.{name}", data.get(name))
        _unknown(p, f"ca.intermediates.{name}.", entry, _INTERMEDIATE_KEYS)
        cert = _str(p, f"ca.intermediates.{name}.certPem", entry.get("certPem"))
        chain_raw = entry.get("chainPem")
        chain = "" if chain_raw == "" else _str(p, f"ca.intermediates.{name}.chainPem", chain_raw, "") or ""
        key = _str(p, f"{INTERMEDIATE_KEYS_CONFIG}.{name}", keys.get(name))
        if not cert:
            p.add(f"ca.intermediates.{name}.certPem", "is required when ca.source is external (its intermediate, PEM)")
        if not key:
            p.add(
                f"{INTERMEDIATE_KEYS_CONFIG}.{name}",
                f"is required when ca.source is external: `pulumi config set --secret --path "
                f"'{CONFIG_NAMESPACE}:{INTERMEDIATE_KEYS_CONFIG}.{name}' \"$(cat ca-key.pem)\"`",
            )
        if cert and key and root_pem:
            for field_path, message in intermediate_problems(name, cert, chain, key, root_pem):
                p.add(field_path, message)
        if cert and key:
            # PEM text as files have it (`pulumi config set` drops the final newline of a value).
            out.append(
                (
                    name,
                    ExternalIntermediate(
                        cert_pem=cert.strip() + "\n",
                        chain_pem=chain.strip() + "\n" if chain.strip() else "",
                        key_pem=key.strip() + "\n",
                    ),
                )
            )
    return tuple(out)


def _check_imported_root(p: _Problems, cert_pem: str, key_pem: str) -> None:
    """An imported root: one CA certificate, able to sign intermediates, valid now, matching its key."""
    from istio_mesh.ca_checks import ca_problems, key_matches, load_one_certificate

    cert, problems = load_one_certificate("ca.rootCertPem", cert_pem)
    if cert is not None:
        problems += ca_problems("ca.rootCertPem", cert, root=True)
        match = key_matches(cert, key_pem)
        if match is None:
            problems.append((ROOT_KEY_CONFIG, "is not an unencrypted PEM private key"))
        elif not match:
            problems.append(
                (ROOT_KEY_CONFIG, "does not match ca.rootCertPem: the key's public key differs from the certificate's")
            )
    for field_path, message in problems:
        p.add(field_path, message)


def _parse_samples(p: _Problems, raw: Any) -> SampleSettings:
    data = _mapping(p, "samples", raw)
    _unknown(p, "samples.", data, _SAMPLE_KEYS)
    namespace = _str(p, "samples.namespace", data.get("namespace"), "sample") or "sample"
    if not _DNS1123_LABEL.match(namespace):
        p.add("samples.namespace", f"{namespace!r} is not a valid namespace name (DNS-1123 label)")
    defaults = SampleSettings()
    return SampleSettings(
        enabled=_bool(p, "samples.enabled", data.get("enabled"), False),
        namespace=namespace,
        helloworld_image_prefix=_str(
            p, "samples.helloworldImagePrefix", data.get("helloworldImagePrefix"), defaults.helloworld_image_prefix
        )
        or defaults.helloworld_image_prefix,
        sleep_image=_str(p, "samples.sleepImage", data.get("sleepImage"), defaults.sleep_image) or defaults.sleep_image,
    )


def _parse_remote_access(p: _Problems, raw: Any) -> RemoteAccessSettings:
    data = _mapping(p, "remoteAccess", raw)
    _unknown(p, "remoteAccess.", data, _REMOTE_ACCESS_KEYS)
    reader = _str(p, "remoteAccess.reader", data.get("reader"), READER_MESH) or READER_MESH
    if reader not in (READER_MESH, READER_ISTIO):
        p.add(
            "remoteAccess.reader",
            f"{reader!r} is not a reader; valid: {READER_MESH} (a narrow account of this program's own, the "
            f"default), {READER_ISTIO} (Istio's istio-reader-service-account, which can read every Secret)",
        )
        reader = READER_MESH
    generation = 0
    value = data.get("tokenGeneration")
    if value is not None:
        try:
            if isinstance(value, bool):
                raise ValueError
            generation = int(value)
            if generation < 0 or generation > 999999:
                raise ValueError
        except (TypeError, ValueError):
            p.add(
                "remoteAccess.tokenGeneration",
                f"expected an integer from 0 to 999999, got {value!r} (increment it to rotate every reader token)",
            )
            generation = 0
    read_secrets = _bool(p, "remoteAccess.readSecrets", data.get("readSecrets"), True)
    if reader == READER_ISTIO and not read_secrets:
        p.add(
            "remoteAccess.readSecrets",
            "is false but remoteAccess.reader is istio, whose role (the istiod chart's) always reads Secrets; "
            "use reader: mesh to choose",
        )
    return RemoteAccessSettings(reader=reader, read_secrets=read_secrets, token_generation=generation)


def parse_settings(
    raw: Mapping[str, Any], base_dir: str = ".", secret_keys: Collection[str] | None = None
) -> MeshSettings:
    """Parses the stack's ``istio-mesh:*`` settings (keys without the namespace) into ``MeshSettings``.

    ``base_dir`` anchors relative paths (kubeconfigs, chart directory): the project directory.
    ``secret_keys`` names the keys stored as secrets (``None``: unknown, not checked); private keys
    given in plain text are refused. Raises ``ConfigError`` listing every problem found.
    """
    p = _Problems()
    _unknown(p, "", raw, _TOP_KEYS)
    mesh_id = _str(p, "meshId", raw.get("meshId"), required=True)
    if mesh_id is not None and (not _LABEL_VALUE.match(mesh_id) or len(mesh_id) > 63):
        p.add("meshId", f"{mesh_id!r} is not a valid mesh ID (a Kubernetes label value, e.g. mesh1)")
    lab = _bool(p, "lab", raw.get("lab"), False)
    istio = _parse_istio(p, raw.get("istio"), base_dir)
    ca = _parse_ca(
        p, raw.get("ca"), raw.get(ROOT_KEY_CONFIG), None if secret_keys is None else ROOT_KEY_CONFIG in secret_keys
    )
    if ca.source != "external" and raw.get(INTERMEDIATE_KEYS_CONFIG) is not None:
        p.add(INTERMEDIATE_KEYS_CONFIG, f"is only used when ca.source is external (it is {ca.source!r})")
    samples = _parse_samples(p, raw.get("samples"))
    remote_access = _parse_remote_access(p, raw.get("remoteAccess"))
    east_west_gateway = MeshGatewaySettings(
        values=_parse_values_only(p, "eastWestGateway", raw.get("eastWestGateway"), "gateway")
    )

    clusters_raw = raw.get("clusters")
    clusters: list[ClusterSettings] = []
    #: Each parsed cluster's position in the config's list (the paths messages name).
    index: dict[str, int] = {}
    if clusters_raw is None:
        p.add("clusters", "is required: a list of at least two clusters (name, network, kubeconfig)")
        clusters_raw = []
    elif not isinstance(clusters_raw, list):
        p.add("clusters", f"expected a list of clusters, got {type(clusters_raw).__name__}")
        clusters_raw = []
    elif len(clusters_raw) < 2:
        p.add("clusters", f"a multi-cluster mesh needs at least two clusters, got {len(clusters_raw)}")
    seen: dict[str, int] = {}
    for i, c in enumerate(clusters_raw):
        if isinstance(c, Mapping) and isinstance(c.get("name"), str):
            if c["name"] in seen:
                p.add(
                    f"clusters[{i}].name",
                    f"{c['name']!r} is already the name of clusters[{seen[c['name']]}]; "
                    "cluster names must be unique (istiod uses them as cluster IDs)",
                )
            seen.setdefault(c["name"], i)
        parsed = _parse_cluster(p, i, c, base_dir)
        if parsed:
            clusters.append(parsed)
            index.setdefault(parsed.name, i)
    servers: dict[str, str] = {}
    for c in clusters:
        if c.api_server in servers:
            p.add(
                f"clusters[{[x.name for x in clusters].index(c.name)}].apiServer",
                f"{c.api_server!r} is also the API server of {servers[c.api_server]!r}; each cluster needs its own",
            )
        servers.setdefault(c.api_server, c.name)

    if ca.source == "external":
        ca = dataclasses.replace(
            ca,
            intermediates=_parse_external_intermediates(
                p,
                raw.get("ca"),
                raw.get(INTERMEDIATE_KEYS_CONFIG),
                None if secret_keys is None else INTERMEDIATE_KEYS_CONFIG in secret_keys,
                [c.name for c in clusters if not c.unreachable],
                ca.root_cert_pem if isinstance(ca.root_cert_pem, str) else None,  # from config: always a str
            ),
        )
    if clusters and all(c.unreachable for c in clusters):
        p.add("clusters", "every cluster is marked unreachable; at least one must remain in the mesh")
    if mesh_id is not None:
        # Chart values that contradict what the mesh sets in a member cluster (the package's rules).
        for where, message in mesh_values_problems(
            CONFIG_NAMES,
            mesh_id=mesh_id,
            istio=istio,
            east_west_gateway=east_west_gateway,
            clusters=[(index[c.name], c) for c in clusters if not c.unreachable],
        ):
            p.add(where, message)
    if samples.enabled and clusters and not any(c.helloworld_versions for c in clusters):
        p.add(
            "samples.enabled",
            "is true but no cluster runs helloworld: say where with clusters[].helloworldVersions, "
            "e.g. [v1] on the first cluster and [v2] on the second (the walkthrough's layout)",
        )

    if p.items:
        raise ConfigError(p.items)
    assert mesh_id is not None
    return MeshSettings(
        mesh_id=mesh_id,
        clusters=tuple(clusters),
        istio=istio,
        ca=ca,
        samples=samples,
        remote_access=remote_access,
        lab=lab,
        east_west_gateway=east_west_gateway,
    )


def load_settings(base_dir: str | None = None) -> MeshSettings:
    """Reads every ``istio-mesh:*`` key of the current stack and parses it (see ``parse_settings``)."""
    import json

    import pulumi
    from pulumi.runtime import config as runtime_config

    # The SDK has no public "list every key" call: the language host hands the stack's config to
    # set_all_config (older hosts: the PULUMI_CONFIG environment variable). Listing every key is how
    # unknown (misspelt) settings are caught instead of silently ignored.
    all_config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret = set(runtime_config.get_config_secret_keys_env()) | {
        k for k in all_config if runtime_config.is_config_secret(k)
    }
    raw: dict[str, Any] = {}
    prefix = f"{CONFIG_NAMESPACE}:"
    for full_key, value in all_config.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        # Object and list values arrive as JSON text; scalars as plain strings.
        try:
            raw[key] = json.loads(value) if value[:1] in "[{" else value
        except json.JSONDecodeError:
            raw[key] = value
    project_dir = base_dir or os.getcwd()
    prefix_len = len(prefix)
    settings = parse_settings(raw, project_dir, {k[prefix_len:] for k in secret if k.startswith(prefix)})
    pulumi.log.debug(f"istio-mesh: {len(settings.clusters)} clusters on {len(settings.networks)} networks")
    return settings
