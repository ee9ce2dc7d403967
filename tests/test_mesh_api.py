"""The package's own API: ``MultiPrimaryMesh`` built from ``MeshCluster``s and options, as another project
would call it (no stack config, no ``stack_config``), under recording mocks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest
from support.mocks import Recorded, run_program

from istio_mesh import (
    CASettings,
    GatewaySettings,
    MeshCluster,
    MultiPrimaryMesh,
    MultiPrimaryMeshArgs,
    SampleSettings,
)
from istio_mesh.create_guard import CREATED_BY_ANNOTATION, ClusterObjects

PROVIDER = "pulumi:providers:kubernetes"
CHART = "kubernetes:helm.sh/v4:Chart"
SECRET = "kubernetes:core/v1:Secret"
NAMESPACE = "kubernetes:core/v1:Namespace"
NOT_K8S = ("MultiPrimaryMesh", "RootCA")


def _clusters(mesh_settings: Any, n: int = 2, **extra: Any) -> tuple[MeshCluster, ...]:
    """``n`` clusters as a consumer gives them: name, network, the address peers use, kubeconfig content."""
    return tuple(
        MeshCluster(
            name=c.name,
            network=c.network,
            api_server=c.api_server,
            kubeconfig=c.kubeconfig,
            gateway=GatewaySettings(external_ips=(f"10.0.{i}.10",)),
            **extra,
        )
        for i, c in enumerate(mesh_settings(n).clusters, start=1)
    )


def _run(*meshes: tuple[str, MultiPrimaryMeshArgs]) -> Recorded:
    def build() -> Mapping[str, pulumi.Output[Any]]:
        outputs = {}
        for name, args in meshes:
            mesh = MultiPrimaryMesh(name, args, opts=pulumi.ResourceOptions(protect=False))
            outputs[name] = mesh.clusters
        return outputs

    return run_program(build)


def _args(clusters: tuple[MeshCluster, ...], **extra: Any) -> MultiPrimaryMeshArgs:
    return MultiPrimaryMeshArgs(mesh_id="mesh1", clusters=clusters, ca=CASettings(protect=False), **extra)


def test_a_mesh_given_only_kubeconfigs_makes_one_provider_per_cluster(mesh_settings: Any) -> None:
    rec = _run(("mesh", _args(_clusters(mesh_settings, 3))))
    mesh = rec.one("istiomesh:index:MultiPrimaryMesh")
    providers = rec.of_type(PROVIDER)
    assert sorted(p.name for p in providers) == [f"mesh-cluster{i}-provider" for i in (1, 2, 3)]
    for p in providers:
        assert p.parent == mesh.urn and p.is_secret("kubeconfig"), p.name
    k8s_objects = [r for r in rec.registrations if r.type.startswith("kubernetes:")]
    assert len(k8s_objects) > 40
    for reg in k8s_objects:
        if "-remote-secret-in-" in reg.name:
            cluster = reg.name.rsplit("-in-", 1)[1]
        elif "reader-token" in reg.name:
            cluster = reg.name.split("-reader-token")[0].rsplit("-", 1)[-1]
        else:
            cluster = reg.name.split("-")[1]
        assert rec.provider_of(reg) == f"mesh-{cluster}-provider", reg.name
    assert sorted(rec.outputs["mesh"]) == ["cluster1", "cluster2", "cluster3"]


def test_a_callers_provider_is_used_as_given(mesh_settings: Any) -> None:
    import pulumi_kubernetes as k8s

    def build() -> Mapping[str, pulumi.Output[Any]]:
        clusters = [
            MeshCluster(
                name=c.name,
                network=c.network,
                api_server=c.api_server,
                kubeconfig=c.kubeconfig,
                provider=k8s.Provider(f"mine-{c.name}", kubeconfig=pulumi.Output.secret(c.kubeconfig)),
            )
            for c in mesh_settings(2).clusters
        ]
        return {"clusters": MultiPrimaryMesh("mesh", _args(tuple(clusters))).clusters}

    rec = run_program(build)
    assert sorted(p.name for p in rec.of_type(PROVIDER)) == ["mine-cluster1", "mine-cluster2"]
    assert {rec.provider_of(r) for r in rec.registrations if r.type.startswith("kubernetes:")} == {
        "mine-cluster1",
        "mine-cluster2",
    }


def test_kubeconfigs_may_be_secret_outputs(mesh_settings: Any) -> None:
    """What a consumer has from ``config.require_secret``: an Output, handed on as a secret."""
    settings = mesh_settings(2)

    def build() -> Mapping[str, pulumi.Output[Any]]:
        clusters = tuple(
            MeshCluster(
                name=c.name,
                network=c.network,
                api_server=c.api_server,
                kubeconfig=pulumi.Output.secret(c.kubeconfig),
            )
            for c in settings.clusters
        )
        return {"clusters": MultiPrimaryMesh("mesh", _args(clusters)).clusters}

    rec = run_program(build)
    for p in rec.of_type(PROVIDER):
        assert p.is_secret("kubeconfig")
    assert len(rec.of_type(CHART)) == 6


def test_the_create_guard_resolves_a_kubeconfig_given_as_an_output(mesh_settings: Any) -> None:
    """The guard reads the cluster with the kubeconfig's value, once the Output has one."""
    text = mesh_settings(2).clusters[0].kubeconfig
    seen: list[str] = []

    async def main() -> None:
        lookup = ClusterObjects("cluster1", pulumi.Output.secret(text), None)
        await lookup.resolve()
        seen.append(lookup._kubeconfig)
        plain = ClusterObjects("cluster1", text, None)
        await plain.resolve()
        seen.append(plain._kubeconfig)

    asyncio.run(main())
    assert seen == [text, text]


def test_every_mistake_in_the_args_is_reported_before_anything_is_registered(mesh_settings: Any) -> None:
    one, two = _clusters(mesh_settings, 2)
    bad = (
        one,
        MeshCluster(name=one.name, network="net work", api_server="http://10.0.0.1", kubeconfig=two.kubeconfig),
        MeshCluster(name="Three", network="n3", api_server="https://10.0.3.1:6443"),
    )
    args = MultiPrimaryMeshArgs(mesh_id="mesh 1", clusters=bad, labels={"team": "a b"}, annotations={"-bad/key": "x"})
    with pytest.raises(ValueError) as err:
        _run(("mesh", args))
    message = str(err.value)
    for expected in (
        "mesh_id 'mesh 1' is not a mesh ID",
        "clusters[1] ('cluster1'): another cluster has this name",
        "clusters[1] ('cluster1'): network 'net work' is not a label value",
        "clusters[1] ('cluster1'): api_server 'http://10.0.0.1' is not an https:// URL",
        "clusters[2] ('Three'): name is not a DNS label",
        "clusters[2] ('Three'): give its kubeconfig (content, a secret) or a provider bound to it",
        "label/annotation key '-bad/key' is not a valid key",
        "labels['team']: 'a b' is not a label value",
    ):
        assert expected in message, (expected, message)
    assert "nothing was registered" in message


def test_the_create_guard_needs_a_kubeconfig_even_with_a_provider(mesh_settings: Any) -> None:
    import pulumi_kubernetes as k8s

    def build(refuse: bool) -> Any:
        def program() -> Mapping[str, pulumi.Output[Any]]:
            clusters = tuple(
                MeshCluster(
                    name=c.name,
                    network=c.network,
                    api_server=c.api_server,
                    provider=k8s.Provider(f"p-{c.name}", kubeconfig=pulumi.Output.secret(c.kubeconfig)),
                )
                for c in mesh_settings(2).clusters
            )
            return {"c": MultiPrimaryMesh("mesh", _args(clusters, refuse_existing_objects=refuse)).clusters}

        return program

    with pytest.raises(ValueError) as err:
        run_program(build(refuse=True))
    assert "the create guard looks objects up with the cluster's kubeconfig" in str(err.value)
    rec = run_program(build(refuse=False))
    assert not any(r.before_create for r in rec.registrations)


def test_labels_and_annotations_reach_every_object_the_mesh_creates(mesh_settings: Any) -> None:
    rec = _run(
        (
            "mesh",
            _args(
                _clusters(mesh_settings, 2),
                labels={"example.com/team": "platform"},
                annotations={"example.com/owner": "mesh-team"},
                samples=SampleSettings(enabled=True),
            ),
        )
    )
    under = [
        *rec.of_type(CHART),  # what the charts render: CRDs, istiod, the gateway
        # Every component bound to a cluster (not the mesh itself, not the root CA: no Kubernetes objects).
        *(r for r in rec.registrations if r.type.startswith("istiomesh:") and r.type.split(":")[-1] not in NOT_K8S),
    ]
    assert len(under) > 10
    for parent in under:
        for kind in (SECRET, NAMESPACE, "kubernetes:apps/v1:Deployment"):
            own = {"metadata": {"name": "x", "labels": {"example.com/team": "its-own"}}}
            rendered = rec.rendered(parent, kind, own).props["metadata"]
            assert rendered["labels"] == {"example.com/team": "its-own"}, parent.name  # the object's own wins
            assert rendered["annotations"]["example.com/owner"] == "mesh-team", parent.name
            assert CREATED_BY_ANNOTATION in rendered["annotations"], parent.name
            plain = rec.rendered(parent, kind, {"metadata": {"name": "y"}}).props["metadata"]
            assert plain["labels"] == {"example.com/team": "platform"}, parent.name
        # Still one callback per object.
        assert rec.rendered(parent, SECRET, {"metadata": {"name": "z"}}).callbacks == 1, parent.name
    # Patches change objects made elsewhere: they get nothing.
    patch = rec.rendered(under[0], "kubernetes:apps/v1:DeploymentPatch", {"metadata": {"name": "istiod"}})
    assert "labels" not in patch.props["metadata"]


def test_without_labels_the_objects_get_only_the_created_by_annotation(mesh_settings: Any) -> None:
    rec = _run(("mesh", _args(_clusters(mesh_settings, 2))))
    for chart in rec.of_type(CHART):
        metadata = rec.rendered(chart, SECRET, {"metadata": {"name": "x"}}).props["metadata"]
        assert "labels" not in metadata and list(metadata["annotations"]) == [CREATED_BY_ANNOTATION]


def test_two_meshes_live_in_one_stack(mesh_settings: Any) -> None:
    """Every logical name starts with the mesh's own name: two meshes (here on two pairs of clusters)
    register nothing under the same name."""
    c1, c2, c3, c4 = _clusters(mesh_settings, 4)
    rec = _run(("east", _args((c1, c2))), ("west", _args((c3, c4))))
    names = [r.urn for r in rec.registrations]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    meshes = {r.name: r.urn for r in rec.of_type("istiomesh:index:MultiPrimaryMesh")}
    assert set(meshes) == {"east", "west"}
    for r in rec.registrations:
        if r.parent in meshes.values():
            mesh = next(n for n, urn in meshes.items() if urn == r.parent)
            assert r.name.startswith(f"{mesh}-"), r.name
    assert sorted(rec.outputs["east"]) == ["cluster1", "cluster2"]
    assert sorted(rec.outputs["west"]) == ["cluster3", "cluster4"]


def test_the_python_example_builds_a_mesh_from_two_secret_kubeconfigs(mesh_settings: Any) -> None:
    """examples/python/__main__.py as Pulumi runs it, with its stack config (the project name under mocks
    is ``istio-mesh``, so its keys are read from that namespace)."""
    import os
    import runpy

    east, west = mesh_settings(2).clusters
    config = {
        "istio-mesh:eastKubeconfig": east.kubeconfig,
        "istio-mesh:eastApiServer": "https://10.0.1.1:6443",
        "istio-mesh:westKubeconfig": west.kubeconfig,
        "istio-mesh:westApiServer": "https://10.0.2.1:6443",
    }
    main = os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "python", "__main__.py"
    )

    def build() -> Mapping[str, pulumi.Output[Any]]:
        pulumi.runtime.set_all_config(config, ["istio-mesh:eastKubeconfig", "istio-mesh:westKubeconfig"])
        runpy.run_path(main, run_name="__main__")
        return {}

    rec = run_program(build)
    assert sorted(p.name for p in rec.of_type(PROVIDER)) == ["mesh-east-provider", "mesh-west-provider"]
    assert all(p.is_secret("kubeconfig") for p in rec.of_type(PROVIDER))
    assert len(rec.of_type(CHART)) == 6  # base, istiod, gateway per cluster
    remote = [r for r in rec.of_type(SECRET) if "-remote-secret-in-" in r.name]
    assert sorted(r.k8s_name for r in remote) == [
        "istio-system/istio-remote-secret-east",
        "istio-system/istio-remote-secret-west",
    ]
    root = rec.one("tls:index/selfSignedCert:SelfSignedCert")
    assert root.protect
    chart = rec.one(CHART, name_contains="mesh-east-istiod")
    labels = rec.rendered(chart, SECRET, {"metadata": {"name": "x"}}).props["metadata"]["labels"]
    assert labels == {"example.com/managed-by": "mesh-example"}


def test_an_existing_root_is_given_as_inputs(mesh_settings: Any) -> None:
    """``ca.source='import'`` with the root as Outputs (what another stack's outputs or a secret manager
    gives): no root is generated, the intermediates are signed with it, and the key stays a secret."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from support.certs import ca_certificate, private_key_pem

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = ca_certificate(key, not_before=now, not_after=now + datetime.timedelta(days=3650))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    clusters = _clusters(mesh_settings, 2)

    def build() -> Mapping[str, pulumi.Output[Any]]:
        ca = CASettings(
            source="import",
            root_cert_pem=pulumi.Output.from_input(cert_pem),
            root_key_pem=pulumi.Output.secret(private_key_pem(key)),
        )
        mesh = MultiPrimaryMesh("mesh", MultiPrimaryMeshArgs(mesh_id="mesh1", clusters=clusters, ca=ca))
        return {"root": mesh.root_cert_pem}

    rec = run_program(build)
    assert not rec.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert rec.outputs["root"] == cert_pem
    intermediates = rec.of_type("pulumi-python:dynamic/istiomesh:IntermediateCertificate")
    assert len(intermediates) == 2
    for reg in intermediates:
        assert reg.inputs["root_cert_pem"] == cert_pem and reg.is_secret("root_key_pem"), reg.name


def test_a_gateway_service_type_kubernetes_lacks_is_named(mesh_settings: Any) -> None:
    """The Args check it, so the stack config and the plugin's inputs are refused alike, before any object."""
    first, second = _clusters(mesh_settings, 2)
    first = dataclasses.replace(first, gateway=GatewaySettings(service_type="NodePorts"))
    with pytest.raises(ValueError) as err:
        _run(("mesh", MultiPrimaryMeshArgs(mesh_id="mesh1", clusters=(first, second))))
    assert "gateway.service_type 'NodePorts' is not one of LoadBalancer, NodePort, ClusterIP" in str(err.value)


def test_ca_mistakes_are_named(mesh_settings: Any) -> None:
    clusters = _clusters(mesh_settings, 2)
    for ca, expected in (
        (CASettings(source="imported"), "ca.source 'imported' is not one of generate, import, external"),
        (CASettings(source="import", root_cert_pem="x"), "ca.source 'import' needs ca.root_key_pem"),
        (CASettings(source="external"), "ca.source 'external' needs ca.root_cert_pem"),
        (CASettings(source="external", root_cert_pem="x"), "needs an intermediate for every cluster"),
        (CASettings(root_key_pem="k"), "ca.root_key_pem is given but ca.source is 'generate'"),
        (CASettings(intermediate_validity_days=0), "ca.intermediate_validity_days must be at least 1"),
    ):
        with pytest.raises(ValueError) as err:
            _run(("mesh", MultiPrimaryMeshArgs(mesh_id="mesh1", clusters=clusters, ca=ca)))
        assert expected in str(err.value), (ca, str(err.value))
