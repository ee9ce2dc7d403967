"""The loader: ``parse_settings`` checks a stack's whole ``istio-mesh:*`` config (plain data, so tests
can call it) and reports every mistake at once; ``load_settings`` reads it from the stack's Pulumi config."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Collection, Mapping
from typing import Any

from istio_mesh.chart_values import mesh_values_problems
from istio_mesh.options import MeshGatewaySettings

from .ca_settings import parse_ca, parse_external_intermediates
from .clusters import parse_cluster
from .mesh_options import parse_istio, parse_remote_access, parse_samples
from .model import (
    CONFIG_NAMES,
    CONFIG_NAMESPACE,
    INTERMEDIATE_KEYS_CONFIG,
    NEXT_INTERMEDIATE_KEYS_CONFIG,
    NEXT_ROOT_KEY_CONFIG,
    ROOT_KEY_CONFIG,
    ClusterSettings,
    ConfigError,
    MeshSettings,
)
from .validators import LABEL_VALUE, Problems, as_bool, as_str, parse_values_only, unknown_keys

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
    NEXT_ROOT_KEY_CONFIG,
    NEXT_INTERMEDIATE_KEYS_CONFIG,
}


def parse_settings(
    raw: Mapping[str, Any], base_dir: str = ".", secret_keys: Collection[str] | None = None
) -> MeshSettings:
    """Parses the stack's ``istio-mesh:*`` settings (keys without the namespace) into ``MeshSettings``.

    ``base_dir`` anchors relative paths (kubeconfigs, chart directory): the project directory.
    ``secret_keys`` names the keys stored as secrets (``None``: unknown, not checked); private keys
    given in plain text are refused. Raises ``ConfigError`` listing every problem found.
    """
    p = Problems()
    unknown_keys(p, "", raw, _TOP_KEYS)
    mesh_id = as_str(p, "meshId", raw.get("meshId"), required=True)
    if mesh_id is not None and (not LABEL_VALUE.match(mesh_id) or len(mesh_id) > 63):
        p.add("meshId", f"{mesh_id!r} is not a valid mesh ID (a Kubernetes label value, e.g. mesh1)")
    lab = as_bool(p, "lab", raw.get("lab"), False)
    istio = parse_istio(p, raw.get("istio"), base_dir)
    ca = parse_ca(
        p,
        raw.get("ca"),
        raw.get(ROOT_KEY_CONFIG),
        None if secret_keys is None else ROOT_KEY_CONFIG in secret_keys,
        raw.get(NEXT_ROOT_KEY_CONFIG),
        None if secret_keys is None else NEXT_ROOT_KEY_CONFIG in secret_keys,
    )
    if ca.source != "external" and raw.get(INTERMEDIATE_KEYS_CONFIG) is not None:
        p.add(INTERMEDIATE_KEYS_CONFIG, f"is only used when ca.source is external (it is {ca.source!r})")
    samples = parse_samples(p, raw.get("samples"))
    remote_access = parse_remote_access(p, raw.get("remoteAccess"))
    east_west_gateway = MeshGatewaySettings(
        values=parse_values_only(p, "eastWestGateway", raw.get("eastWestGateway"), "gateway")
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
        parsed = parse_cluster(p, i, c, base_dir)
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
            intermediates=parse_external_intermediates(
                p,
                raw.get("ca"),
                raw.get(INTERMEDIATE_KEYS_CONFIG),
                None if secret_keys is None else INTERMEDIATE_KEYS_CONFIG in secret_keys,
                [c.name for c in clusters if not c.unreachable],
                ca.root_cert_pem if isinstance(ca.root_cert_pem, str) else None,  # from config: always a str
            ),
        )
    rotation = ca.rotation
    if rotation is not None and rotation.next_root.source == "external":
        raw_ca = raw.get("ca")
        raw_rotation = raw_ca.get("rotation") if isinstance(raw_ca, Mapping) else None
        raw_next = raw_rotation.get("nextRoot") if isinstance(raw_rotation, Mapping) else None
        intermediates = parse_external_intermediates(
            p,
            raw_next,
            raw.get(NEXT_INTERMEDIATE_KEYS_CONFIG),
            None if secret_keys is None else NEXT_INTERMEDIATE_KEYS_CONFIG in secret_keys,
            [c.name for c in clusters if not c.unreachable],
            rotation.next_root.root_cert_pem if isinstance(rotation.next_root.root_cert_pem, str) else None,
            path="ca.rotation.nextRoot.intermediates",
            keys_config=NEXT_INTERMEDIATE_KEYS_CONFIG,
        )
        next_root = dataclasses.replace(rotation.next_root, intermediates=intermediates)
        ca = dataclasses.replace(ca, rotation=dataclasses.replace(rotation, next_root=next_root))
    elif raw.get(NEXT_INTERMEDIATE_KEYS_CONFIG) is not None:
        p.add(
            NEXT_INTERMEDIATE_KEYS_CONFIG, "is only used when a rotation's next root is external (ca.rotation.nextRoot)"
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
