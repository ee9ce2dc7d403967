"""The Python SDKs must ask for exactly the provider plugins the toolchain builds."""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins() -> dict[str, str]:
    pins = {}
    with open(os.path.join(ROOT, "toolchain", "pins.env"), encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"^([A-Z0-9_]+)=(\S*)", line)
            if m:
                pins[m.group(1)] = m.group(2)
    return pins


def _requirements() -> dict[str, str]:
    reqs = {}
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
            if m:
                reqs[m.group(1).lower()] = m.group(2)
    return reqs


def test_sdk_versions_match_the_built_plugins() -> None:
    pins, reqs = _pins(), _requirements()
    assert reqs["pulumi-kubernetes"] == pins["PULUMI_KUBERNETES_VERSION"]
    assert reqs["pulumi-tls"] == pins["PULUMI_TLS_VERSION"]
    assert reqs["pulumi-random"] == pins["PULUMI_RANDOM_VERSION"]


def test_every_requirement_is_pinned() -> None:
    """Every third-party requirement is pinned; the one other line is this repository's own package."""
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    assert "-e ." in lines, lines
    others = [ln for ln in lines if ln != "-e ."]
    assert others and all("==" in ln for ln in others), others


def test_the_pins_satisfy_the_package_dependency_ranges() -> None:
    """The program pins, the package states ranges: each pin must be inside the package's range, or the
    program would test a combination the package does not allow."""
    import tomllib

    from packaging.requirements import Requirement

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        deps = [Requirement(d) for d in tomllib.load(fh)["project"]["dependencies"]]
    reqs = _requirements()
    assert deps
    for dep in deps:
        name = dep.name.lower()
        assert name in reqs, f"{dep.name} is a dependency of the package but requirements.txt does not pin it"
        assert dep.specifier.contains(reqs[name]), f"{dep.name}=={reqs[name]} is outside the package's {dep}"


def test_lab_stack_installs_the_pinned_istio_release() -> None:
    import yaml

    with open(os.path.join(ROOT, "Pulumi.cluster-lab.yaml"), encoding="utf-8") as fh:
        stack = yaml.safe_load(fh)["config"]
    assert stack["istio-mesh:istio"]["version"] == _pins()["ISTIO_VERSION"]
    assert stack["pulumi:disable-default-providers"] == ["kubernetes"]
