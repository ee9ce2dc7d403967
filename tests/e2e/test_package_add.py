"""``pulumi package add`` of the ``istiomesh`` plugin in the YAML and TypeScript examples, with the CLI and the
language hosts the toolchain builds (behind its language proxy, which answers ``GeneratePackage`` and ``Link`` for
the hosts that predate them). No lab: the command only asks the plugin for its schema.

Each example is copied to a scratch directory without its ``packages:`` entry (and, for TypeScript, without the
SDK dependency in ``package.json``). The command must write the ``packages:`` entry (``istiomesh@<version>`` in
both languages: the CLI records a plugin named by its executable by name and version), for YAML the package's lock
file under ``sdks/``, for TypeScript the SDK the CLI's own generator writes (byte for byte what
``pulumi-sdkgen-nodejs -local`` writes) and the example's own dependency line, installed, so that ``index.ts``
type-checks against it.

The plugin is named by its executable, as its header says. A plugin *directory* is what the examples' ``packages:``
entries name, but CLI 3.260.0 cannot add one that holds only an executable: it looks the directory up under an
empty package name and asks for a ``PulumiPlugin.yaml`` (a plugin written in a Pulumi language), before any
language host is involved. The last test asserts exactly that refusal.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml
from harness import ROOT, run

PLUGIN_DIR = ROOT / "components" / "plugin"
PLUGIN = PLUGIN_DIR / "pulumi-resource-istiomesh"
SCHEMA = ROOT / "components" / "istio_mesh" / "schema.json"
EXAMPLES = ROOT / "examples"
NEEDED = ("pulumi", "pulumi-language-yaml", "pulumi-language-yaml-host", "pulumi-language-nodejs",
          "pulumi-language-nodejs-host", "pulumi-sdkgen-nodejs")  # fmt: skip


@pytest.fixture(scope="module")
def env(tc_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The toolchain's environment with a scratch file backend (the command needs none, but must not touch
    the caller's)."""
    bin_dir = Path(tc_env["ISTIO_MESH_TOOLCHAIN"]) / "bin"
    missing = [b for b in NEEDED if not (bin_dir / b).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing in {bin_dir}: run `toolchain/build`", pytrace=False)
    backend = tmp_path_factory.mktemp("pulumi-state")
    return {**tc_env, "PULUMI_BACKEND_URL": f"file://{backend}", "PULUMI_CONFIG_PASSPHRASE": "package-add"}


@pytest.fixture(scope="module")
def version() -> str:
    return str(json.loads(SCHEMA.read_text())["version"])


def _project(example: str, dest: Path) -> dict[str, object]:
    """Copies an example's files into ``dest`` without its ``packages:`` entry; returns the rest of its Pulumi.yaml."""
    dest.mkdir(parents=True)
    for f in (EXAMPLES / example).iterdir():
        if f.is_file() and f.name != ".gitignore":
            shutil.copy(f, dest / f.name)
    doc = yaml.safe_load((dest / "Pulumi.yaml").read_text())
    assert doc.pop("packages") == {"istiomesh": "../../components/plugin"}
    (dest / "Pulumi.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return doc


def _add(source: str, project: Path, env: dict[str, str]) -> str:
    t0 = time.monotonic()
    proc = run(["pulumi", "package", "add", source, "--non-interactive"], env, cwd=project, timeout=600)
    print(f"pulumi package add {source} ({project.name}): {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative"])
def test_package_add_completes_in_the_yaml_example(
    relative: bool, env: dict[str, str], version: str, tmp_path: Path
) -> None:
    project = tmp_path / "yaml"
    rest = _project("yaml", project)
    source = os.path.relpath(PLUGIN, project) if relative else str(PLUGIN)
    out = _add(source, project, env)
    doc = yaml.safe_load((project / "Pulumi.yaml").read_text())
    # The CLI records a plugin named by its executable as name@version (a directory keeps its path).
    assert doc.pop("packages") == {"istiomesh": f"istiomesh@{version}"}
    assert doc == rest
    lock = yaml.safe_load((project / "sdks" / "istiomesh" / f"istiomesh-{version}.yaml").read_text())
    assert (lock["name"], lock["version"]) == ("istiomesh", version)
    # Link's instructions name the component's type, from the schema the CLI hands over.
    assert "type: istiomesh:index:MultiPrimaryMesh" in out, out


def test_package_add_links_and_installs_the_sdk_in_the_typescript_example(
    env: dict[str, str], version: str, tmp_path: Path
) -> None:
    project = tmp_path / "typescript"
    rest = _project("typescript", project)
    manifest = json.loads((project / "package.json").read_text())
    assert manifest["dependencies"].pop("@pulumi/istiomesh") == "file:sdks/istiomesh"
    (project / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")

    out = _add(str(PLUGIN), project, env)
    doc = yaml.safe_load((project / "Pulumi.yaml").read_text())
    assert doc.pop("packages") == {"istiomesh": f"istiomesh@{version}"}
    assert doc == rest
    # Link wrote the example's own dependency line back, in npm's order, and left the rest as it was.
    assert (project / "package.json").read_text() == (EXAMPLES / "typescript" / "package.json").read_text()
    assert 'import * as istiomesh from "@pulumi/istiomesh";' in out, out

    # The SDK is what the CLI's generator writes for a local package; npm added only its build output.
    gen = tmp_path / "sdkgen"
    run(["pulumi-sdkgen-nodejs", "-local", str(SCHEMA), str(gen)], env)
    sdk = project / "sdks" / "istiomesh"
    want = sorted(p.relative_to(gen) for p in gen.rglob("*") if p.is_file())
    got = sorted(
        p.relative_to(sdk)
        for p in sdk.rglob("*")
        if p.is_file() and p.relative_to(sdk).parts[0] not in ("bin", "node_modules")
    )
    assert got == want and len(want) == 14
    assert [p for p in want if (sdk / p).read_bytes() != (gen / p).read_bytes()] == []
    assert json.loads((sdk / "package.json").read_text())["version"] == version

    # Installed: npm links the SDK and ran its postinstall (tsc), and @pulumi/pulumi is there.
    assert (project / "node_modules" / "@pulumi" / "istiomesh").resolve() == sdk
    assert (sdk / "bin" / "index.js").is_file() and (sdk / "bin" / "multiPrimaryMesh.d.ts").is_file()
    assert (project / "node_modules" / "@pulumi" / "pulumi" / "package.json").is_file()

    # index.ts type-checks against the SDK, and the SDK's types are real: a wrong input is rejected.
    (project / "wrong.ts").write_text(
        'import * as istiomesh from "@pulumi/istiomesh";\n\n'
        'new istiomesh.MultiPrimaryMesh("wrong", { meshId: 42, clusters: [] });\n'
    )
    (project / "tsconfig.check.json").write_text(
        json.dumps(
            {"extends": "./tsconfig.json", "compilerOptions": {"skipLibCheck": True}, "files": ["index.ts", "wrong.ts"]}
        )
    )
    tsc = str(project / "node_modules" / ".bin" / "tsc")
    proc = run([tsc, "--noEmit", "--pretty", "false", "-p", "tsconfig.check.json"], env, cwd=project, check=False)
    errors = re.findall(r"^(\S+)\((\d+),\d+\): error (TS\d+)", proc.stdout, re.M)
    assert errors == [("wrong.ts", "3", "TS2322")], proc.stdout + proc.stderr


def test_the_cli_adds_the_plugin_by_its_executable_not_its_directory(env: dict[str, str], tmp_path: Path) -> None:
    """What the examples' entries name is the plugin's directory; CLI 3.260.0 refuses to add one that holds only
    an executable (it wants a PulumiPlugin.yaml). Asserted, so that a CLI that accepts it fails this test and the
    examples can then be produced by the command itself."""
    project = tmp_path / "yaml"
    _project("yaml", project)
    cmd = ["pulumi", "package", "add", str(PLUGIN_DIR), "--non-interactive"]
    proc = run(cmd, env, cwd=project, check=False)
    assert proc.returncode != 0, "the CLI now adds a plugin directory: write the examples' entries with it"
    assert 'to have an executable named "pulumi-resource-" or a PulumiPlugin file' in proc.stderr, proc.stderr
