"""Every configuration mistake fails before anything is registered, naming the setting and what is valid."""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import pulumi
import pytest
from support.certs import ca_certificate, private_key_pem
from support.mocks import run_program
from support.program import run_main, write_kubeconfig

from istio_mesh.options import is_loopback_url
from stack_config import ConfigError, parse_settings


def _raw(kubeconfigs: Any, n: int = 2, **extra: Any) -> dict[str, Any]:
    return {"meshId": "mesh1", "clusters": kubeconfigs(n), **extra}


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    assert "nothing was changed" in str(err.value)
    return err.value.problems


def test_valid_two_cluster_config(kubeconfigs: Any) -> None:
    s = parse_settings(_raw(kubeconfigs))
    assert [c.name for c in s.clusters] == ["cluster1", "cluster2"]
    assert s.networks == ("network1", "network2") and s.multi_network
    # The API server for remote secrets defaults to the one in the cluster's kubeconfig.
    assert s.clusters[0].api_server == "https://10.0.1.1:6443"
    assert s.clusters[0].context == "cluster1"
    assert s.clusters[0].gateway.external_ips == ("10.0.1.10",)
    assert s.ca.source == "generate" and s.ca.protect
    assert s.istio.charts.repository == "https://istio-release.storage.googleapis.com/charts"
    assert s.istio.tag == s.istio.version


def test_duplicate_cluster_names(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][1]["name"] = "cluster1"
    problems = _problems(raw)
    assert any(p.startswith("clusters[1].name:") and "already the name of clusters[0]" in p for p in problems)


@pytest.mark.parametrize("name", ["Cluster1", "cluster_1", "-c1", "c1-", "a" * 64, "cl.1"])
def test_cluster_name_must_be_dns_1123(kubeconfigs: Any, name: str) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["name"] = name
    problems = _problems(raw)
    assert any(p.startswith("clusters[0].name:") and "DNS-1123" in p and repr(name) in p for p in problems)


@pytest.mark.parametrize("network", ["Net 2", "net/2", "-net", "n" * 64])
def test_network_must_be_a_label_value(kubeconfigs: Any, network: str) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][1]["network"] = network
    problems = _problems(raw)
    assert any(p.startswith("clusters[1].network:") and "label value" in p for p in problems)


def test_fewer_than_two_clusters(kubeconfigs: Any) -> None:
    problems = _problems(_raw(kubeconfigs, n=1))
    assert any(p.startswith("clusters:") and "at least two clusters, got 1" in p for p in problems)
    assert any(p.startswith("clusters:") and "required" in p for p in _problems({"meshId": "m"}))


def test_missing_kubeconfig_file(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["kubeconfig"] = "/nonexistent/kubeconfig"
    problems = _problems(raw)
    assert any(p.startswith("clusters[0].kubeconfig:") and "does not exist" in p for p in problems)


def test_missing_context(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["context"] = "prod"
    problems = _problems(raw)
    assert any("context 'prod' is not in" in p and "['cluster1']" in p for p in problems)


def test_kubeconfig_that_is_not_a_kubeconfig(kubeconfigs: Any, tmp_path: Any) -> None:
    bad = tmp_path / "bad"
    bad.write_text("just: text\n")
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["kubeconfig"] = str(bad)
    assert any("has no 'contexts' list" in p for p in _problems(raw))


def test_unset_environment_variable_in_a_path(kubeconfigs: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("NO_SUCH_VAR_FOR_TEST", raising=False)
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["kubeconfig"] = "${NO_SUCH_VAR_FOR_TEST}/kubeconfig"
    assert any("NO_SUCH_VAR_FOR_TEST, which is not set" in p for p in _problems(raw))


@pytest.mark.parametrize("ip", ["10.0.0.300", "node-1", ""])
def test_malformed_external_ip(kubeconfigs: Any, ip: str) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["eastWestGateway"] = {"externalIPs": [ip]}
    assert any(p.startswith("clusters[0].eastWestGateway.externalIPs[0]:") for p in _problems(raw))


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:6443", "10.0.0.1:6443", "https://", "https://h:99999", "https://h/api"]
)
def test_malformed_api_server_url(kubeconfigs: Any, url: str) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["apiServer"] = url
    assert any(p.startswith("clusters[0].apiServer:") and "https://<host>" in p for p in _problems(raw))


def test_bad_service_type_and_timeout(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["eastWestGateway"] = {"serviceType": "Ingress", "loadBalancerTimeoutSeconds": -5}
    problems = _problems(raw)
    assert any("serviceType" in p and "LoadBalancer, NodePort, ClusterIP" in p for p in problems)
    assert any("loadBalancerTimeoutSeconds" in p and "positive integer" in p for p in problems)


def test_remote_access_defaults_to_the_narrow_reader_with_generation_zero(kubeconfigs: Any) -> None:
    access = parse_settings(_raw(kubeconfigs)).remote_access
    assert (access.reader, access.read_secrets, access.token_generation) == ("mesh", True, 0)
    access = parse_settings(_raw(kubeconfigs, remoteAccess={"reader": "istio", "tokenGeneration": "7"})).remote_access
    assert (access.reader, access.token_generation) == ("istio", 7)


def test_bad_remote_access_settings(kubeconfigs: Any) -> None:
    problems = _problems(_raw(kubeconfigs, remoteAccess={"reader": "admin", "tokenGeneration": -1, "rotate": 1}))
    assert problems == [
        "remoteAccess.rotate: unknown setting; valid settings here: readSecrets, reader, tokenGeneration",
        "remoteAccess.reader: 'admin' is not a reader; valid: mesh (a narrow account of this program's own, the "
        "default), istio (Istio's istio-reader-service-account, which can read every Secret)",
        "remoteAccess.tokenGeneration: expected an integer from 0 to 999999, got -1 (increment it to rotate every "
        "reader token)",
    ]
    problems = _problems(_raw(kubeconfigs, remoteAccess={"reader": "istio", "readSecrets": False}))
    assert problems == [
        "remoteAccess.readSecrets: is false but remoteAccess.reader is istio, whose role (the istiod chart's) always "
        "reads Secrets; use reader: mesh to choose"
    ]


def test_unknown_keys_at_every_level(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs, meshID="typo", istio={"verison": "1.28.0"}, samples={"enable": True})
    raw["clusters"][0]["netwrok"] = "x"
    raw["clusters"][1]["eastWestGateway"] = {"externalIP": ["10.0.0.1"]}
    problems = _problems(raw)
    for path in (
        "meshID",
        "istio.verison",
        "samples.enable",
        "clusters[0].netwrok",
        "clusters[1].eastWestGateway.externalIP",
    ):
        assert any(p.startswith(f"{path}: unknown setting") for p in problems), path


def test_all_problems_are_reported_at_once(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["name"] = "Bad_Name"
    raw["clusters"][1]["network"] = "bad network"
    raw["meshId"] = "mesh 1"
    assert len(_problems(raw)) == 3


def test_chart_directory_must_hold_the_charts(kubeconfigs: Any, tmp_path: Any) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Chart.yaml").write_text("name: base\n")
    problems = _problems(_raw(kubeconfigs, istio={"chartDirectory": str(tmp_path)}))
    assert any(p.startswith("istio.chartDirectory:") and "missing: istiod, gateway" in p for p in problems)
    both = _raw(kubeconfigs, istio={"chartDirectory": str(tmp_path), "chartRepository": "https://charts.example"})
    assert any("either chartRepository or chartDirectory" in p for p in _problems(both))
    assert any(
        p.startswith("istio.chartRepository:")
        for p in _problems(_raw(kubeconfigs, istio={"chartRepository": "charts"}))
    )
    assert any(p.startswith("istio.version:") for p in _problems(_raw(kubeconfigs, istio={"version": "latest"})))


# ---- imported root -----------------------------------------------------------------------------------


def _ca_pair(
    ca: bool = True,
    path_length: int | None = None,
    key_cert_sign: bool | None = True,
    days: tuple[float, float] = (-1, 1),
) -> tuple[str, str, str]:
    """A real CA cert with its key, and an unrelated key (EC keys: fast). ``key_cert_sign`` None: no
    keyUsage extension; ``days``: the validity window relative to now."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = ca_certificate(
        key,
        ca=ca,
        path_length=path_length,
        key_cert_sign=key_cert_sign,
        not_before=now + datetime.timedelta(days=days[0]),
        not_after=now + datetime.timedelta(days=days[1]),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), private_key_pem(key), private_key_pem(other)


def _root_problems(kubeconfigs: Any, cert: str, key: str) -> list[str]:
    return [
        p
        for p in _problems(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": cert}, caRootKeyPem=key))
        if p.startswith(("ca.", "caRootKeyPem"))
    ]


def test_an_imported_root_that_cannot_sign_intermediates_is_named(kubeconfigs: Any) -> None:
    from cryptography import x509

    cert, key, _ = _ca_pair(path_length=0)
    assert _root_problems(kubeconfigs, cert, key) == [
        "ca.rootCertPem: has pathlen:0, so no CA may sit below it: every cluster's intermediate would be "
        "rejected. Use a root without a path length (or pathlen of at least 1)"
    ]
    cert, key, _ = _ca_pair(key_cert_sign=False)
    assert _root_problems(kubeconfigs, cert, key) == [
        "ca.rootCertPem: has a keyUsage without keyCertSign: a CA certificate must carry keyCertSign to sign "
        "certificates"
    ]
    cert, key, _ = _ca_pair(key_cert_sign=None)
    assert _root_problems(kubeconfigs, cert, key) == [
        "ca.rootCertPem: has no keyUsage extension: a CA certificate must carry keyCertSign to sign certificates"
    ]
    cert, key, _ = _ca_pair(days=(-10, -1))
    end = x509.load_pem_x509_certificate(cert.encode()).not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert _root_problems(kubeconfigs, cert, key) == [f"ca.rootCertPem: has expired: its validity ended {end}"]
    cert, key, _ = _ca_pair(days=(1, 10))
    start = x509.load_pem_x509_certificate(cert.encode()).not_valid_before_utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    assert _root_problems(kubeconfigs, cert, key) == [f"ca.rootCertPem: is not valid yet: its validity starts {start}"]


def test_an_imported_root_must_be_one_certificate(kubeconfigs: Any) -> None:
    cert, key, _ = _ca_pair()
    other, _, _ = _ca_pair()
    assert _root_problems(kubeconfigs, cert + other, key) == [
        "ca.rootCertPem: holds 2 certificates; give exactly one here (the first of a chain is its leaf, not "
        "necessarily the CA you mean)"
    ]


def test_an_imported_root_key_must_be_a_secret(kubeconfigs: Any) -> None:
    cert, key, _ = _ca_pair()
    raw = _raw(kubeconfigs, ca={"source": "import", "rootCertPem": cert}, caRootKeyPem=key)
    with pytest.raises(ConfigError) as err:
        parse_settings(raw, secret_keys={"clusters"})
    assert err.value.problems == [
        "caRootKeyPem: is stored in plain text in the stack's config file; a private key must be a secret: "
        "`pulumi config rm istio-mesh:caRootKeyPem` then `pulumi config set --secret istio-mesh:caRootKeyPem < "
        "root-key.pem`"
    ]
    assert parse_settings(raw, secret_keys={"caRootKeyPem"}).ca.root_key_pem == key


def test_renewal_window_defaults_to_30_days_and_0_turns_it_off(kubeconfigs: Any) -> None:
    assert parse_settings(_raw(kubeconfigs)).ca.renew_before_days == 30
    assert parse_settings(_raw(kubeconfigs, ca={"renewBeforeDays": 0})).ca.renew_before_days == 0
    assert _problems(_raw(kubeconfigs, ca={"renewBeforeDays": -3})) == [
        "ca.renewBeforeDays: expected a positive integer, got -3"
    ]


def test_imported_root_is_used_and_checked(kubeconfigs: Any) -> None:
    cert, key, other = _ca_pair()
    s = parse_settings(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": cert}, caRootKeyPem=key))
    assert s.ca.root_cert_pem == cert and s.ca.root_key_pem == key
    assert key not in repr(s.ca)  # never printed

    problems = _problems(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": cert}, caRootKeyPem=other))
    assert any(p.startswith("caRootKeyPem:") and "does not match ca.rootCertPem" in p for p in problems)
    problems = _problems(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": "not a cert"}, caRootKeyPem=key))
    assert any(p.startswith("ca.rootCertPem:") and "not a PEM certificate" in p for p in problems)
    problems = _problems(_raw(kubeconfigs, ca={"source": "import"}))
    assert any(p.startswith("ca.rootCertPem:") for p in problems) and any(
        p.startswith("caRootKeyPem:") for p in problems
    )
    leaf, leaf_key, _ = _ca_pair(ca=False)
    problems = _problems(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": leaf}, caRootKeyPem=leaf_key))
    assert any("is not a CA certificate" in p for p in problems)
    assert any(p.startswith("ca.source:") for p in _problems(_raw(kubeconfigs, ca={"source": "vault"})))


def test_imported_root_signs_intermediates_and_creates_no_root(kubeconfigs: Any) -> None:
    from support.program import mesh_program

    cert, key, _ = _ca_pair()
    s = parse_settings(_raw(kubeconfigs, ca={"source": "import", "rootCertPem": cert}, caRootKeyPem=key))
    rec = run_program(mesh_program(s))
    assert not rec.of_type("tls:index/selfSignedCert:SelfSignedCert")
    assert not [r for r in rec.of_type("tls:index/privateKey:PrivateKey") if "root" in r.name]
    signed = rec.of_type("pulumi-python:dynamic/istiomesh:IntermediateCertificate")
    assert len(signed) == 2
    for reg in signed:
        assert reg.inputs["root_cert_pem"] == cert
        assert reg.inputs["root_key_pem"] == key and reg.is_secret("root_key_pem")
    # And the intermediates really are signed by the imported root.
    from cryptography import x509

    root = x509.load_pem_x509_certificate(cert.encode())
    for secret in [r for r in rec.of_type("kubernetes:core/v1:Secret") if r.k8s_name == "istio-system/cacerts"]:
        x509.load_pem_x509_certificate(
            base64.b64decode(secret.inputs["data"]["ca-cert.pem"])
        ).verify_directly_issued_by(root)
    assert rec.outputs["rootCertificatePem"] == cert


def test_loopback_detection() -> None:
    assert is_loopback_url("https://127.0.1.1:6443") and is_loopback_url("https://localhost:6443")
    assert is_loopback_url("https://[::1]:6443")
    assert not is_loopback_url("https://10.0.0.1:6443") and not is_loopback_url("https://api.example:443")


# ---- the program itself -----------------------------------------------------------------------------


def test_main_rejects_bad_config_before_registering_anything(tmp_path: Any) -> None:
    from support.mocks import RecordingMocks, RecordingMonitor

    path = write_kubeconfig(str(tmp_path), "cluster1", "https://10.0.1.1:6443")
    config = {"meshId": "mesh1", "clusters": [{"name": "cluster1", "network": "network1", "kubeconfig": path}]}
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="istio-mesh", stack="test", preview=False, monitor=monitor)
    with pytest.raises(pulumi.RunError) as err:
        pulumi.runtime.test(run_main(config, str(tmp_path)))()
    assert "clusters: a multi-cluster mesh needs at least two clusters, got 1" in str(err.value)
    assert monitor.registrations == []


def test_main_builds_the_mesh_from_stack_config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import stack_config.preflight

    # The preflight would ask these (made-up) API servers for /version; here every one answers.
    monkeypatch.setattr(stack_config.preflight, "api_server_error", lambda c, timeout: None)
    clusters = [
        {
            "name": f"cluster{i}",
            "network": f"network{i}",
            "kubeconfig": os.path.basename(write_kubeconfig(str(tmp_path), f"cluster{i}", f"https://10.0.{i}.1:6443")),
            "eastWestGateway": {"externalIPs": [f"10.0.{i}.10"]},
        }
        for i in (1, 2)
    ]
    # Relative kubeconfig paths resolve against the project directory (where pulumi runs the program).
    rec = run_program(run_main({"meshId": "mesh1", "clusters": clusters, "lab": "true"}, str(tmp_path)))
    assert len(rec.of_type("istiomesh:index:MultiPrimaryMesh")) == 1
    assert sorted(r.name for r in rec.of_type("pulumi:providers:kubernetes")) == ["k8s-cluster1", "k8s-cluster2"]


def test_helloworld_versions_are_said_per_cluster(kubeconfigs: Any) -> None:
    s = parse_settings(_raw(kubeconfigs, 3, samples={"enabled": True}))
    assert [c.helloworld_versions for c in s.clusters] == [("v1",), ("v2",), ()]
    raw = _raw(kubeconfigs, samples={"enabled": True})
    raw["clusters"][0]["helloworldVersions"] = ["v1", "latest", "v1"]
    raw["clusters"][1]["helloworldVersions"] = "v2"
    problems = _problems(raw)
    assert "clusters[0].helloworldVersions[1]: 'latest' is not a helloworld version" in "\n".join(problems)
    assert "clusters[0].helloworldVersions[2]: 'v1' is listed twice" in problems
    assert any(p.startswith("clusters[1].helloworldVersions: expected a list") for p in problems)


def test_samples_without_helloworld_anywhere_is_an_error(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs, samples={"enabled": True})
    for c in raw["clusters"]:
        c.pop("helloworldVersions")
    problems = _problems(raw)
    assert any(p.startswith("samples.enabled: is true but no cluster runs helloworld") for p in problems)
    for c in raw["clusters"]:
        c["helloworldVersions"] = []
    assert any("clusters[].helloworldVersions" in p for p in _problems(raw))


def test_an_unreachable_cluster_stays_in_the_config_but_leaves_the_mesh(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs, 3)
    raw["clusters"][2]["unreachable"] = True
    s = parse_settings(raw)
    assert [c.name for c in s.members] == ["cluster1", "cluster2"]
    assert s.networks == ("network1", "network2")
    raw["clusters"][2]["unreachable"] = "maybe"
    assert any(p.startswith("clusters[2].unreachable: expected true or false") for p in _problems(raw))
    for c in raw["clusters"]:
        c["unreachable"] = True
    assert "clusters: every cluster is marked unreachable; at least one must remain in the mesh" in _problems(raw)


def test_a_cluster_entry_is_the_packages_mesh_cluster_handed_over_with_its_provider(mesh_settings: Any) -> None:
    """One class for a cluster: the stack's entry is a ``MeshCluster`` (plus where its kubeconfig was read);
    the mesh gets the members as they are, each with its provider, and no unreachable one."""
    import dataclasses

    from istio_mesh import MeshCluster
    from stack_config import mesh_args

    settings = mesh_settings(3)
    settings = dataclasses.replace(
        settings, clusters=(*settings.clusters[:2], dataclasses.replace(settings.clusters[2], unreachable=True))
    )
    providers: dict[str, Any] = {c.name: object() for c in settings.clusters}
    args = mesh_args(settings, providers)
    assert all(isinstance(c, MeshCluster) for c in settings.clusters)
    assert [c.name for c in args.clusters] == ["cluster1", "cluster2"]
    for given, handed in zip(settings.clusters, args.clusters, strict=False):
        assert handed.provider is providers[given.name]
        assert dataclasses.replace(handed, provider=None) == given
