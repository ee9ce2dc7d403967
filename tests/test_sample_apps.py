"""The walkthrough's samples (``SampleApps``): helloworld and sleep where the settings say, on each
cluster's network.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

from support.mesh import CHART, NAMESPACE, build


def test_samples_follow_the_walkthrough(mesh_settings: Any) -> None:
    settings = mesh_settings(3)
    rec = build(settings)
    deployments = {(rec.provider_of(r), r.k8s_name) for r in rec.of_type("kubernetes:apps/v1:Deployment")}
    assert deployments == {
        ("k8s-cluster1", "sample/helloworld-v1"),
        ("k8s-cluster2", "sample/helloworld-v2"),
        ("k8s-cluster1", "sample/sleep"),
        ("k8s-cluster2", "sample/sleep"),
        ("k8s-cluster3", "sample/sleep"),
    }
    # Each pod template names its cluster's network: the injector stamps that label at injection and istiod
    # reads it, so a network change must roll the pods (an update of their Deployment) to take effect.
    networks = {c.name: c.network for c in settings.clusters}
    assert len(set(networks.values())) == 3
    for d in rec.of_type("kubernetes:apps/v1:Deployment"):
        template_labels = d.inputs["spec"]["template"]["metadata"]["labels"]
        assert template_labels["topology.istio.io/network"] == networks[rec.provider_of(d).removeprefix("k8s-")]
        assert d.inputs["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        assert "topology.istio.io/network" not in d.inputs["spec"]["selector"]["matchLabels"]
        # ... and `up --refresh` takes a hand-changed label back (no server-side-apply conflict).
        assert d.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
    services = [r for r in rec.of_type("kubernetes:core/v1:Service") if r.k8s_name == "sample/helloworld"]
    assert len(services) == 3  # the name resolves in every cluster
    for svc in services:
        annotations = svc.inputs["metadata"].get("annotations") or {}
        # Not awaited: the Deployments' awaits cover the pods (and without a local version the endpoints
        # are only in other clusters).
        assert annotations == {"pulumi.com/skipAwait": "true"}
    for svc in [r for r in rec.of_type("kubernetes:core/v1:Service") if r.k8s_name == "sample/sleep"]:
        assert svc.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    for ns in [r for r in rec.of_type(NAMESPACE) if r.k8s_name == "sample"]:
        assert ns.inputs["metadata"]["labels"] == {"istio-injection": "enabled"}
        assert ns.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
        cluster = rec.provider_of(ns).removeprefix("k8s-")
        assert rec.depends_on(ns, rec.one(CHART, name_contains=f"mesh-{cluster}-istiod"))


def test_samples_are_off_by_default(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    rec = build(parse_settings({"meshId": "mesh1", "clusters": kubeconfigs(2)}))
    assert not rec.of_type("kubernetes:apps/v1:Deployment")
    assert not rec.of_type("istiomesh:index:SampleApps")
