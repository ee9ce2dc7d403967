"""The package from other Pulumi languages, on a two-cluster lab: the engine runs the ``istiomesh`` plugin
(``components/plugin``), which answers with the checked-in schema; the TypeScript example
(``examples/typescript``) previews the mesh through it; the Pulumi YAML example (``examples/yaml``)
builds it, ``verify`` passes on what it built, a no-op preview is quiet, its state keeps every
credential encrypted, and ``destroy`` removes every object.

Tests run in file order and share one lab; the YAML tests share one stack (the example copied to a scratch
directory and given the package by ``pulumi package add`` of the plugin's executable, its config set from the
lab's kubeconfigs; the TypeScript example keeps its own entry, the plugin's directory, made absolute).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from harness import LAB_DIR, ROOT, Lab, Stack, core, run, run_verify, started_lab, wait_for

EXAMPLE = ROOT / "examples" / "yaml"
PLUGIN_DIR = ROOT / "components" / "plugin"
CLUSTERS = ("cluster1", "cluster2")
NETWORK = {"cluster1": "network1", "cluster2": "network2"}
LB_IP = {"cluster1": "198.19.200.1", "cluster2": "198.19.200.2"}  # the lab's load balancer
OTHER = {"cluster1": "cluster2", "cluster2": "cluster1"}
MANAGED_BY = ("example.com/managed-by", "mesh-example-yaml")


@pytest.fixture(scope="module")
def lab(tc_env: dict[str, str]) -> Iterator[Lab]:
    yield from started_lab(tc_env, clusters=2)


@pytest.fixture(scope="module")
def project(tc_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example as a user gets it with the package manager: its Pulumi.yaml without the ``packages:``
    entry, then ``pulumi package add`` of the plugin's executable, which records ``istiomesh@<version>``
    (the engine then finds the plugin on PATH: the stack's environment puts components/plugin there).
    The example's own entry (the plugin's directory, which this CLI cannot add) is what the TypeScript
    preview uses."""
    doc = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
    assert doc.pop("packages") == {"istiomesh": "../../components/plugin"}
    assert (EXAMPLE / "../../components/plugin").resolve() == PLUGIN_DIR
    project = tmp_path_factory.mktemp("yaml-example")
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    # The command needs no backend; a scratch one keeps it off the caller's.
    env = {**tc_env, "PULUMI_BACKEND_URL": f"file://{tmp_path_factory.mktemp('package-add-state')}"}
    run(
        ["pulumi", "package", "add", str(PLUGIN_DIR / "pulumi-resource-istiomesh"), "--non-interactive"],
        env,
        cwd=project,
    )
    added = yaml.safe_load((project / "Pulumi.yaml").read_text())
    version = json.loads((ROOT / "components" / "istio_mesh" / "schema.json").read_text())["version"]
    assert added.pop("packages") == {"istiomesh": f"istiomesh@{version}"}
    assert added == doc  # the command changed nothing else
    # The lab's pods run upstream Envoy: the mesh gets the chart values the lab stacks give it for that
    # (the package's `istio.values`, taken from the lab stack: one source).
    lab_istio = yaml.safe_load((ROOT / "Pulumi.cluster-lab.yaml").read_text())["config"]["istio-mesh:istio"]
    written = yaml.safe_load((project / "Pulumi.yaml").read_text())
    written["resources"]["mesh"]["properties"]["istio"]["values"] = lab_istio["values"]
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    return project


def _server(cluster: str) -> str:
    kubeconfig = yaml.safe_load((LAB_DIR / cluster / "kubeconfig").read_text())
    return str(kubeconfig["clusters"][0]["cluster"]["server"])


def _configure(stack: Stack, tc_env: dict[str, str]) -> None:
    """The examples' config for the lab: kubeconfigs as secrets (given on stdin, so no command line or
    log shows them), API server addresses, the toolchain's charts, loopback addresses allowed."""
    for c in CLUSTERS:
        kubeconfig = (LAB_DIR / c / "kubeconfig").read_text()
        cmd = ["pulumi", "config", "set", "--secret", f"{c}Kubeconfig", "--stack", stack.name, "--non-interactive"]
        run(cmd, stack.env, cwd=stack.project, input_text=kubeconfig)
        stack.cli("config", "set", f"{c}ApiServer", _server(c))
    stack.cli("config", "set", "chartDirectory", tc_env["ISTIO_MESH_CHARTS"])
    stack.cli("config", "set", "loopbackApiServers", "true")
    stack.cli("config", "set", "protectRootCA", "false")


@pytest.fixture(scope="module")
def stack(lab: Lab, project: Path, tc_env: dict[str, str], e2e_backend: Path) -> Iterator[Stack]:
    env = {**tc_env, "PATH": f"{PLUGIN_DIR}{os.pathsep}{tc_env['PATH']}"}
    s = Stack("lab", env, e2e_backend / "yaml", project=project)
    s.init()
    _configure(s, tc_env)
    yield s
    s.cli("destroy", "--yes", "--skip-preview", check=False)
    s.remove()


def _engine_form(value: Any, nested: bool = False) -> Any:
    """A schema as the engine re-serializes it: element types (``items``, ``additionalProperties``) carry
    no description of their own."""
    if isinstance(value, dict):
        return {
            k: _engine_form(v, k in ("items", "additionalProperties"))
            for k, v in value.items()
            if not (nested and k == "description")
        }
    if isinstance(value, list):
        return [_engine_form(v) for v in value]
    return value


def test_the_engine_gets_the_checked_in_schema_from_the_plugin(stack: Stack) -> None:
    got = json.loads(
        run(["pulumi", "package", "get-schema", str(PLUGIN_DIR / "pulumi-resource-istiomesh")], stack.env).stdout
    )
    want = _engine_form(json.loads((ROOT / "components" / "istio_mesh" / "schema.json").read_text()))
    assert got["name"] == want["name"] == "istiomesh" and got["version"] == want["version"]
    assert got["resources"] == want["resources"]
    assert got["types"] == want["types"]


def test_the_typescript_example_previews_the_mesh_on_the_lab(
    lab: Lab, tc_env: dict[str, str], e2e_backend: Path, tmp_path: Path
) -> None:
    """examples/typescript with the SDK `pulumi package add` generates (here written by the toolchain's
    pulumi-sdkgen-nodejs: test_package_add.py shows the command writes the same files) and @pulumi/pulumi
    from npm: `pulumi preview` on the empty lab plans the mesh through the plugin."""
    project = tmp_path / "typescript"
    project.mkdir()
    for name in ("Pulumi.yaml", "package.json", "tsconfig.json", "index.ts"):
        (project / name).write_text((ROOT / "examples" / "typescript" / name).read_text())
    doc = yaml.safe_load((project / "Pulumi.yaml").read_text())
    assert doc["packages"]["istiomesh"] == "../../components/plugin"
    doc["packages"]["istiomesh"] = str(PLUGIN_DIR)
    (project / "Pulumi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    schema = ROOT / "components" / "istio_mesh" / "schema.json"
    run(["pulumi-sdkgen-nodejs", "-local", str(schema), str(project / "sdks" / "istiomesh")], tc_env)
    t0 = time.monotonic()
    run(["npm", "install", "--no-audit", "--no-fund"], tc_env, cwd=project, timeout=900)
    print(f"npm install (TypeScript example): {time.monotonic() - t0:.1f}s", file=sys.stderr)
    ts = Stack("lab", tc_env, e2e_backend / "typescript", project=project)
    ts.init()
    _configure(ts, tc_env)
    t0 = time.monotonic()
    steps = ts.preview_steps()
    print(f"pulumi preview from empty (TypeScript example): {time.monotonic() - t0:.1f}s", file=sys.stderr)
    creates = [st["urn"].split("::")[-2].rsplit("$", 1)[-1] for st in steps if st["op"] == "create"]
    assert creates.count("istiomesh:index:MultiPrimaryMesh") == 1
    assert creates.count("istiomesh:index:IntermediateCertificate") == 2  # signed by the plugin
    assert creates.count("kubernetes:helm.sh/v4:Chart") == 6
    assert not [st for st in steps if st["op"] not in ("create", "same")], [st["op"] for st in steps]
    ts.remove()


def test_the_yaml_example_builds_the_mesh(stack: Stack) -> None:
    t0 = time.monotonic()
    stack.up()
    print(f"pulumi up from empty (YAML example): {time.monotonic() - t0:.1f}s", file=sys.stderr)
    out = stack.outputs()
    for c in CLUSTERS:
        assert out["clusters"][c] == {
            "network": NETWORK[c],
            "eastWestGatewayAddress": LB_IP[c],
            "remoteSecrets": [f"istio-remote-secret-{OTHER[c]}"],
        }
        names = {s.metadata.name for s in core(c).list_namespaced_secret("istio-system").items}
        assert {"cacerts", f"istio-remote-secret-{OTHER[c]}", f"istio-mesh-reader-token-{OTHER[c]}"} <= names
        ns = core(c).read_namespace("istio-system")
        assert ns.metadata.labels["topology.istio.io/network"] == NETWORK[c]
        assert ns.metadata.labels[MANAGED_BY[0]] == MANAGED_BY[1]  # the example's extra label, on everything
        cacerts = core(c).read_namespaced_secret("cacerts", "istio-system")
        assert cacerts.metadata.labels[MANAGED_BY[0]] == MANAGED_BY[1]
        ca = x509.load_pem_x509_certificate(base64.b64decode(cacerts.data["ca-cert.pem"]))
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca and constraints.path_length == 0
        assert ca.issuer.rfc4514_string() == "CN=Root CA,O=Istio"
        root = x509.load_pem_x509_certificate(out["rootCertificatePem"].encode())
        ca.verify_directly_issued_by(root)
    types = {r["type"] for r in stack.export()["deployment"]["resources"]}
    # Signed by the plugin's own resource: no Python dynamic provider is needed from YAML.
    assert "istiomesh:index:IntermediateCertificate" in types
    assert not [t for t in types if t.startswith("pulumi-python:dynamic")]


def test_a_no_op_preview_of_the_yaml_example_shows_no_changes(stack: Stack) -> None:
    stack.cli("preview", "--expect-no-changes")


def _verify(stack: Stack, config: Path, root: Path) -> dict[str, Any]:
    return run_verify(["--config", str(config), "--root-cert", str(root), "--lab"], stack.env)


def test_verify_passes_on_what_the_yaml_example_built(lab: Lab, stack: Stack, tmp_path: Path) -> None:
    """The same proof as for the Python program: each istiod syncs its peer, signs with the mesh root,
    knows both gateways and sees helloworld in both clusters."""
    config = tmp_path / "mesh.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "meshId": "mesh1",
                "lab": True,
                "clusters": [
                    {"name": c, "network": NETWORK[c], "kubeconfig": str(LAB_DIR / c / "kubeconfig"), "context": c}
                    for c in CLUSTERS
                ],
            }
        )
    )
    root = tmp_path / "root.pem"
    root.write_text(stack.outputs()["rootCertificatePem"])
    lab.istiod("start")
    t0 = time.monotonic()
    last: dict[str, Any] = {}

    def ok() -> bool:
        last.update(_verify(stack, config, root))
        return bool(last["ok"])

    try:
        wait_for("verify to pass on the YAML example's mesh", ok, timeout=180, interval=3)
    except Exception:
        raise AssertionError(f"verify still fails:\n{json.dumps(last, indent=1)[-4000:]}") from None
    finally:
        lab.istiod("stop")
    print(f"verify passed after {time.monotonic() - t0:.1f}s", file=sys.stderr)


def test_the_yaml_state_keeps_every_credential_encrypted(stack: Stack) -> None:
    """The kubeconfigs given as secret config, the CA keys and the reader tokens: only ciphertext in every
    file of the backend and in `pulumi stack export`."""
    needles: dict[str, str] = {}
    for c in CLUSTERS:
        admin = yaml.safe_load((LAB_DIR / c / "kubeconfig").read_text())
        needles[f"{c} admin client key"] = admin["users"][0]["user"]["client-key-data"]
        token = core(c).read_namespaced_secret(f"istio-mesh-reader-token-{OTHER[c]}", "istio-system").data["token"]
        needles[f"{c} reader token (base64)"] = token
        needles[f"{c} reader token"] = base64.b64decode(token).decode()
        cacerts = core(c).read_namespaced_secret("cacerts", "istio-system")
        needles[f"{c} intermediate key (base64)"] = cacerts.data["ca-key.pem"]
    texts = {str(f): f.read_text(errors="replace") for f in stack.state_files()}
    assert texts
    texts["pulumi stack export"] = stack.cli("stack", "export").stdout
    for where, text in texts.items():
        assert "PRIVATE KEY" not in text, where
        for what, needle in needles.items():
            assert needle not in text, f"{what} in plain text in {where}"


def _cluster_of(resource: dict[str, Any]) -> str:
    """The lab cluster a Kubernetes resource of the state was created in (its provider's name)."""
    (cluster,) = [c for c in CLUSTERS if f"mesh-{c}-provider" in resource["provider"]]
    return cluster


def _secret_exists(cluster: str, namespace: str, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core(cluster).read_namespaced_secret(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def test_destroy_removes_what_the_yaml_example_built(stack: Stack) -> None:
    secrets = [
        (_cluster_of(r), r["outputs"]["metadata"]["namespace"], r["outputs"]["metadata"]["name"])
        for r in stack.export()["deployment"]["resources"]
        if r.get("custom") and r["type"] == "kubernetes:core/v1:Secret"
    ]
    # Per cluster: cacerts, the reader token for the peer, the remote secret of the peer.
    assert len(secrets) == 6, secrets
    stack.cli("destroy", "--yes", "--skip-preview")
    assert not stack.export()["deployment"].get("resources")
    assert [s for s in secrets if _secret_exists(*s)] == []
