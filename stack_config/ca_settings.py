"""``ca``: the mesh's root CA (generated, imported or external) and, for an external CA, each cluster's
intermediate; certificates a user brings are checked here (``istio_mesh.ca_checks``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from istio_mesh.options import (
    CA_SOURCES,
    NEXT_ROOT_SOURCES,
    ROTATION_PHASES,
    CASettings,
    ExternalIntermediate,
    NextRoot,
    RootRotation,
)

from .model import CONFIG_NAMESPACE, INTERMEDIATE_KEYS_CONFIG, NEXT_ROOT_KEY_CONFIG, ROOT_KEY_CONFIG
from .validators import Problems, as_bool, as_mapping, as_positive_int, as_str, unknown_keys

#: The package's defaults (``CASettings``, ``NextRoot``), the one place they are set.
_CA, _NEXT = CASettings(), NextRoot()

_CA_KEYS = {
    "source",
    "protect",
    "rootValidityDays",
    "intermediateValidityDays",
    "renewBeforeDays",
    "rootCertPem",
    "intermediates",
    "generation",
    "rotation",
    "intermediateGeneration",
}
_ROTATION_KEYS = {"phase", "nextRoot"}
_NEXT_ROOT_KEYS = {"source", "rootCertPem", "intermediates"}
_INTERMEDIATE_KEYS = {"certPem", "chainPem"}


def parse_ca(
    p: Problems,
    raw: Any,
    root_key: str | None,
    root_key_is_secret: bool | None,
    next_key: str | None = None,
    next_key_is_secret: bool | None = None,
) -> CASettings:
    """``ca`` and the imported root's key (secret), checked; an external CA's intermediates come later."""
    data = as_mapping(p, "ca", raw)
    unknown_keys(p, "ca.", data, _CA_KEYS)
    source = as_str(p, "ca.source", data.get("source"), _CA.source) or _CA.source
    if source not in CA_SOURCES:
        p.add("ca.source", f"{source!r} is not a CA source; valid: {', '.join(CA_SOURCES)}")
    protect = as_bool(p, "ca.protect", data.get("protect"), _CA.protect)
    root_days = as_positive_int(p, "ca.rootValidityDays", data.get("rootValidityDays"), _CA.root_validity_days)
    inter_days = as_positive_int(
        p, "ca.intermediateValidityDays", data.get("intermediateValidityDays"), _CA.intermediate_validity_days
    )
    renew_raw = data.get("renewBeforeDays")
    renew_days = (
        0 if renew_raw in (0, "0") else as_positive_int(p, "ca.renewBeforeDays", renew_raw, _CA.renew_before_days)
    )
    cert = as_str(p, "ca.rootCertPem", data.get("rootCertPem"))
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
    generation_raw = data.get("generation")
    generation = 0 if generation_raw in (None, 0, "0") else as_positive_int(p, "ca.generation", generation_raw, 0)
    rotation = _parse_rotation(p, data.get("rotation"), next_key, next_key_is_secret)
    inter_raw = data.get("intermediateGeneration")
    inter_generation = (
        0 if inter_raw in (None, 0, "0") else as_positive_int(p, "ca.intermediateGeneration", inter_raw, 0)
    )
    if inter_generation and source == "external":
        p.add("ca.intermediateGeneration", "is not used when ca.source is external: set new intermediates instead")
    if rotation is None and next_key:
        p.add(NEXT_ROOT_KEY_CONFIG, "is given but no rotation is in progress (ca.rotation); remove it")
    return CASettings(
        generation=generation,
        rotation=rotation,
        intermediate_generation=inter_generation,
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


def _parse_rotation(
    p: Problems, raw: Any, next_key: str | None, next_key_is_secret: bool | None
) -> RootRotation | None:
    """``ca.rotation`` (``phase`` and ``nextRoot``) with the imported next root's key (secret), checked."""
    if raw is None:
        return None
    data = as_mapping(p, "ca.rotation", raw)
    unknown_keys(p, "ca.rotation.", data, _ROTATION_KEYS)
    phase = as_str(p, "ca.rotation.phase", data.get("phase"), required=True)
    if phase is not None and phase not in ROTATION_PHASES:
        p.add(
            "ca.rotation.phase",
            f"{phase!r} is not a phase; the phases, one `up` each, in order: {', '.join(ROTATION_PHASES)}",
        )
    nxt = as_mapping(p, "ca.rotation.nextRoot", data.get("nextRoot"))
    unknown_keys(p, "ca.rotation.nextRoot.", nxt, _NEXT_ROOT_KEYS)
    source = as_str(p, "ca.rotation.nextRoot.source", nxt.get("source"), _NEXT.source) or _NEXT.source
    if source not in NEXT_ROOT_SOURCES:
        p.add(
            "ca.rotation.nextRoot.source",
            f"{source!r} is not a source for a next root; valid: {', '.join(NEXT_ROOT_SOURCES)}",
        )
    cert = as_str(p, "ca.rotation.nextRoot.rootCertPem", nxt.get("rootCertPem"))
    if source == "external":
        if not cert:
            p.add("ca.rotation.nextRoot.rootCertPem", "is required when the next root is external (PEM: public)")
        else:
            checked = Problems()
            _check_external_root(checked, cert)
            p.items.extend(i.replace("ca.rootCertPem", "ca.rotation.nextRoot.rootCertPem") for i in checked.items)
        if next_key:
            p.add(NEXT_ROOT_KEY_CONFIG, "is given but the next root is external: its key stays offline; remove it")
    elif nxt.get("intermediates") is not None:
        p.add("ca.rotation.nextRoot.intermediates", f"is only used when the next root is external (it is {source!r})")
    if source == "import":
        if not cert:
            p.add("ca.rotation.nextRoot.rootCertPem", "is required when the next root is imported (PEM)")
        if not next_key:
            p.add(
                NEXT_ROOT_KEY_CONFIG,
                f"is required when the next root is imported: `pulumi config set --secret {NEXT_ROOT_KEY_CONFIG} "
                "< next-root-key.pem`",
            )
        elif next_key_is_secret is False:
            p.add(
                NEXT_ROOT_KEY_CONFIG,
                "is stored in plain text in the stack's config file; a private key must be a secret",
            )
        if cert and next_key:
            checked = Problems()
            _check_imported_root(checked, cert, next_key)
            for item in checked.items:
                p.items.append(
                    item.replace("ca.rootCertPem", "ca.rotation.nextRoot.rootCertPem").replace(
                        ROOT_KEY_CONFIG, NEXT_ROOT_KEY_CONFIG
                    )
                )
    elif source == "generate" and (cert or next_key):
        p.add(
            "ca.rotation.nextRoot.source",
            "is 'generate' but a certificate or key was given; set it to import to use them",
        )
    if phase is None or phase not in ROTATION_PHASES:
        return None
    return RootRotation(
        phase=phase,
        next_root=NextRoot(
            source=source,
            root_cert_pem=(cert.strip() + "\n" if source == "external" and cert else cert)
            if source != "generate"
            else None,
            root_key_pem=next_key if source == "import" else None,
        ),
    )


def _check_external_root(p: Problems, cert_pem: str) -> None:
    """The root of an external CA: one CA certificate that may have CAs below it, valid now."""
    from istio_mesh.ca_checks import ca_problems, load_one_certificate

    cert, problems = load_one_certificate("ca.rootCertPem", cert_pem)
    if cert is not None:
        problems += ca_problems("ca.rootCertPem", cert, root=True)
    for field_path, message in problems:
        p.add(field_path, message)


def parse_external_intermediates(
    p: Problems,
    raw_ca: Any,
    raw_keys: Any,
    keys_are_secret: bool | None,
    members: Sequence[str],
    root_pem: str | None,
    path: str = "ca.intermediates",
    keys_config: str = INTERMEDIATE_KEYS_CONFIG,
) -> tuple[tuple[str, ExternalIntermediate], ...]:
    """``ca.intermediates.<cluster>`` (certificate, chain) and ``caIntermediateKeyPems.<cluster>`` (key,
    secret) for every member cluster, each checked against the root (see ``ca_checks.intermediate_problems``).
    A rotation's external next root has its own (``path``: ``ca.rotation.nextRoot.intermediates``,
    ``keys_config``: ``caNextIntermediateKeyPems``; ``raw_ca`` is then ``ca.rotation.nextRoot``)."""
    import json

    from istio_mesh.ca_checks import intermediate_problems

    when = "ca.source is external" if path == "ca.intermediates" else "the next root is external"
    data = as_mapping(p, path, raw_ca.get("intermediates") if isinstance(raw_ca, Mapping) else None)
    if isinstance(raw_keys, str):  # the whole map set as one secret value (JSON)
        try:
            raw_keys = json.loads(raw_keys)
        except json.JSONDecodeError:
            p.add(keys_config, "is not a map of cluster name to PEM private key")
            raw_keys = {}
    keys = as_mapping(p, keys_config, raw_keys)
    if keys and keys_are_secret is False:
        p.add(
            keys_config,
            "is stored in plain text in the stack's config file; private keys must be secrets: "
            f"`pulumi config set --secret --path '{CONFIG_NAMESPACE}:{keys_config}.<cluster>' "
            '"$(cat ca-key.pem)"` for each cluster',
        )
    for name in data:
        if name not in members:
            p.add(f"{path}.{name}", f"no cluster of the mesh is named {name!r}; clusters: {', '.join(members)}")
    for name in keys:
        if name not in members:
            p.add(f"{keys_config}.{name}", f"no cluster of the mesh is named {name!r}")
    out = []
    for name in members:
        entry = as_mapping(p, f"{path}.{name}", data.get(name))
        unknown_keys(p, f"{path}.{name}.", entry, _INTERMEDIATE_KEYS)
        cert = as_str(p, f"{path}.{name}.certPem", entry.get("certPem"))
        chain_raw = entry.get("chainPem")
        chain = "" if chain_raw == "" else as_str(p, f"{path}.{name}.chainPem", chain_raw, "") or ""
        key = as_str(p, f"{keys_config}.{name}", keys.get(name))
        if not cert:
            p.add(f"{path}.{name}.certPem", f"is required when {when} (its intermediate, PEM)")
        if not key:
            p.add(
                f"{keys_config}.{name}",
                f"is required when {when}: `pulumi config set --secret --path "
                f"'{CONFIG_NAMESPACE}:{keys_config}.{name}' \"$(cat ca-key.pem)\"`",
            )
        if cert and key and root_pem:
            for field_path, message in intermediate_problems(name, cert, chain, key, root_pem):
                where = field_path.replace("ca.intermediates", path, 1).replace(INTERMEDIATE_KEYS_CONFIG, keys_config)
                p.add(where, message)
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


def _check_imported_root(p: Problems, cert_pem: str, key_pem: str) -> None:
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
