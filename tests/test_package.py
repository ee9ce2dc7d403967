"""The component library is a real distribution: ``istio-mesh``, import name ``istio_mesh``.

Its wheel is built here with the pinned backend (no build isolation, so no index is needed), and
installed into a fresh virtualenv that sees only the wheel and the package's dependencies: importing
every module from there must work and must import nothing of this repository's scripts, lab, verify or
tests.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "components" / "istio_mesh"
#: Top-level modules the package may import that are not in the standard library, each with the
#: distribution that provides it.
DISTRIBUTION_OF = {
    "pulumi": "pulumi",
    "pulumi_kubernetes": "pulumi-kubernetes",
    "pulumi_tls": "pulumi-tls",
    "cryptography": "cryptography",
    "yaml": "pyyaml",
    "kubernetes": "kubernetes",
    "grpc": "grpcio",
    "google": "protobuf",
}


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what the sdist would hold: setuptools writes build/ and *.egg-info in the tree.
    tree = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copytree(ROOT / "components", tree / "components", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), "."],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("istio_mesh-*.whl")
    return path


def test_the_build_backend_is_the_pinned_one() -> None:
    requires = _pyproject()["build-system"]["requires"]
    with open(ROOT / "requirements.txt", encoding="utf-8") as fh:
        pins = {ln.strip() for ln in fh if "==" in ln}
    assert requires == ["setuptools==80.9.0"] and set(requires) <= pins, requires


def test_the_wheel_holds_the_package_and_nothing_of_the_repository(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    version = _pyproject()["project"]["version"]
    assert top == {"istio_mesh", f"istio_mesh-{version}.dist-info"}, top
    modules = {n.removeprefix("istio_mesh/") for n in names if n.startswith("istio_mesh/")}
    assert modules == {p.name for p in SOURCE.iterdir() if p.suffix == ".py" or p.name in ("py.typed", "schema.json")}


def test_every_third_party_import_is_a_declared_dependency(wheel: Path) -> None:
    """An import the metadata does not declare would fail in a consumer's fresh environment."""
    imported: set[str] = set()
    for path in SOURCE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"istio_mesh", "__future__"}
    unknown = third_party - set(DISTRIBUTION_OF)
    assert not unknown, f"imports with no known distribution: {sorted(unknown)}"
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        declared = {
            Requirement(line.split(":", 1)[1].strip()).name.lower()
            for line in zf.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:")
        }
    assert {DISTRIBUTION_OF[m] for m in third_party} == declared, (sorted(third_party), sorted(declared))


def test_a_fresh_virtualenv_imports_every_module_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    # The dependencies come from this checkout's virtualenv, appended after the fresh site-packages (a
    # path in a .pth file: the editable install's own .pth in there is not processed, so the checkout's
    # components/ stays out of sys.path).
    fresh = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(fresh, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = """
import importlib, json, pkgutil, sys
import istio_mesh
for m in pkgutil.iter_modules(istio_mesh.__path__):
    importlib.import_module("istio_mesh." + m.name)
print(json.dumps({"file": istio_mesh.__file__, "all": sorted(istio_mesh.__all__),
                  "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    run = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["file"].startswith(fresh), seen["file"]
    assert {"MultiPrimaryMesh", "RootCA", "ClusterCA", "IstioControlPlane", "EastWestGateway"} <= set(seen["all"])
    assert "RemoteSecretPair" in seen["all"]
    repository = {
        "components",
        "stack_config",
        "lab",
        "verify",
        "tests",
        "bench",
        "scripts",
        "toolchain",
        "conftest",
        "support",
    }
    assert not repository & set(seen["modules"]), sorted(repository & set(seen["modules"]))


def test_the_package_imports_a_module_only_when_one_of_its_names_is_used() -> None:
    """``import istio_mesh.constants`` (verify, the lab) does not import Pulumi; ``istio_mesh.X`` still
    resolves every public name, and a name the package does not have is an AttributeError."""
    probe = (
        "import sys, istio_mesh.constants\n"
        "assert 'pulumi' not in sys.modules, sorted(m for m in sys.modules if m.startswith('pulumi'))\n"
        "import istio_mesh\n"
        "assert istio_mesh.MultiPrimaryMesh.__module__ == 'istio_mesh.multi_primary_mesh'\n"
        "assert 'pulumi' in sys.modules\n"
        "assert set(istio_mesh.__all__) <= set(dir(istio_mesh))\n"
        "for name in istio_mesh.__all__: getattr(istio_mesh, name)\n"
        "try:\n    istio_mesh.NoSuchThing\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "module 'istio_mesh' has no attribute 'NoSuchThing'"
