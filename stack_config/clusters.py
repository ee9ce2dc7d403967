"""``clusters[]``: one primary cluster each (name, network, kubeconfig, API server) and its east-west gateway."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from istio_mesh.options import GATEWAY_SERVICE_TYPES, ClusterIstioSettings, GatewaySettings

from .kubeconfig import read_kubeconfig
from .model import ClusterSettings
from .validators import (
    DNS1123_LABEL,
    LABEL_VALUE,
    Problems,
    as_bool,
    as_helm_values,
    as_https_url,
    as_mapping,
    as_path,
    as_positive_int,
    as_str,
    parse_values_only,
    unknown_keys,
)

#: The package's defaults (``GatewaySettings``), the one place they are set.
_GATEWAY = GatewaySettings()
_HELLOWORLD_VERSION = re.compile(r"^v[0-9]+$")
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


def _parse_gateway(p: Problems, path: str, raw: Any) -> GatewaySettings:
    data = as_mapping(p, path, raw)
    unknown_keys(p, f"{path}.", data, _GATEWAY_KEYS)
    service_type = as_str(p, f"{path}.serviceType", data.get("serviceType"), _GATEWAY.service_type)
    service_type = service_type or _GATEWAY.service_type
    if service_type not in GATEWAY_SERVICE_TYPES:
        p.add(
            f"{path}.serviceType",
            f"{service_type!r} is not a Service type for a gateway; valid: {', '.join(GATEWAY_SERVICE_TYPES)}",
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
    timeout = as_positive_int(
        p,
        f"{path}.loadBalancerTimeoutSeconds",
        data.get("loadBalancerTimeoutSeconds"),
        _GATEWAY.load_balancer_timeout_seconds,
    )
    return GatewaySettings(
        service_type=service_type,
        external_ips=tuple(ips),
        load_balancer_timeout_seconds=timeout,
        values=as_helm_values(p, f"{path}.values", data.get("values"), "gateway"),
    )


def parse_cluster(p: Problems, i: int, raw: Any, base_dir: str) -> ClusterSettings | None:
    """``clusters[i]``, checked, with its kubeconfig read; None when it has a mistake (reported)."""
    path = f"clusters[{i}]"
    data = as_mapping(p, path, raw)
    if not data:
        if raw is not None and isinstance(raw, Mapping):
            p.add(path, "is empty; a cluster needs name, network and kubeconfig")
        return None
    unknown_keys(p, f"{path}.", data, _CLUSTER_KEYS)
    before = len(p.items)
    name = as_str(p, f"{path}.name", data.get("name"), required=True)
    if name is not None and (not DNS1123_LABEL.match(name) or len(name) > 63):
        p.add(
            f"{path}.name",
            f"{name!r} is not a DNS-1123 label (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters), e.g. cluster1",
        )
    network = as_str(p, f"{path}.network", data.get("network"), required=True)
    if network is not None and (not LABEL_VALUE.match(network) or len(network) > 63):
        p.add(
            f"{path}.network",
            f"{network!r} is not a valid Kubernetes label value (letters, digits, '-', '_', '.', "
            "starting and ending with a letter or digit, at most 63 characters), e.g. network1",
        )
    kubeconfig_raw = as_str(p, f"{path}.kubeconfig", data.get("kubeconfig"), required=True)
    context = as_str(p, f"{path}.context", data.get("context"))
    api_server = as_str(p, f"{path}.apiServer", data.get("apiServer"))
    if api_server is not None:
        api_server = as_https_url(p, f"{path}.apiServer", api_server)
    gateway = _parse_gateway(p, f"{path}.eastWestGateway", data.get("eastWestGateway"))
    istio = ClusterIstioSettings(values=parse_values_only(p, f"{path}.istio", data.get("istio"), "istiod"))
    versions = _helloworld_versions(p, f"{path}.helloworldVersions", data.get("helloworldVersions"))
    unreachable = as_bool(p, f"{path}.unreachable", data.get("unreachable"), False)
    kube = None
    file: str | None = None
    if kubeconfig_raw:
        file = as_path(p, f"{path}.kubeconfig", kubeconfig_raw, base_dir)
        if file:
            kube = read_kubeconfig(p, f"{path}.kubeconfig", file, context)
    if len(p.items) > before or kube is None or name is None or network is None:
        return None
    content, chosen_context, server = kube
    if api_server is None:
        api_server = as_https_url(p, f"{path}.kubeconfig", server)
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


def _helloworld_versions(p: Problems, path: str, raw: Any) -> tuple[str, ...]:
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
