"""One spelling of every setting: the package schema's inputs are the stack config's keys
(``eastWestGateway``, ``externalIPs``, ``keepCRDs``); the plugin still reads the schema's old spellings
(``gateway``, ``externalIps``, ``keepCrds``), marked deprecated, with a warning naming the old key and the new,
and refuses an old key that contradicts its new one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

from istio_mesh.plugin import mesh_args, schema
from stack_config import parse_settings
from stack_config.ca_settings import _CA_KEYS, _NEXT_ROOT_KEYS, _ROTATION_KEYS
from stack_config.clusters import _CLUSTER_KEYS, _GATEWAY_KEYS
from stack_config.loader import _TOP_KEYS
from stack_config.mesh_options import _ISTIO_KEYS, _REMOTE_ACCESS_KEYS, _SAMPLE_KEYS
from stack_config.validators import _VALUES_ONLY_KEYS

MESH = "istiomesh:index:MultiPrimaryMesh"

#: Each input type of the schema and the keys the stack config accepts in the same place.
STACK_KEYS: dict[str, set[str]] = {
    "MultiPrimaryMesh": _TOP_KEYS,
    "ClusterInputs": _CLUSTER_KEYS,
    "GatewayInputs": _GATEWAY_KEYS,
    "ClusterIstioInputs": _VALUES_ONLY_KEYS,
    "IstioInputs": _ISTIO_KEYS,
    "MeshGatewayInputs": _VALUES_ONLY_KEYS,
    "CAInputs": _CA_KEYS,
    "RotationInputs": _ROTATION_KEYS,
    "NextRootInputs": _NEXT_ROOT_KEYS,
    "RemoteAccessInputs": _REMOTE_ACCESS_KEYS,
    "SamplesInputs": _SAMPLE_KEYS,
}
#: Settings only the stack config has (a difference in what is offered, not in how it is spelt).
STACK_ONLY: dict[str, set[str]] = {
    # lab: the stack runs on the local lab (the package's allowLoopbackApiServers is part of it); the root's
    # and the external intermediates' keys are secret config keys outside ca.
    "MultiPrimaryMesh": {
        "lab",
        "caRootKeyPem",
        "caIntermediateKeyPems",
        "caNextRootKeyPem",
        "caNextIntermediateKeyPems",
    },
    # A lost cluster stays listed in the stack config so its objects leave the state.
    "ClusterInputs": {"unreachable"},
    # An external CA (root key offline) is the stack's only, and so is an external next root.
    "CAInputs": {"intermediates"},
    "NextRootInputs": {"intermediates"},
    # The plugin runs the walkthrough's images.
    "SamplesInputs": {"helloworldImagePrefix", "sleepImage"},
}
#: Settings only the package schema has.
SCHEMA_ONLY: dict[str, set[str]] = {
    "MultiPrimaryMesh": {"refuseExistingObjects", "allowLoopbackApiServers", "labels", "annotations"},
    # The stack's is caRootKeyPem (a secret config key outside ca).
    "CAInputs": {"rootKeyPem"},
    # The stack's is caNextRootKeyPem (a secret config key outside ca).
    "NextRootInputs": {"rootKeyPem"},
}
#: The schema's old spellings, by type, and the key each is the old spelling of.
OLD_SPELLINGS = {
    ("IstioInputs", "keepCrds"): "keepCRDs",
    ("ClusterInputs", "gateway"): "eastWestGateway",
    ("GatewayInputs", "externalIps"): "externalIPs",
}


def _input_properties(spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every input type's properties by short name (the component's inputs as ``MultiPrimaryMesh``)."""
    types = {token.rsplit(":", 1)[-1]: t["properties"] for token, t in spec["types"].items()}
    return {"MultiPrimaryMesh": spec["resources"][MESH]["inputProperties"], **types}


def test_the_schema_spells_every_input_as_the_stack_config_does() -> None:
    inputs = _input_properties(schema())
    assert set(inputs) == set(STACK_KEYS), "compare every input type of the schema with its stack config keys"
    for name, stack in STACK_KEYS.items():
        current = {key for key, prop in inputs[name].items() if "deprecationMessage" not in prop}
        stack_only, schema_only = STACK_ONLY.get(name, set()), SCHEMA_ONLY.get(name, set())
        # The listed differences are real ones (each on its own side only) ...
        assert stack_only <= stack - current, (name, stack_only - (stack - current))
        assert schema_only <= current - stack, (name, schema_only - (current - stack))
        # ... and every other key is spelt the same on both sides.
        assert stack - stack_only == current - schema_only, (
            f"{name}: the stack config has {sorted(stack - stack_only - current)}, "
            f"the schema has {sorted(current - schema_only - stack)}"
        )


def test_the_old_spellings_are_deprecated_in_the_schema_naming_the_new_key() -> None:
    inputs = _input_properties(schema())
    deprecated = {
        (name, key): prop["deprecationMessage"]
        for name, props in inputs.items()
        for key, prop in props.items()
        if "deprecationMessage" in prop
    }
    assert set(deprecated) == set(OLD_SPELLINGS)
    for (name, old), message in deprecated.items():
        new = OLD_SPELLINGS[name, old]
        assert new in message, message

        def shape(prop: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in prop.items() if k not in ("description", "deprecationMessage", "items")}

        # Same type, same secrecy: only the spelling differs.
        assert shape(inputs[name][old]) == shape(inputs[name][new]), (name, old)
        assert "deprecationMessage" not in inputs[name][new]


def _clusters() -> list[dict[str, Any]]:
    return [
        {"name": f"cluster{i}", "network": f"network{i}", "apiServer": f"https://10.0.{i}.1:6443", "kubeconfig": "kc"}
        for i in (1, 2)
    ]


def _warnings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the plugin logs as warnings (``pulumi.log.warn``: the engine's log, in the plugin)."""
    logged: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *args, **kwargs: logged.append(msg))
    return logged


def test_the_new_spellings_are_read_as_the_stack_config_reads_them(
    kubeconfigs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same istio and eastWestGateway objects, written into a stack config and into the plugin's inputs,
    give the same settings; no warning."""
    warnings = _warnings(monkeypatch)
    istio = {"keepCRDs": False}
    gateways = [
        {"serviceType": "NodePort", "externalIPs": ["10.0.1.10"], "loadBalancerTimeoutSeconds": 60},
        {"externalIPs": ["10.0.2.10", "10.0.2.11"], "values": {"replicaCount": 2}},
    ]
    inputs: dict[str, Any] = {"meshId": "mesh1", "clusters": _clusters(), "istio": istio}
    raw: dict[str, Any] = {"meshId": "mesh1", "clusters": kubeconfigs(2), "istio": istio}
    for entry, entry_raw, gateway in zip(inputs["clusters"], raw["clusters"], gateways, strict=True):
        entry["eastWestGateway"] = entry_raw["eastWestGateway"] = gateway
    args = mesh_args(inputs)  # type: ignore[arg-type]
    settings = parse_settings(raw)
    assert args.istio.keep_crds is settings.istio.keep_crds is False
    assert [c.gateway for c in args.clusters] == [c.gateway for c in settings.clusters]
    assert args.clusters[0].gateway.external_ips == ("10.0.1.10",)
    assert args.clusters[1].gateway.external_ips == ("10.0.2.10", "10.0.2.11")
    assert warnings == []


def test_the_old_spellings_still_work_with_a_warning_naming_the_old_key_and_the_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings = _warnings(monkeypatch)
    new: dict[str, Any] = {"meshId": "mesh1", "clusters": _clusters(), "istio": {"keepCRDs": False}}
    new["clusters"][0]["eastWestGateway"] = {"serviceType": "NodePort", "externalIPs": ["10.0.1.10"]}
    new["clusters"][1]["eastWestGateway"] = {"externalIPs": ["10.0.2.10"], "values": {"replicaCount": 2}}
    want = mesh_args(new)  # type: ignore[arg-type]
    assert warnings == []

    old: dict[str, Any] = {"meshId": "mesh1", "clusters": _clusters(), "istio": {"keepCrds": False}}
    old["clusters"][0]["gateway"] = {"serviceType": "NodePort", "externalIps": ["10.0.1.10"]}
    old["clusters"][1]["eastWestGateway"] = {"externalIps": ["10.0.2.10"], "values": {"replicaCount": 2}}
    # The same arguments: the same logical names and Kubernetes objects.
    assert mesh_args(old) == want  # type: ignore[arg-type]
    assert want.istio.keep_crds is False and want.clusters[0].gateway.external_ips == ("10.0.1.10",)
    named = [
        ("istio.keepCrds", "istio.keepCRDs"),
        ("clusters[0].gateway", "clusters[0].eastWestGateway"),
        ("clusters[0].gateway.externalIps", "clusters[0].eastWestGateway.externalIPs"),
        ("clusters[1].eastWestGateway.externalIps", "clusters[1].eastWestGateway.externalIPs"),
    ]
    assert sorted(warnings) == sorted(
        f"MultiPrimaryMesh: {o} is deprecated; write {n} (the same setting)" for o, n in named
    )


def test_an_old_spelling_given_with_its_new_one_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    warnings = _warnings(monkeypatch)
    same: dict[str, Any] = {"meshId": "mesh1", "clusters": _clusters(), "istio": {"keepCRDs": False, "keepCrds": False}}
    assert mesh_args(same).istio.keep_crds is False  # type: ignore[arg-type]
    assert warnings == ["MultiPrimaryMesh: istio.keepCrds is deprecated; write istio.keepCRDs (the same setting)"]

    both: dict[str, Any] = {"meshId": "mesh1", "clusters": _clusters(), "istio": {"keepCRDs": True, "keepCrds": False}}
    both["clusters"][0]["eastWestGateway"] = {"externalIPs": ["10.0.1.10"], "externalIps": ["10.0.1.11"]}
    both["clusters"][1]["eastWestGateway"] = {"serviceType": "ClusterIP"}
    both["clusters"][1]["gateway"] = {"serviceType": "NodePort"}
    with pytest.raises(ValueError) as err:
        mesh_args(both)  # type: ignore[arg-type]
    message = str(err.value)
    assert message.startswith("invalid MultiPrimaryMesh inputs (nothing was registered):")
    for old, new in (
        ("istio.keepCrds", "istio.keepCRDs"),
        ("clusters[0].eastWestGateway.externalIps", "clusters[0].eastWestGateway.externalIPs"),
        ("clusters[1].gateway", "clusters[1].eastWestGateway"),
    ):
        assert f"  - {old}: the old spelling of {new}, which is given too, with another value: give only {new}" in (
            message
        ), message
