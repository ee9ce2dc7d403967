"""Fixtures of the unit tests: each cluster answers that Istio is in it, kubeconfigs for n clusters, and
parsed settings for a mesh of n clusters. The recording mocks and the other helpers are in ``support``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.program import write_kubeconfig


@pytest.fixture(autouse=True)
def istio_in_cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The program asks each cluster whether Istio is in it (``install_order``); unit tests have no
    clusters, so each answers yes (the upgrade order: CRDs first) unless a test sets its answer here."""
    from istio_mesh import install_order

    answers: dict[str, bool] = {}
    monkeypatch.setattr(install_order, "istio_present", lambda lookup: answers.get(lookup.cluster, True))
    return answers


@pytest.fixture
def kubeconfigs(tmp_path: Any) -> Iterator[Callable[[int], list[dict[str, Any]]]]:
    """Factory: ``kubeconfigs(n)`` writes n kubeconfigs and returns raw cluster config entries."""

    def make(n: int, networks: list[str] | None = None) -> list[dict[str, Any]]:
        entries = []
        for i in range(1, n + 1):
            name = f"cluster{i}"
            path = write_kubeconfig(str(tmp_path), name, f"https://10.0.{i}.1:6443")
            entries.append(
                {
                    "name": name,
                    "network": (networks or [f"network{j}" for j in range(1, n + 1)])[i - 1],
                    "kubeconfig": path,
                    "eastWestGateway": {"serviceType": "LoadBalancer", "externalIPs": [f"10.0.{i}.10"]},
                    # The walkthrough's samples: helloworld v1 in cluster1, v2 in cluster2, none elsewhere.
                    **({"helloworldVersions": [f"v{i}"]} if i <= 2 else {}),
                }
            )
        return entries

    yield make


@pytest.fixture
def mesh_settings(kubeconfigs: Callable[..., list[dict[str, Any]]]) -> Callable[..., Any]:
    """Factory: parsed settings for n clusters (each on its own network unless told otherwise)."""
    from stack_config import parse_settings

    def make(n: int = 2, networks: list[str] | None = None, **extra: Any) -> Any:
        raw = {"meshId": "mesh1", "clusters": kubeconfigs(n, networks), "samples": {"enabled": True}, **extra}
        return parse_settings(raw)

    return make
