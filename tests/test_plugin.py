"""The ``istiomesh`` plugin: its schema (generated, checked in, documented, secrets marked), the mapping of
its inputs onto the package's arguments, the mesh it builds (signed by the plugin's own resource) and the
signer resource's check/diff/create rules."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from support.certs import NOW, ec_root_ca, public_key_pem
from support.mocks import run_program

from istio_mesh import CASettings, IstioSettings, RemoteAccessSettings
from istio_mesh.constants import PACKAGE_VERSION
from istio_mesh.intermediate_cert import SIGNER_PLUGIN
from istio_mesh.plugin import MESH_TOKEN, VERSION, MeshFromInputs, mesh_args, schema
from istio_mesh.plugin_server import check_inputs, create, diff, served_request

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "components" / "istio_mesh" / "schema.json"
DYNAMIC = "pulumi-python:dynamic/istiomesh:IntermediateCertificate"
PLUGIN_CERT = "istiomesh:index:IntermediateCertificate"


def test_the_checked_in_schema_is_the_generated_one() -> None:
    """Generated from the code: when this fails, run
    `.venv/bin/python -m istio_mesh.plugin --schema > components/istio_mesh/schema.json`."""
    generated = subprocess.run(
        [sys.executable, "-m", "istio_mesh.plugin", "--schema"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(SCHEMA_FILE.read_text()) == json.loads(generated), (
        "components/istio_mesh/schema.json is stale: regenerate it with "
        "`.venv/bin/python -m istio_mesh.plugin --schema > components/istio_mesh/schema.json`"
    )


def _properties(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for token, resource in spec["resources"].items():
        for kind in ("inputProperties", "properties"):
            for name, prop in resource.get(kind, {}).items():
                yield f"{token}.{kind}", name, prop
    for token, typ in spec["types"].items():
        for name, prop in typ.get("properties", {}).items():
            yield token, name, prop


def test_every_resource_type_input_and_output_is_documented() -> None:
    spec = schema()
    assert spec["version"] == PACKAGE_VERSION
    assert set(spec["resources"]) == {"istiomesh:index:MultiPrimaryMesh", PLUGIN_CERT}
    for token, thing in [*spec["resources"].items(), *spec["types"].items()]:
        assert thing.get("description", "").strip(), token
    undocumented = [f"{where}.{name}" for where, name, prop in _properties(spec) if not prop.get("description")]
    assert not undocumented, undocumented
    mesh = spec["resources"]["istiomesh:index:MultiPrimaryMesh"]
    assert mesh["isComponent"] is True
    assert set(mesh["inputProperties"]) >= {"meshId", "clusters", "istio", "ca", "labels", "annotations"}
    assert set(mesh["requiredInputs"]) == {"meshId", "clusters"}
    assert set(mesh["properties"]) == {"meshId", "rootCertPem", "rootFingerprint", "clusters"}


def test_credentials_are_secret_in_the_schema() -> None:
    spec = schema()
    secret = {f"{where}.{name}" for where, name, prop in _properties(spec) if prop.get("secret")}
    assert secret == {
        "istiomesh:index:ClusterInputs.kubeconfig",
        "istiomesh:index:CAInputs.rootKeyPem",
        "istiomesh:index:NextRootInputs.rootKeyPem",
        f"{PLUGIN_CERT}.inputProperties.rootKeyPem",
    }
    # The signer never returns the root key.
    assert "rootKeyPem" not in spec["resources"][PLUGIN_CERT]["properties"]


def test_the_package_version_is_pyprojects() -> None:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        assert tomllib.load(fh)["project"]["version"] == PACKAGE_VERSION


def _inputs(**extra: Any) -> dict[str, Any]:
    clusters = [
        {"name": f"cluster{i}", "network": f"network{i}", "apiServer": f"https://10.0.{i}.1:6443", "kubeconfig": "kc"}
        for i in (1, 2)
    ]
    return {"meshId": "mesh1", "clusters": clusters, **extra}


def test_plugin_inputs_default_to_the_package_defaults() -> None:
    args = mesh_args(_inputs())  # type: ignore[arg-type]
    assert args.istio == IstioSettings()
    assert args.ca == CASettings()
    assert args.remote_access == RemoteAccessSettings()
    assert args.refuse_existing_objects is True and args.allow_loopback_api_servers is False
    assert args.intermediate_signer == SIGNER_PLUGIN
    assert [(c.name, c.network, c.api_server, c.kubeconfig) for c in args.clusters] == [
        ("cluster1", "network1", "https://10.0.1.1:6443", "kc"),
        ("cluster2", "network2", "https://10.0.2.1:6443", "kc"),
    ]


def test_plugin_inputs_map_onto_the_package_arguments() -> None:
    inputs = _inputs(
        istio={"version": "1.30.1", "chartDirectory": "/charts", "keepCRDs": False},
        ca={"protect": False, "renewBeforeDays": 0, "intermediateValidityDays": 365},
        remoteAccess={"reader": "istio", "readSecrets": True, "tokenGeneration": 2},
        samples={"enabled": True},
        labels={"team": "mesh"},
        allowLoopbackApiServers=True,
    )
    inputs["clusters"][0]["eastWestGateway"] = {"serviceType": "NodePort", "externalIPs": ["10.0.1.10"]}
    inputs["clusters"][0]["helloworldVersions"] = ["v1"]
    args = mesh_args(inputs)  # type: ignore[arg-type]
    assert args.istio.version == args.istio.tag == "1.30.1"
    assert args.istio.charts.directory == "/charts" and args.istio.keep_crds is False
    assert (args.ca.protect, args.ca.renew_before_days, args.ca.intermediate_validity_days) == (False, 0, 365)
    assert args.remote_access == RemoteAccessSettings(reader="istio", read_secrets=True, token_generation=2)
    assert args.samples.enabled and args.labels == {"team": "mesh"} and args.allow_loopback_api_servers
    first = args.clusters[0]
    assert first.gateway.service_type == "NodePort" and first.gateway.external_ips == ("10.0.1.10",)
    assert first.helloworld_versions == ("v1",)


def test_the_mesh_the_plugin_builds_signs_with_the_plugins_resource(mesh_settings: Any) -> None:
    """From another language there is no Python dynamic-provider host: the plugin's mesh must not use one."""
    settings = mesh_settings(2)

    def build() -> Mapping[str, pulumi.Output[Any]]:
        inputs = _inputs(ca={"protect": False})
        for entry, c in zip(inputs["clusters"], settings.clusters, strict=True):
            entry["kubeconfig"] = pulumi.Output.secret(c.kubeconfig)
        mesh = MeshFromInputs("mesh", inputs)  # type: ignore[arg-type]
        return {"clusters": mesh.clusters}

    rec = run_program(build)
    assert not rec.of_type(DYNAMIC)
    certs = rec.of_type(PLUGIN_CERT)
    assert sorted(c.name for c in certs) == ["mesh-cluster1-ca-cert", "mesh-cluster2-ca-cert"]
    for cert in certs:
        assert cert.is_secret("rootKeyPem") and cert.inputs["clusterName"] in ("cluster1", "cluster2")
        assert set(cert.inputs) >= {"publicKeyPem", "rootCertPem", "validityDays", "renewBeforeDays"}
    assert rec.one("istiomesh:index:MultiPrimaryMesh").type == "istiomesh:index:MultiPrimaryMesh"


def test_the_mesh_is_served_under_the_package_class_name() -> None:
    """Programs in every language ask for ``istiomesh:index:MultiPrimaryMesh`` (the schema's token, the
    package class's name); the SDK's component host knows the serving class by its own name: a request for
    the mesh reaches it, any other request passes unchanged, and the engine's request is not modified."""
    from pulumi.provider.experimental.component import ComponentProvider
    from pulumi.runtime.proto import provider_pb2

    assert MESH_TOKEN == "istiomesh:index:MultiPrimaryMesh" and set(schema()["resources"]) >= {MESH_TOKEN}
    served_by_sdk = set(
        json.loads(ComponentProvider([MeshFromInputs], "istiomesh", None, VERSION).schema or "{}")["resources"]
    )
    asked = provider_pb2.ConstructRequest(type=MESH_TOKEN, name="mesh", project="p", stack="s")
    served = served_request(asked)
    assert served.type in served_by_sdk and served.type != MESH_TOKEN
    assert (served.name, served.project, served.stack) == ("mesh", "p", "s")
    assert asked.type == MESH_TOKEN
    other = provider_pb2.ConstructRequest(type="istiomesh:index:Other")
    assert served_request(other) is other


def test_the_plugins_old_class_name_still_imports_with_a_warning() -> None:
    from istio_mesh import plugin

    with pytest.warns(DeprecationWarning, match="now istio_mesh.plugin.MeshFromInputs"):
        assert plugin.MultiPrimaryMesh is MeshFromInputs
    with pytest.raises(AttributeError):
        _ = plugin.NoSuchName


def _plugin_props(root: tuple[str, str, x509.Certificate], **overrides: Any) -> dict[str, Any]:
    return {
        "publicKeyPem": public_key_pem(ec.generate_private_key(ec.SECP256R1())),
        "clusterName": "cluster1",
        "rootCertPem": root[0],
        "rootKeyPem": root[1],
        "validityDays": 3650,
        "renewBeforeDays": 30,
        **overrides,
    }


def test_the_plugins_certificate_is_an_istio_intermediate_and_never_returns_the_root_key() -> None:
    root = ec_root_ca()
    id_, outs = create(_plugin_props(root), now=NOW)
    cert = x509.load_pem_x509_certificate(outs["certPem"].encode())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert cert.issuer == root[2].subject and id_ == outs["serial"] == f"{cert.serial_number:x}"
    assert "rootKeyPem" not in outs
    assert outs["notAfter"] == cert.not_valid_after_utc.isoformat()


def test_the_plugins_certificate_is_replaced_on_any_input_change_and_on_renewal() -> None:
    root = ec_root_ca()
    props = _plugin_props(root)
    _, outs = create(props, now=NOW)
    assert diff(outs, dict(props)) == []
    for key, value in (("clusterName", "cluster9"), ("validityDays", 730), ("rootCertPem", ec_root_ca()[0])):
        assert diff(outs, {**props, key: value}) == [key]
    assert diff(outs, {**props, "renewBeforeDays": 1}) == []  # alone, never a reason
    # Within the renewal window (the certificate ends in 10 days), the next `up` signs again.
    near = {**outs, "notAfter": (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=10)).isoformat()}
    assert diff(near, dict(props)) == ["notAfter"]
    assert diff(near, {**props, "renewBeforeDays": 0}) == []


def test_the_plugin_names_bad_inputs() -> None:
    failures = check_inputs({"clusterName": "", "validityDays": 0, "renewBeforeDays": 1.5, "publicKeyPem": "x"})
    assert ("clusterName", "clusterName must be a non-empty string") in failures
    assert ("rootCertPem", "rootCertPem is required") in failures
    assert any(p == "validityDays" for p, _ in failures) and any(p == "renewBeforeDays" for p, _ in failures)
    assert not [p for p, _ in failures if p == "publicKeyPem"]


def test_the_plugin_judges_only_known_inputs() -> None:
    """In a preview the key and the root are not known yet: what the engine sends for them (an unknown, or
    an output value the SDK deserializes to an object) is no reason to fail."""
    from pulumi.runtime import rpc

    unknown: dict[str, Any] = {
        "publicKeyPem": rpc.UNKNOWN,
        "clusterName": "cluster1",
        "rootCertPem": object(),  # an output value
        "rootKeyPem": object(),
        "validityDays": 3650,
        "renewBeforeDays": 30,
    }
    assert check_inputs(unknown) == []


@pytest.mark.parametrize("argv", [["--schema"]])
def test_the_plugin_prints_its_schema(argv: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "istio_mesh.plugin", *argv], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out)["name"] == "istiomesh"


LAUNCHER = ROOT / "components" / "plugin" / "pulumi-resource-istiomesh"


def test_the_launcher_runs_the_plugin_with_the_python_it_is_given() -> None:
    env = {"PATH": "/usr/bin:/bin", "ISTIO_MESH_PYTHON": sys.executable}
    out = subprocess.run([str(LAUNCHER), "--schema"], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == json.loads(SCHEMA_FILE.read_text())


def test_the_launcher_says_what_to_do_without_a_python_that_has_the_package(tmp_path: Path) -> None:
    copy = tmp_path / "plugin" / "pulumi-resource-istiomesh"
    copy.parent.mkdir()
    copy.write_bytes(LAUNCHER.read_bytes())
    copy.chmod(0o755)
    run = subprocess.run([str(copy), "--schema"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout == ""
    assert "no Python with the istio-mesh package found" in run.stderr and "ISTIO_MESH_PYTHON" in run.stderr
