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
    with open(os.path.join(ROOT, "requirements.txt"), encoding="utf-8") as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    assert lines and all("==" in ln for ln in lines), lines


def test_lab_stack_installs_the_pinned_istio_release() -> None:
    import yaml

    with open(os.path.join(ROOT, "Pulumi.cluster-lab.yaml"), encoding="utf-8") as fh:
        stack = yaml.safe_load(fh)["config"]
    assert stack["istio-mesh:istio"]["version"] == _pins()["ISTIO_VERSION"]
    assert stack["pulumi:disable-default-providers"] == ["kubernetes"]
