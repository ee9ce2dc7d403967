"""The remote secrets (``RemoteSecretPair``): what istioctl would create, the reader tokens they carry, and
one per ordered pair of clusters.

Under recording mocks, checked against reference/ISTIO_FACTS.md."""

from __future__ import annotations

import itertools
from typing import Any

import yaml
from support.mesh import CLUSTER_ROLE_BINDING, NAMESPACE, ROLE_BINDING, SECRET, SERVICE_ACCOUNT, b64d, build
from support.mocks import FAKE_CLUSTER_CA, FAKE_TOKEN_PREFIX, Recorded, Registration

from istio_mesh import constants as c


def _remote_secret(rec: Recorded, source: str, reader: str) -> Registration:
    found = [
        r
        for r in rec.of_type(SECRET)
        if r.k8s_name == f"istio-system/istio-remote-secret-{source}" and rec.provider_of(r) == f"k8s-{reader}"
    ]
    assert len(found) == 1, (source, reader, [r.name for r in found])
    return found[0]


def test_remote_secret_is_what_istioctl_creates(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for source, reader in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        secret = _remote_secret(rec, source, reader)
        meta = secret.inputs["metadata"]
        assert meta["labels"] == {"istio/multiCluster": "true"}
        assert meta["annotations"] == {"networking.istio.io/cluster": source}
        assert list(secret.inputs["data"]) == [source]  # ONE key, exactly the source's cluster name
        assert secret.is_secret("data")

        token = rec.one(
            SECRET, f"istio-system/istio-mesh-reader-token-{reader}", name_contains=f"-{source}-reader-token"
        )
        assert rec.provider_of(token) == f"k8s-{source}"  # the token lives in the cluster being READ
        assert token.inputs["type"] == "kubernetes.io/service-account-token"
        assert token.inputs["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "istio-mesh-reader"}

        kubeconfig = yaml.safe_load(b64d(secret.inputs["data"][source]))
        assert kubeconfig["current-context"] == source
        assert [x["name"] for x in kubeconfig["clusters"]] == [source]
        assert [x["name"] for x in kubeconfig["contexts"]] == [source]
        assert [x["name"] for x in kubeconfig["users"]] == [source]
        assert kubeconfig["contexts"][0]["context"] == {"cluster": source, "user": source}
        i = source[-1]
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://10.0.{i}.1:6443"
        ca = b64d(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        assert ca == f"{FAKE_CLUSTER_CA}istio-system/{token.name}"
        assert kubeconfig["users"][0]["user"] == {"token": f"{FAKE_TOKEN_PREFIX}{token.name}"}


def test_token_is_read_only_after_it_exists_and_after_the_reader_account(mesh_settings: Any) -> None:
    rec = build(mesh_settings())
    for source, reader in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        secret = _remote_secret(rec, source, reader)
        token = rec.one(
            SECRET, f"istio-system/istio-mesh-reader-token-{reader}", name_contains=f"-{source}-reader-token"
        )
        assert rec.depends_on(secret, token)
        # The token controller deletes a token whose ServiceAccount does not exist: it waits for the
        # account and for its bindings (a token that cannot read yet is no use to istiod).
        assert rec.depends_on(token, rec.one(SERVICE_ACCOUNT, "istio-system/istio-mesh-reader", f"mesh-{source}-"))
        assert rec.depends_on(token, rec.one(CLUSTER_ROLE_BINDING, "istio-mesh-reader", f"mesh-{source}-"))
        assert rec.depends_on(token, rec.one(ROLE_BINDING, "istio-system/istio-mesh-reader", f"mesh-{source}-"))
        # The remote secret waits for the reader's istio-system.
        assert rec.depends_on(secret, rec.one(NAMESPACE, "istio-system", name_contains=f"mesh-{reader}-"))


def test_remote_secret_api_server_can_be_overridden(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    clusters = kubeconfigs(2)
    clusters[0]["apiServer"] = "https://cluster1.api.example:443"
    rec = build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    kubeconfig = yaml.safe_load(b64d(_remote_secret(rec, "cluster1", "cluster2").inputs["data"]["cluster1"]))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://cluster1.api.example:443"


def test_three_clusters_give_six_remote_secrets_and_one_root(mesh_settings: Any) -> None:
    rec = build(mesh_settings(3))
    names = ["cluster1", "cluster2", "cluster3"]
    for source, reader in itertools.permutations(names, 2):
        _remote_secret(rec, source, reader)
    remote = [r for r in rec.of_type(SECRET) if r.k8s_name.startswith("istio-system/istio-remote-secret-")]
    assert len(remote) == 6
    assert len([r for r in rec.of_type(SECRET) if r.inputs.get("type") == "kubernetes.io/service-account-token"]) == 6
    assert len(rec.of_type("istiomesh:index:RemoteSecretPair")) == 3
    assert len(rec.of_type("istiomesh:index:RootCA")) == 1
    assert len(rec.of_type("istiomesh:index:ClusterCA")) == 3
    for name in names:
        held = rec.outputs["clusters"][name]["remoteSecrets"]
        assert held == sorted(f"istio-remote-secret-{other}" for other in names if other != name)


def test_loopback_api_server_is_warned_about_outside_the_lab(kubeconfigs: Any, caplog: Any) -> None:
    from stack_config import parse_settings

    clusters = kubeconfigs(2)
    clusters[0]["apiServer"] = "https://127.0.0.1:6443"
    build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    assert any("loopback" in r.getMessage() and "cluster1" in r.getMessage() for r in caplog.records)
    caplog.clear()
    build(parse_settings({"meshId": "mesh1", "clusters": clusters, "lab": True}))
    assert not any("loopback" in r.getMessage() for r in caplog.records)


def test_a_new_token_generation_renames_every_token_under_the_same_logical_names(mesh_settings: Any) -> None:
    def tokens(rec: Recorded) -> dict[str, str]:
        return {r.name: r.k8s_name for r in rec.of_type(SECRET) if r.inputs.get("type") == c.SA_TOKEN_SECRET_TYPE}

    # Same logical names, new object names: Pulumi replaces each token (the new one is created first,
    # the remote secrets move to it, the old one is deleted last, which revokes it).
    assert tokens(build(mesh_settings())) == {
        "mesh-cluster1-cluster2-cluster1-reader-token": "istio-system/istio-mesh-reader-token-cluster2",
        "mesh-cluster1-cluster2-cluster2-reader-token": "istio-system/istio-mesh-reader-token-cluster1",
    }
    assert tokens(build(mesh_settings(remoteAccess={"tokenGeneration": 3}))) == {
        "mesh-cluster1-cluster2-cluster1-reader-token": "istio-system/istio-mesh-reader-token-cluster2-g3",
        "mesh-cluster1-cluster2-cluster2-reader-token": "istio-system/istio-mesh-reader-token-cluster1-g3",
    }
