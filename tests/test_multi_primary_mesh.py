"""The whole mesh (``MultiPrimaryMesh``): every object in its own cluster, secrets, outputs, one transform
callback per object, and the component type tokens.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

from typing import Any

from support.mesh import CHART, CRD, SECRET, WEBHOOK, build
from support.mocks import FAKE_TOKEN_PREFIX

from istio_mesh.create_guard import CREATED_BY_ANNOTATION
from istio_mesh.fingerprint import pem_fingerprint


def test_secrets_are_recreated_on_change_never_patched(mesh_settings: Any) -> None:
    """The provider's default (a Secret whose data changes is replaced): an in-place server-side apply
    would keep keys someone else added and fail on values someone else changed."""
    rec = build(mesh_settings())
    for reg in rec.of_type("pulumi:providers:kubernetes"):
        assert "enableSecretMutable" not in reg.inputs
    for reg in rec.of_type(SECRET):
        assert "immutable" not in reg.inputs


def test_every_kubernetes_object_is_bound_to_its_own_clusters_provider(mesh_settings: Any) -> None:
    rec = build(mesh_settings(3))
    k8s_objects = [r for r in rec.registrations if r.type.startswith("kubernetes:")]
    assert len(k8s_objects) > 40
    for reg in k8s_objects:
        provider = rec.provider_of(reg)
        assert provider in ("k8s-cluster1", "k8s-cluster2", "k8s-cluster3"), f"{reg.name} has no cluster provider"
        if "reader-token" in reg.name:
            expected = reg.name.split("-reader-token")[0].rsplit("-", 1)[-1]
        elif "-remote-secret-in-" in reg.name:
            expected = reg.name.rsplit("-in-", 1)[1]
        else:
            expected = reg.name.split("-")[1]  # mesh-<cluster>-...
        assert provider == f"k8s-{expected}", reg.name


def test_providers_get_the_kubeconfig_as_a_secret(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for reg in rec.of_type("pulumi:providers:kubernetes"):
        assert reg.is_secret("kubeconfig")
        assert reg.inputs["context"] == reg.name.removeprefix("k8s-")


def test_outputs_hold_no_private_material(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    text = repr(rec.outputs)
    for needle in (
        "PRIVATE KEY",
        FAKE_TOKEN_PREFIX,
        "placeholder-token",
        "kubeconfig",
        "certificate-authority-data",
    ):
        assert needle not in text
    assert rec.outputs["meshId"] == "mesh1"
    assert rec.outputs["rootCertificateFingerprint"] == pem_fingerprint(rec.outputs["rootCertificatePem"])
    assert rec.outputs["clusters"]["cluster1"]["network"] == "network1"


def test_each_rendered_object_costs_one_transform_callback(mesh_settings: Any) -> None:
    """The engine calls the program once per transform in an object's ancestry, with all its properties
    (an Istio CRD is ~100 KB): the guard, drift, CRD and externalIPs rules reach each object as one."""
    rec = build(mesh_settings(istio={"keepCRDs": False}))
    charts = rec.of_type(CHART)
    assert len(charts) == 6
    for chart in charts:
        for kind in (CRD, WEBHOOK, "kubernetes:core/v1:Service", "kubernetes:apps/v1:Deployment"):
            rendered = rec.rendered(chart, kind, {"metadata": {"name": "x"}})
            assert rendered.callbacks == 1, (chart.name, kind)
            # ... and that one callback still marks it as this stack's.
            assert rendered.props["metadata"]["annotations"][CREATED_BY_ANNOTATION].startswith("istio-mesh/test/")


def test_component_type_tokens(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    tokens = {r.type for r in rec.registrations if r.type.startswith("istiomesh:")}
    assert tokens == {
        f"istiomesh:index:{n}"
        for n in (
            "MultiPrimaryMesh",
            "RootCA",
            "ClusterCA",
            "IstioControlPlane",
            "EastWestGateway",
            "RemoteSecretPair",
            "RemoteReader",
            "SampleApps",
        )
    }
