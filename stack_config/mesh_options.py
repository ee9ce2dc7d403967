"""The mesh-wide sections besides the CA: ``istio`` (release, charts, images, values), ``samples`` and
``remoteAccess``."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlparse

from istio_mesh.constants import DEFAULT_CHART_REPOSITORY, DEFAULT_HUB
from istio_mesh.options import (
    DEFAULT_ISTIO_VERSION,
    READER_ISTIO,
    READER_MESH,
    ChartSource,
    IstioSettings,
    RemoteAccessSettings,
    SampleSettings,
)

from .validators import DNS1123_LABEL, Problems, as_bool, as_helm_values, as_mapping, as_path, as_str, unknown_keys

_ISTIO_KEYS = {"version", "chartRepository", "chartDirectory", "hub", "tag", "keepCRDs", "values"}
_SAMPLE_KEYS = {"enabled", "namespace", "helloworldImagePrefix", "sleepImage"}
_REMOTE_ACCESS_KEYS = {"reader", "readSecrets", "tokenGeneration"}


def parse_istio(p: Problems, raw: Any, base_dir: str) -> IstioSettings:
    """``istio``: the release, where its charts come from, images and istiod chart values."""
    data = as_mapping(p, "istio", raw)
    unknown_keys(p, "istio.", data, _ISTIO_KEYS)
    version = as_str(p, "istio.version", data.get("version"), DEFAULT_ISTIO_VERSION) or DEFAULT_ISTIO_VERSION
    if not re.match(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", version):
        p.add("istio.version", f"{version!r} is not an Istio release version, e.g. 1.28.0")
    repo = as_str(p, "istio.chartRepository", data.get("chartRepository"))
    directory = as_str(p, "istio.chartDirectory", data.get("chartDirectory"))
    charts = ChartSource()
    if repo and directory:
        p.add("istio", "set either chartRepository or chartDirectory, not both")
    elif directory:
        resolved = as_path(p, "istio.chartDirectory", directory, base_dir)
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
    hub = as_str(p, "istio.hub", data.get("hub"), DEFAULT_HUB) or DEFAULT_HUB
    tag = as_str(p, "istio.tag", data.get("tag"), version) or version
    keep_crds = as_bool(p, "istio.keepCRDs", data.get("keepCRDs"), IstioSettings.keep_crds)
    values = as_helm_values(p, "istio.values", data.get("values"), "istiod")
    return IstioSettings(version=version, charts=charts, hub=hub, tag=tag, keep_crds=keep_crds, values=values)


def parse_samples(p: Problems, raw: Any) -> SampleSettings:
    """``samples``: whether the walkthrough's helloworld and sleep run, and where."""
    data = as_mapping(p, "samples", raw)
    unknown_keys(p, "samples.", data, _SAMPLE_KEYS)
    defaults = SampleSettings()
    namespace = as_str(p, "samples.namespace", data.get("namespace"), defaults.namespace) or defaults.namespace
    if not DNS1123_LABEL.match(namespace):
        p.add("samples.namespace", f"{namespace!r} is not a valid namespace name (DNS-1123 label)")
    return SampleSettings(
        enabled=as_bool(p, "samples.enabled", data.get("enabled"), defaults.enabled),
        namespace=namespace,
        helloworld_image_prefix=as_str(
            p, "samples.helloworldImagePrefix", data.get("helloworldImagePrefix"), defaults.helloworld_image_prefix
        )
        or defaults.helloworld_image_prefix,
        sleep_image=as_str(p, "samples.sleepImage", data.get("sleepImage"), defaults.sleep_image)
        or defaults.sleep_image,
    )


def parse_remote_access(p: Problems, raw: Any) -> RemoteAccessSettings:
    """``remoteAccess``: whose token the remote secrets carry, and its generation."""
    data = as_mapping(p, "remoteAccess", raw)
    unknown_keys(p, "remoteAccess.", data, _REMOTE_ACCESS_KEYS)
    reader = as_str(p, "remoteAccess.reader", data.get("reader"), READER_MESH) or READER_MESH
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
    read_secrets = as_bool(p, "remoteAccess.readSecrets", data.get("readSecrets"), RemoteAccessSettings.read_secrets)
    if reader == READER_ISTIO and not read_secrets:
        p.add(
            "remoteAccess.readSecrets",
            "is false but remoteAccess.reader is istio, whose role (the istiod chart's) always reads Secrets; "
            "use reader: mesh to choose",
        )
    return RemoteAccessSettings(reader=reader, read_secrets=read_secrets, token_generation=generation)
