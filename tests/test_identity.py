"""Day 2 under mocks: a resource's identity (its URN) depends only on what it is, never on list order or
on settings users change; stacks named the old way are carried over by aliases; every Kubernetes
object is created only through the guard that refuses to take over an existing object."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pulumi
import pytest
from support.certs import ca_certificate
from support.mocks import Recorded, Rendered, run_program
from support.program import mesh_program

from istio_mesh.constants import CREATED_BY_ANNOTATION
from istio_mesh.create_guard import (
    CACERTS,
    ClusterObjects,
    ExistingObjectError,
    ObjectRef,
    guard_creates,
    is_guarded_type,
    mark_created_by,
    object_ref,
    refuse_existing,
)
from istio_mesh.fingerprint import pem_fingerprint
from istio_mesh.multi_primary_mesh import pair_aliases, pair_name
from istio_mesh.root_guard import RootChangeError, root_change_refusal

SECRET = "kubernetes:core/v1:Secret"


def _build(settings: Any) -> Recorded:
    return run_program(mesh_program(settings))


def _k8s_objects(rec: Recorded) -> dict[str, tuple[str, dict[str, Any]]]:
    """URN -> (provider, inputs) of every Kubernetes object and component (what state would hold)."""
    return {r.urn: (rec.provider_of(r), r.inputs) for r in rec.registrations if not r.read}


def _reordered(settings: Any) -> Any:
    return dataclasses.replace(settings, clusters=tuple(reversed(settings.clusters)))


@pytest.mark.parametrize("n", [2, 3])
def test_reordering_clusters_changes_no_resource(mesh_settings: Any, n: int) -> None:
    settings = mesh_settings(n)
    before, after = _build(settings), _build(_reordered(settings))
    a, b = _k8s_objects(before), _k8s_objects(after)
    assert sorted(a) == sorted(b)  # the same URNs: nothing created, nothing deleted
    changed = [urn for urn in a if a[urn] != b[urn]]
    assert changed == []  # and every input, provider included, identical: no update either
    assert before.outputs == after.outputs


def test_pairs_are_named_by_their_sorted_cluster_names(mesh_settings: Any) -> None:
    rec = _build(_reordered(mesh_settings(3)))
    pairs = sorted(r.name for r in rec.of_type("istiomesh:index:RemoteSecretPair"))
    assert pairs == ["mesh-cluster1-cluster2", "mesh-cluster1-cluster3", "mesh-cluster2-cluster3"]
    assert pair_name("mesh", "cluster2", "cluster1") == "mesh-cluster1-cluster2"


def test_samples_run_where_the_config_says_not_by_position(mesh_settings: Any) -> None:
    rec = _build(_reordered(mesh_settings(2)))
    placed = {
        (rec.provider_of(r), r.k8s_name) for r in rec.of_type("kubernetes:apps/v1:Deployment") if "helloworld" in r.name
    }
    assert placed == {("k8s-cluster1", "sample/helloworld-v1"), ("k8s-cluster2", "sample/helloworld-v2")}


def test_changing_mesh_id_changes_only_istiod_values(mesh_settings: Any) -> None:
    one = _build(mesh_settings(2))
    other = _build(mesh_settings(2, meshId="mesh-two"))
    a, b = _k8s_objects(one), _k8s_objects(other)
    assert sorted(a) == sorted(b)  # no URN depends on meshId: no create, no delete, no new root CA
    changed = sorted(urn.rsplit("::", 1)[1] for urn in a if a[urn] != b[urn])
    assert changed == ["mesh-cluster1-istiod", "mesh-cluster2-istiod"]
    for urn in a:
        if urn.endswith("-istiod") and a[urn] != b[urn]:
            assert a[urn][1]["values"]["global"]["meshID"] == "mesh1"
            assert b[urn][1]["values"]["global"]["meshID"] == "mesh-two"
            rest_a = {k: v for k, v in a[urn][1]["values"]["global"].items() if k != "meshID"}
            rest_b = {k: v for k, v in b[urn][1]["values"]["global"].items() if k != "meshID"}
            assert rest_a == rest_b


def test_pairs_carry_every_name_they_had_before(mesh_settings: Any) -> None:
    """Before names were sorted a pair was <mesh>-<first listed>-<second listed>, and the mesh was named
    after meshId: the pair's aliases cover both orders under the mesh's current and previous names."""
    settings = mesh_settings(2)

    def build() -> Any:
        from istio_mesh import MultiPrimaryMesh
        from stack_config import cluster_provider, mesh_args

        providers = {c.name: cluster_provider(c) for c in settings.clusters}
        mesh = MultiPrimaryMesh(
            "mesh",
            mesh_args(settings, providers),
            opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name="mesh1")]),
        )
        return {"clusters": mesh.clusters}

    rec = run_program(build)
    assert rec.one("istiomesh:index:MultiPrimaryMesh").alias_names == ["mesh1"]
    pair = rec.one("istiomesh:index:RemoteSecretPair")
    assert sorted(pair.alias_names) == sorted(
        ["mesh-cluster2-cluster1", "mesh1-cluster1-cluster2", "mesh1-cluster2-cluster1"]
    )
    assert [a.name for a in pair_aliases("mesh", [], "cluster1", "cluster2")] == ["mesh-cluster2-cluster1"]


# ---- the create guard ----------------------------------------------------------------------------------


def test_every_kubernetes_object_is_created_through_its_clusters_guard(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(3))
    guarded = 0
    for r in rec.registrations:
        if not r.custom or not r.type.startswith("kubernetes:") or r.type.startswith("pulumi:providers"):
            continue
        if r.type.endswith("Patch"):
            assert r.before_create == [], r.name  # a patch changes an existing object by design
            continue
        cluster = rec.provider_of(r).removeprefix("k8s-")
        assert _create_hooks(rec, r) == [f"mesh-{cluster}-refuse-existing-objects"], r.name
        assert _created_by_mark(rec, r) == f"istio-mesh/test/{r.name}", r.name
        guarded += 1
    assert guarded >= 3 * 8  # namespaces, cacerts, Gateway, tokens, remote secrets, samples
    # What Helm charts render gets the hook of its chart's cluster, from the transform the engine applies
    # to every descendant of the chart's component (the mocks do not render charts).
    for chart in rec.of_type("kubernetes:helm.sh/v4:Chart"):
        cluster = rec.provider_of(chart).removeprefix("k8s-")
        rendered = dataclasses.replace(chart, type="kubernetes:apps/v1:Deployment", custom=True, before_create=[])
        assert _create_hooks(rec, rendered) == [f"mesh-{cluster}-refuse-existing-objects"], chart.name


def _under_ancestors(rec: Recorded, reg: Any) -> Rendered:
    """``reg``'s object after the transforms of its ancestors (the engine applies a component's transforms
    to all its descendants; the mocks record them only)."""
    parent = next((r for r in rec.registrations if r.urn == reg.parent), None)
    return rec.rendered(parent, reg.type, reg.inputs, name=reg.name)


def _created_by_mark(rec: Recorded, reg: Any) -> str | None:
    """The created-by annotation the ancestors' transforms put on ``reg``'s object."""
    props = _under_ancestors(rec, reg).props
    value = ((props.get("metadata") or {}).get("annotations") or {}).get(CREATED_BY_ANNOTATION)
    return str(value) if value is not None else None


def _create_hooks(rec: Recorded, reg: Any) -> list[str]:
    """The before_create hooks the engine binds to ``reg``: its own, and those its ancestors' transforms add."""
    hooks = _under_ancestors(rec, reg).opts.hooks
    return list(reg.before_create) + [str(getattr(h, "name", h)) for h in (hooks.before_create or [] if hooks else [])]


def test_the_guard_transform_binds_the_hook_once_and_skips_patches() -> None:
    hook = object.__new__(pulumi.ResourceHook)  # identity is all the transform needs
    transform = guard_creates(hook)

    def args(type_: str, custom: bool = True, opts: pulumi.ResourceOptions | None = None) -> Any:
        return pulumi.ResourceTransformArgs(custom, type_, "x", {}, opts or pulumi.ResourceOptions())

    result = transform(args("kubernetes:apps/v1:Deployment"))
    assert result is not None and result.opts.hooks is not None
    assert result.opts.hooks.before_create == [hook]
    again = transform(args("kubernetes:apps/v1:Deployment", opts=result.opts))
    assert again is not None and again.opts.hooks is not None
    assert again.opts.hooks.before_create == [hook]  # bound once, however often the transform runs
    assert transform(args("kubernetes:apps/v1:DeploymentPatch")) is None
    assert transform(args("kubernetes:helm.sh/v4:Chart", custom=False)) is None
    assert transform(args("tls:index/privateKey:PrivateKey")) is None
    assert not is_guarded_type("kubernetes:core/v1:NamespacePatch")
    assert is_guarded_type("kubernetes:networking.istio.io/v1:Gateway")


class _FakeCluster(ClusterObjects):
    """A cluster that holds exactly ``existing`` (no API server: the hook's decision is under test)."""

    def __init__(self, existing: dict[ObjectRef, dict[str, Any]]) -> None:
        super().__init__("cluster1", "", None)
        self.existing = existing
        self.asked: list[ObjectRef] = []

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        self.asked.append(ref)
        return self.existing.get(ref)


def _call(check: Any, type_: str, name: str, inputs: dict[str, Any] | None) -> None:
    asyncio.run(check(pulumi.ResourceHookArgs(urn=f"urn::{name}", id="", name=name, type=type_, new_inputs=inputs)))


def test_the_guard_refuses_an_existing_object_and_says_what_to_do() -> None:
    cacerts = ObjectRef("v1", "Secret", "istio-system", "cacerts")
    cluster = _FakeCluster({cacerts: {"metadata": {"name": "cacerts", "annotations": {}}}})
    check = refuse_existing("cluster1", cluster)  # the hook's function (registering needs an engine)
    inputs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"}}
    with pytest.raises(ExistingObjectError) as refused:
        _call(check, SECRET, "mesh-cluster1-ca-cacerts", inputs)
    text = str(refused.value)
    assert "Secret istio-system/cacerts already exists in cluster 'cluster1'" in text
    assert "Nothing was changed" in text
    assert "aliases" in text
    assert "kubectl --context cluster1 delete secret -n istio-system cacerts" in text
    assert "pulumi import kubernetes:core/v1:Secret mesh-cluster1-ca-cacerts istio-system/cacerts" in text
    # An object that does not exist is created as usual; a patch or a component is never looked up.
    other = {**inputs, "metadata": {"name": "istio-remote-secret-cluster2", "namespace": "istio-system"}}
    _call(check, SECRET, "mesh-x", other)
    _call(check, "kubernetes:apps/v1:DeploymentPatch", "mesh-p", inputs)
    assert [r.name for r in cluster.asked] == ["cacerts", "istio-remote-secret-cluster2"]


def _created_by(value: str) -> dict[str, Any]:
    return {"annotations": {CREATED_BY_ANNOTATION: value}}


def test_the_guard_takes_back_only_what_this_very_resource_created() -> None:
    """An `up` killed after the API server made an object, before the state recorded it: the rerun's
    create finds the object carrying its own created-by annotation and proceeds. Any other origin is
    refused, a renamed resource with the alias it needs."""
    secret = ObjectRef("v1", "Secret", "istio-system", "istio-remote-secret-cluster2")
    meta = {"name": secret.name, "namespace": secret.namespace}
    ours = "istio-mesh/lab/mesh-cluster1-cluster2-cluster2-remote-secret-in-cluster1"
    inputs = {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, **_created_by(ours)}}
    name = "mesh-cluster1-cluster2-cluster2-remote-secret-in-cluster1"

    check = refuse_existing("cluster1", _FakeCluster({secret: {"metadata": {**meta, **_created_by(ours)}}}))
    _call(check, SECRET, name, inputs)  # taken back: no error

    renamed = "istio-mesh/lab/mesh1-cluster2-cluster1-cluster2-remote-secret-in-cluster1"
    check = refuse_existing("cluster1", _FakeCluster({secret: {"metadata": {**meta, **_created_by(renamed)}}}))
    with pytest.raises(ExistingObjectError) as refused:
        _call(check, SECRET, name, inputs)
    assert f"It was created by {renamed!r}" in str(refused.value)
    assert "aliases=[pulumi.Alias(name='mesh1-cluster2-cluster1-cluster2-remote-secret-in-cluster1')]" in str(
        refused.value
    )
    other_stack = "istio-mesh/prod/" + name
    check = refuse_existing("cluster1", _FakeCluster({secret: {"metadata": {**meta, **_created_by(other_stack)}}}))
    with pytest.raises(ExistingObjectError):
        _call(check, SECRET, name, inputs)


def _root_pem(name: str) -> str:
    """A self-signed CA certificate (the mesh root's stand-in)."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    now = datetime.datetime.now(datetime.UTC)
    cert = ca_certificate(
        ec.generate_private_key(ec.SECP256R1()), cn=name, not_before=now, not_after=now + datetime.timedelta(days=1)
    )
    return str(cert.public_bytes(serialization.Encoding.PEM).decode())


def _cacerts(root_pem: str, made_by: str | None) -> dict[str, Any]:
    import base64

    return {
        "metadata": {"name": "cacerts", "namespace": "istio-system", **(_created_by(made_by) if made_by else {})},
        "data": {"root-cert.pem": base64.b64encode(root_pem.encode()).decode()},
    }


def test_a_lost_state_is_named_when_the_clusters_mesh_has_another_root() -> None:
    """A stack whose state was lost generated a new root; the cluster's cacerts, made by this stack, holds
    the old one. Only that case is refused: the same root (an imported or external one), no cacerts, or a
    cacerts this stack did not make are left to the create guard's usual rules."""
    old, new = _root_pem("old root"), _root_pem("new root")
    prefix = "istio-mesh/lab/"
    text = root_change_refusal("cluster1", _cacerts(old, prefix + "mesh-cluster1-ca-cacerts"), prefix, new)
    assert text is not None
    assert "Cluster 'cluster1' already runs this stack's mesh under another root CA" in text
    assert pem_fingerprint(old) in text and pem_fingerprint(new) in text
    assert "the state was lost or replaced" in text and "Nothing was taken over in cluster 'cluster1'" in text
    assert "pulumi stack import --file" in text and ".pulumi/backups/<project>/<stack>/" in text
    assert "kubectl --context cluster1 -n istio-system delete secret cacerts" in text

    assert root_change_refusal("cluster1", _cacerts(old, prefix + "x"), prefix, old) is None  # the same root
    # ... even written out differently (PEM line breaks, trailing newline).
    assert root_change_refusal("cluster1", _cacerts(old.strip() + "\n\n", prefix + "x"), prefix, old) is None
    assert root_change_refusal("cluster1", None, prefix, new) is None
    assert root_change_refusal("cluster1", _cacerts(old, "istio-mesh/prod/x"), prefix, new) is None
    assert root_change_refusal("cluster1", _cacerts(old, None), prefix, new) is None
    broken = {**_cacerts(old, prefix + "x"), "data": {"root-cert.pem": "bm90IGEgY2VydA=="}}  # "not a cert"
    unreadable = root_change_refusal("cluster1", broken, prefix, new)
    assert unreadable is not None and "a root certificate that cannot be read" in unreadable


def test_the_guard_takes_nothing_back_under_another_root_and_asks_the_cluster_once() -> None:
    ns_ref = ObjectRef("v1", "Namespace", None, "istio-system")
    ours = "istio-mesh/lab/mesh-cluster1-istio-system"
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system", **_created_by(ours)}}
    cacerts_by = "istio-mesh/lab/mesh-cluster1-ca-cacerts"
    cacerts_inputs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cacerts", "namespace": "istio-system", **_created_by(cacerts_by)},
    }
    old, new = _root_pem("old root"), _root_pem("new root")
    live = {ns_ref: {"metadata": namespace["metadata"]}, CACERTS: _cacerts(old, cacerts_by)}

    cluster = _FakeCluster(live)
    check = refuse_existing("cluster1", cluster, new)
    for name, inputs in (("mesh-cluster1-istio-system", namespace), ("mesh-cluster1-ca-cacerts", cacerts_inputs)):
        with pytest.raises(RootChangeError) as refused:
            _call(check, "kubernetes:core/v1:Namespace" if "istio-system" in name else SECRET, name, inputs)
        assert pem_fingerprint(old) in str(refused.value)
    assert cluster.asked.count(CACERTS) == 2  # the cacerts' own create looks it up as its object, once more

    cluster = _FakeCluster(live)
    check = refuse_existing("cluster1", cluster, old)  # an interrupted up: the state still has the root
    _call(check, "kubernetes:core/v1:Namespace", "mesh-cluster1-istio-system", namespace)
    _call(check, SECRET, "mesh-cluster1-ca-cacerts", cacerts_inputs)
    # Without the root (a component used on its own), the take-back is as before.
    _call(refuse_existing("cluster1", _FakeCluster(live)), SECRET, "mesh-cluster1-ca-cacerts", cacerts_inputs)


def test_every_object_is_marked_with_the_resource_that_created_it() -> None:
    args = pulumi.ResourceTransformArgs(
        True,
        "kubernetes:core/v1:ServiceAccount",
        "mesh-cluster1-base:istio-system/istio-reader-service-account",
        {"metadata": {"name": "istio-reader-service-account", "annotations": {"x": "y"}}},
        pulumi.ResourceOptions(),
    )
    result = mark_created_by(args)
    assert result is not None
    metadata: Any = result.props["metadata"]
    assert metadata["annotations"] == {
        "x": "y",
        CREATED_BY_ANNOTATION: f"{pulumi.get_project()}/{pulumi.get_stack()}/{args.name}",
    }
    assert (
        mark_created_by(
            pulumi.ResourceTransformArgs(True, "kubernetes:apps/v1:DeploymentPatch", "p", {}, pulumi.ResourceOptions())
        )
        is None
    )


def test_object_identity_from_resource_inputs() -> None:
    assert object_ref({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}) == ObjectRef(
        "v1", "Namespace", None, "istio-system"
    )
    assert object_ref({"apiVersion": "v1", "kind": "Secret", "metadata": {"generateName": "x-"}}) is None
    assert object_ref(None) is None
    assert object_ref({"kind": "Secret", "metadata": {"name": "a"}}) is None


def _changed(a_settings: Any, b_settings: Any) -> list[str]:
    a, b = _k8s_objects(_build(a_settings)), _k8s_objects(_build(b_settings))
    assert sorted(a) == sorted(b)  # nothing created or deleted
    return sorted(urn.rsplit("::", 1)[1] for urn in a if a[urn] != b[urn])


def test_changing_a_network_updates_exactly_what_carries_it(mesh_settings: Any) -> None:
    before = mesh_settings(3)
    moved = dataclasses.replace(before.clusters[2], network="network9")
    after = dataclasses.replace(before, clusters=(*before.clusters[:2], moved))
    # The namespace label, istiod's global.network, the gateway's networkGateway and the sample pods'
    # template label (the injector stamps the network at injection: the pods must roll), in cluster3 only.
    assert _changed(before, after) == [
        "mesh-cluster3-eastwest-chart",
        "mesh-cluster3-istiod",
        "mesh-cluster3-namespace",
        "mesh-cluster3-samples-sleep",
    ]


def test_changing_a_gateway_service_type_updates_only_that_gateway(mesh_settings: Any) -> None:
    before = mesh_settings(2)
    c1 = before.clusters[0]
    node_port = dataclasses.replace(c1, gateway=dataclasses.replace(c1.gateway, service_type="NodePort"))
    after = dataclasses.replace(before, clusters=(node_port, before.clusters[1]))
    assert _changed(before, after) == ["mesh-cluster1-eastwest-chart"]


def test_an_unreachable_cluster_leaves_the_mesh_and_only_its_provider_stays(mesh_settings: Any) -> None:
    """`unreachable: true` on cluster3: nothing is built there (its objects leave the state), the other
    clusters' remote secrets and tokens for it go, and its provider drops what it cannot reach."""
    settings = mesh_settings(3)
    gone = dataclasses.replace(settings.clusters[2], unreachable=True)
    rec = _build(dataclasses.replace(settings, clusters=(*settings.clusters[:2], gone)))
    providers = {r.name: r for r in rec.of_type("pulumi:providers:kubernetes")}
    assert sorted(providers) == ["k8s-cluster1", "k8s-cluster2", "k8s-cluster3"]
    assert providers["k8s-cluster3"].inputs["deleteUnreachable"] == "true"
    assert providers["k8s-cluster3"].inputs["skipUpdateUnreachable"] == "true"
    assert "deleteUnreachable" not in providers["k8s-cluster1"].inputs
    landed = {rec.provider_of(r) for r in rec.registrations if r.type.startswith("kubernetes:") and r.custom}
    assert landed == {"k8s-cluster1", "k8s-cluster2"}
    pairs = [r.name for r in rec.of_type("istiomesh:index:RemoteSecretPair")]
    assert pairs == ["mesh-cluster1-cluster2"]
    assert sorted(rec.outputs["clusters"]) == ["cluster1", "cluster2"]


def test_changing_the_image_tag_updates_only_the_charts_that_set_images(mesh_settings: Any) -> None:
    before = mesh_settings(2)
    after = dataclasses.replace(before, istio=dataclasses.replace(before.istio, tag="1.30.5"))
    # istiod's values only (its Deployment's image, the injector's proxy image); the gateway chart's pods
    # say `image: auto` and get theirs from the injector; nothing in the CA, namespaces, secrets or base.
    assert _changed(before, after) == ["mesh-cluster1-istiod", "mesh-cluster2-istiod"]


def test_the_guard_looks_objects_up_on_threads_of_its_own() -> None:
    """In a plugin (a component built for a YAML or TypeScript program), each child's registration holds a
    thread of the event loop's default executor until the engine answers, and the engine waits for this
    hook: were the lookup queued on that executor, a busy pool would deadlock the run (seen on the lab)."""
    import concurrent.futures
    import threading

    cacerts = ObjectRef("v1", "Secret", "istio-system", "cacerts")
    cluster = _FakeCluster({})
    check = refuse_existing("cluster1", cluster)
    inputs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": "istio-system"}}
    args = pulumi.ResourceHookArgs(urn="urn::x", id="", name="x", type=SECRET, new_inputs=inputs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=1))
        release = threading.Event()
        held = loop.run_in_executor(None, release.wait)  # the default pool's only thread, busy
        try:
            await asyncio.wait_for(check(args), timeout=10)
        finally:
            release.set()
            await held

    asyncio.run(main())
    assert cluster.asked == [cacerts]
