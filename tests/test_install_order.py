"""Which comes first in a cluster, Istio's CRDs or istiod: the cluster's own answer (``install_order``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pulumi
import pytest

from istio_mesh import install_order
from istio_mesh.create_guard import ClusterObjects, GuardLookupError, ObjectRef

# The real question (the autouse ``istio_in_cluster`` fixture answers it for the mesh's unit tests).
ISTIO_PRESENT = install_order.istio_present
VIRTUAL_SERVICES = ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, install_order.PROBE_CRD)
ISTIOD = ObjectRef("apps/v1", "Deployment", "istio-system", "istiod")


class _Cluster(ClusterObjects):
    """A cluster holding exactly ``existing``; ``broken``: every lookup fails as an unreachable one does."""

    def __init__(self, existing: set[ObjectRef], broken: bool = False) -> None:
        super().__init__("cluster1", "", None)
        self.existing, self.broken = existing, broken
        self.asked: list[ObjectRef] = []

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.asked.append(ref)
        if self.broken:
            raise GuardLookupError("could not reach the API server of cluster 'cluster1'")
        return {"metadata": {"name": ref.name}} if ref in self.existing else None


def test_istio_is_there_when_its_crds_or_istiod_are() -> None:
    assert ISTIO_PRESENT(_Cluster({VIRTUAL_SERVICES})) is True
    assert ISTIO_PRESENT(_Cluster({ISTIOD})) is True  # CRDs deleted by hand, or a run that died: the safe order
    empty = _Cluster(set())
    assert ISTIO_PRESENT(empty) is False
    assert empty.asked == [VIRTUAL_SERVICES, ISTIOD]
    with pytest.raises(GuardLookupError):
        ISTIO_PRESENT(_Cluster(set(), broken=True))


def _crds_first(cluster: _Cluster | None) -> bool | None:
    async def value() -> bool | None:
        return await install_order.crds_first(cluster).future()

    return asyncio.run(value())


@pytest.mark.parametrize(
    ("cluster", "first"),
    [
        (_Cluster({VIRTUAL_SERVICES}), True),
        (_Cluster(set()), False),
        (_Cluster(set(), broken=True), True),
        (None, True),
    ],
    ids=["upgrade", "new-install", "cannot-tell", "no-kubeconfig"],
)
def test_the_crds_go_first_unless_the_cluster_says_it_has_no_istio(
    monkeypatch: pytest.MonkeyPatch, cluster: _Cluster | None, first: bool
) -> None:
    monkeypatch.setattr(install_order, "istio_present", ISTIO_PRESENT)
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *args, **kwargs: warnings.append(msg))
    assert _crds_first(cluster) is first
    warned = any("could not tell whether Istio is installed" in w for w in warnings)
    assert warned is (cluster is not None and cluster.broken)
