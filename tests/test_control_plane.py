"""Istio in each cluster (``IstioControlPlane``): the network label, istiod's values, chart sources,
install order, istiod's rollout on a new ``cacerts``, and the transforms that keep refresh quiet.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

import pulumi
from support.mesh import CHART, CRD, GATEWAY_CR, NAMESPACE, SECRET, WEBHOOK, build

from istio_mesh import constants as c
from istio_mesh.transforms import delete_crds_on_destroy


def test_istiod_starts_only_after_cacerts_and_base(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for cluster in ("cluster1", "cluster2"):
        istiod = rec.one(CHART, name_contains=f"mesh-{cluster}-istiod")
        cacerts = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        base = rec.one(CHART, name_contains=f"mesh-{cluster}-base")
        assert rec.depends_on(istiod, cacerts)
        assert rec.depends_on(istiod, base)
        # And not on the other cluster's CA: each istiod waits for its own.
        other = rec.one(
            SECRET, "istio-system/cacerts", name_contains="-cluster2-" if cluster == "cluster1" else "-cluster1-"
        )
        assert not rec.depends_on(istiod, other)


def test_in_a_cluster_without_istio_istiod_goes_first_and_the_crds_during_its_rollout(
    mesh_settings: Any, istio_in_cluster: dict[str, bool]
) -> None:
    """Istio's CRDs before istiod is the upgrade order; where the cluster has no Istio yet, istiod goes
    first (still after cacerts) and the CRDs wait for it, in that cluster only."""
    istio_in_cluster["cluster2"] = False
    rec = build(mesh_settings())
    upgraded, new = ("cluster1", "cluster2")
    for cluster in (upgraded, new):
        istiod = rec.one(CHART, name_contains=f"mesh-{cluster}-istiod")
        base = rec.one(CHART, name_contains=f"mesh-{cluster}-base")
        cacerts = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        assert rec.depends_on(istiod, cacerts)
        assert rec.depends_on(istiod, base) is (cluster == upgraded)
        assert rec.depends_on(base, istiod) is (cluster == new)
        # What needs a CRD still waits for the base chart: the cross-network Gateway. The gateway's chart
        # (no Istio kind in it) waits for istiod only, so in a new install it does not wait for the CRDs.
        assert rec.depends_on(rec.one(GATEWAY_CR, name_contains=f"-{cluster}-"), base)
        gateway_chart = rec.one(CHART, name_contains=f"mesh-{cluster}-eastwest")
        assert rec.depends_on(gateway_chart, istiod) and not rec.depends_on(gateway_chart, base)


def test_istiod_rolls_whenever_cacerts_is_recreated(mesh_settings: Any) -> None:
    """istiod reads a plugged-in CA only at start-up: its pod template carries the cacerts Secret's uid."""
    rec = build(mesh_settings())
    for cluster in ("cluster1", "cluster2"):
        patch = rec.one("kubernetes:apps/v1:DeploymentPatch", "istio-system/istiod", name_contains=f"-{cluster}-")
        cacerts = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        istiod = rec.one(CHART, name_contains=f"mesh-{cluster}-istiod")
        annotations = patch.inputs["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"istio-mesh.dev/cacerts-uid": f"uid-{cacerts.name}"}
        assert rec.depends_on(patch, cacerts) and rec.depends_on(patch, istiod)
        assert rec.provider_of(patch) == rec.provider_of(cacerts) == f"k8s-{cluster}"


def test_istio_system_is_labelled_with_the_clusters_network(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for cluster, network in (("cluster1", "network1"), ("cluster2", "network2")):
        ns = rec.one(NAMESPACE, "istio-system", name_contains=f"-{cluster}-")
        assert ns.inputs["metadata"]["labels"] == {"topology.istio.io/network": network}
        # `up --refresh` takes the label back even from another field manager (kubectl label ...).
        assert ns.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
        assert rec.provider_of(ns) == f"k8s-{cluster}"


def test_istiod_values_carry_mesh_id_cluster_name_and_network(mesh_settings: Any) -> None:
    rec = build(mesh_settings(istio={"version": "1.30.4", "hub": "registry.example/istio", "tag": "1.28.0-distroless"}))
    for cluster, network in (("cluster1", "network1"), ("cluster2", "network2")):
        istiod = rec.one(CHART, name_contains=f"mesh-{cluster}-istiod")
        g = istiod.inputs["values"]["global"]
        assert g["meshID"] == "mesh1"
        assert g["multiCluster"]["clusterName"] == cluster
        assert g["network"] == network
        assert (g["hub"], g["tag"]) == ("registry.example/istio", "1.28.0-distroless")
        assert istiod.inputs["chart"] == "istiod"
        assert istiod.inputs["namespace"] == "istio-system"
        assert istiod.inputs["version"] == "1.30.4"
        assert istiod.inputs["repositoryOpts"]["repo"] == c.DEFAULT_CHART_REPOSITORY
        base = rec.one(CHART, name_contains=f"mesh-{cluster}-base")
        assert base.inputs["chart"] == "base"
        assert rec.provider_of(istiod) == rec.provider_of(base) == f"k8s-{cluster}"
        # istiod's Service is not awaited (its Deployment is: the chart completes when istiod's pods are
        # ready). Set on the rendered Service, not through the chart's values: those are copied into the
        # `values` ConfigMap, which a new value would replace in every existing stack.
        assert "serviceAnnotations" not in istiod.inputs["values"]
        svc = rec.rendered(
            istiod, "kubernetes:core/v1:Service", {"metadata": {"labels": {"app": "istiod"}}}, name="istiod"
        )
        assert svc.props["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
        assert svc.props["metadata"]["labels"] == {"app": "istiod"}
        # An object that says how it is awaited keeps it.
        own = {"metadata": {"annotations": {"pulumi.com/timeoutSeconds": "60"}}}
        kept = rec.rendered(istiod, "kubernetes:core/v1:Service", own, name="other")
        assert kept.props["metadata"]["annotations"]["pulumi.com/timeoutSeconds"] == "60"
        assert "pulumi.com/skipAwait" not in kept.props["metadata"]["annotations"]


def test_charts_come_from_a_local_directory_when_configured(mesh_settings: Any, tmp_path: Any) -> None:
    for chart_name in ("base", "istiod", "gateway"):
        (tmp_path / "charts" / chart_name).mkdir(parents=True)
        (tmp_path / "charts" / chart_name / "Chart.yaml").write_text(f"name: {chart_name}\n")
    rec = build(mesh_settings(istio={"chartDirectory": str(tmp_path / "charts")}))
    charts = rec.of_type(CHART)
    assert len(charts) == 6
    for chart in charts:
        assert chart.inputs["chart"].startswith(str(tmp_path / "charts") + "/")
        assert "repositoryOpts" not in chart.inputs


def _webhook_props() -> dict[str, Any]:
    return {
        "metadata": {"name": "istiod-default-validator", "labels": {"app": "istiod"}},
        "webhooks": [{"name": "rev.validation.istio.io", "failurePolicy": "Ignore"}],
    }


def test_runtime_webhook_fields_are_not_drift(mesh_settings: Any) -> None:
    """istiod's caBundle is ignored on every webhook configuration. The validators keep the chart's install
    value failurePolicy Ignore (a validator that fails closed before istiod is reachable would reject the
    program's own Gateway), ignored once istiod switches it to Fail, and force their fields on update
    (otherwise the recorded Ignore would be a server-side-apply conflict with pilot-discovery)."""
    rec = build(mesh_settings())
    for name in ("mesh-cluster1-base", "mesh-cluster1-istiod"):
        webhook = rec.rendered(rec.one(CHART, name_contains=name), WEBHOOK, _webhook_props())
        assert webhook.opts.ignore_changes == ["webhooks[*].clientConfig.caBundle", "webhooks[*].failurePolicy"]
        assert webhook.props["webhooks"] == [{"name": "rev.validation.istio.io", "failurePolicy": "Ignore"}]
        assert webhook.props["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"
        assert webhook.props["metadata"]["name"] == _webhook_props()["metadata"]["name"]
        mutating = rec.rendered(
            rec.one(CHART, name_contains=name),
            "kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration",
            {"metadata": {"name": "istio-sidecar-injector"}, "webhooks": [{"name": "sidecar-injector.istio.io"}]},
        )
        assert mutating.props["webhooks"] == [{"name": "sidecar-injector.istio.io"}]
        assert mutating.opts.ignore_changes == ["webhooks[*].clientConfig.caBundle"]
        assert "pulumi.com/patchForce" not in (mutating.props["metadata"].get("annotations") or {})
    # Anything else is left alone, so real out-of-band changes are still reported.
    deployment = rec.rendered(rec.one(CHART, name_contains="mesh-cluster1-istiod"), "kubernetes:apps/v1:Deployment", {})
    assert not deployment.opts.ignore_changes


def test_crds_are_kept_on_destroy_unless_the_stack_opts_out(mesh_settings: Any) -> None:
    keep = pulumi.ResourceOptions(retain_on_delete=True)  # what the chart's resource-policy: keep gives
    props = {"metadata": {"name": "gateways.networking.istio.io", "annotations": {"helm.sh/resource-policy": "keep"}}}
    kept = build(mesh_settings())
    crd = kept.rendered(kept.one(CHART, name_contains="mesh-cluster1-base"), CRD, props, keep)
    assert crd.opts.retain_on_delete is True
    assert crd.props["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    lab = build(mesh_settings(istio={"keepCRDs": False}))
    crd = lab.rendered(lab.one(CHART, name_contains="mesh-cluster1-base"), CRD, props, keep)
    assert crd.opts.retain_on_delete is False
    assert "helm.sh/resource-policy" not in crd.props["metadata"]["annotations"]
    # The rule alone: no empty annotations map left behind (it would differ from the live object).
    result = delete_crds_on_destroy(pulumi.ResourceTransformArgs(True, CRD, "gateways", props, keep))
    assert result is not None and result.props["metadata"] == {"name": "gateways.networking.istio.io"}
    other = pulumi.ResourceTransformArgs(
        custom=True, type_="kubernetes:core/v1:ConfigMap", name="x", props={}, opts=pulumi.ResourceOptions()
    )
    assert delete_crds_on_destroy(other) is None
