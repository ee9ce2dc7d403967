"""``verify``'s diagnosis: facts of a healthy two-cluster mesh, then one failure mode at a time.

The facts are plain data shaped like what the collectors read (istiod's debug endpoints, the clusters'
objects); the certificates are real, so the CA checks verify real signatures. The collectors run
against the lab in the end-to-end tier.
"""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.program import write_kubeconfig

from istio_mesh.intermediate_cert import sign_intermediate
from verify import (
    ClusterFacts,
    IstiodFacts,
    RemoteSecretFacts,
    collect_cluster,
    diagnose,
    endpoints_of,
    main,
    render_text,
    report_json,
)
from verify.access import bounded
from verify.cli import VerifyUsageError, istiod_addresses, targets_from_config

HOST = "helloworld.sample.svc.cluster.local"
NOW = datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _cert(subject: x509.Name, issuer: x509.Name, pub: Any, signer: Any, ca: bool) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def _name(**attrs: str) -> x509.Name:
    oids = {"O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME, "L": NameOID.LOCALITY_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


class Pki:
    """A mesh root, one intermediate per cluster, istiod serving certs, and a stray self-signed istiod CA."""

    def __init__(self) -> None:
        root_key = _key()
        root_name = _name(O="Istio", CN="Root CA")
        self.root = _pem(_cert(root_name, root_name, root_key.public_key(), root_key, ca=True))
        self.intermediate: dict[str, str] = {}
        self.serving: dict[str, str] = {}
        for c in ("cluster1", "cluster2"):
            ikey = _key()
            pub = ikey.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self.intermediate[c] = sign_intermediate(
                public_key_pem=pub.decode(),
                cluster_name=c,
                root_cert_pem=self.root,
                root_key_pem=_key_pem(root_key),
                validity_days=1,
            )
            inter = x509.load_pem_x509_certificate(self.intermediate[c].encode())
            self.serving[c] = _pem(_cert(x509.Name([]), inter.subject, _key().public_key(), ikey, ca=False))
        own_key = _key()
        own = _name(O="cluster.local")
        self.self_signed_serving = _pem(_cert(x509.Name([]), own, _key().public_key(), own_key, ca=False))
        other_key = _key()
        self.other_root = _pem(_cert(root_name, root_name, other_key.public_key(), other_key, ca=True))


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


OTHER = {"cluster1": "cluster2", "cluster2": "cluster1"}
NET = {"cluster1": "network1", "cluster2": "network2"}
GW = {"cluster1": "127.0.1.1", "cluster2": "127.0.2.1"}
POD = {"cluster1": "10.1.1.5", "cluster2": "10.2.1.7"}


def healthy(pki: Pki) -> tuple[list[ClusterFacts], list[IstiodFacts]]:
    clusters, istiods = [], []
    for c in ("cluster1", "cluster2"):
        o = OTHER[c]
        clusters.append(
            ClusterFacts(
                name=c,
                expected_network=NET[c],
                network_label=NET[c],
                cacerts_keys=["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"],
                root_pem=pki.root,
                intermediate_pem=pki.intermediate[c],
                remote_secrets=[
                    RemoteSecretFacts(
                        name=f"istio-remote-secret-{o}",
                        annotation_cluster=o,
                        keys=[o],
                        servers={o: f"https://{GW[o]}:20{o[-1]}43"},
                        access={o: None},
                        missing_permissions={o: []},
                    )
                ],
                gateway_exists=True,
                gateway_addresses=[GW[c]],
                gateway_network_label=NET[c],
                service_endpoints=[POD[c]],
                service_exists=True,
            )
        )
        istiods.append(
            IstiodFacts(
                cluster=c,
                address=f"http://{GW[c]}:20{c[-1]}08",
                ready=True,
                clusters=[
                    {"id": c, "secretName": "", "syncStatus": "synced"},
                    {"id": o, "secretName": f"istio-system/istio-remote-secret-{o}", "syncStatus": "synced"},
                ],
                gateways=[
                    {"network": NET[k], "cluster": k, "address": GW[k], "port": 15443} for k in ("cluster1", "cluster2")
                ],
                endpoints=[
                    {"cluster": k, "network": NET[k], "address": POD[k], "port": 5000, "labels": {}, "tlsMode": ""}
                    for k in ("cluster1", "cluster2")
                ],
                serving_cert_pem=pki.serving[c],
            )
        )
    return clusters, istiods


def checks(findings: list[Any]) -> set[tuple[str, str]]:
    return {(f.cluster, f.check) for f in findings}


def test_a_healthy_mesh_has_no_findings_and_reports_remote_endpoints_behind_the_gateway(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert findings == []
    doc = report_json("mesh1", clusters, istiods, findings, HOST, pki.root)
    assert doc["ok"] is True
    c1 = next(i for i in doc["istiods"] if i["cluster"] == "cluster1")
    via = {e["cluster"]: e["via"] for e in c1["endpoints"]}
    assert via == {"cluster1": "direct", "cluster2": "127.0.2.1:15443"}
    assert c1["ca"]["chainsToMeshRoot"] is True
    assert "O=Istio" in c1["ca"]["issuer"] and "L=cluster1" in c1["ca"]["issuer"]
    text = render_text(doc)
    assert text.splitlines()[-1].startswith("OK:")
    assert "cluster2/network2 10.2.1.7:5000 (through gateway 127.0.2.1:15443)" in text


def test_remote_secret_key_not_the_cluster_name(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    rs = clusters[0].remote_secrets[0]
    rs.keys = ["cluster-two"]
    rs.access = {"cluster-two": None}
    rs.missing_permissions = {"cluster-two": []}
    istiods[0].clusters[1] = {
        "id": "cluster-two",
        "secretName": "istio-system/istio-remote-secret-cluster2",
        "syncStatus": "synced",
    }
    istiods[0].endpoints = [e for e in istiods[0].endpoints if e["cluster"] == "cluster1"] + [
        {"cluster": "cluster-two", "network": "network2", "address": POD["cluster2"], "port": 5000}
    ]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    causes = {f.check: f.cause for f in findings if f.cluster == "cluster1"}
    assert "data key(s) ['cluster-two'], not 'cluster2'" in causes["remote-secret"]
    assert checks(findings) == {("cluster1", "remote-secret"), ("cluster1", "sync"), ("cluster1", "endpoints")}
    assert any("'cluster-two' that is not in the mesh" in f.cause for f in findings)


def test_api_server_unreachable_or_unauthorised(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[1].remote_secrets[0].access["cluster1"] = "unreachable from here: connection refused"
    clusters[0].remote_secrets[0].access["cluster2"] = "unauthorised: the API server rejects the token (HTTP 401)"
    istiods[1].clusters[1]["syncStatus"] = "timeout"
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "remote-access"), ("cluster1", "remote-access"), ("cluster2", "sync")}
    text = " | ".join(f.cause for f in findings)
    assert "cluster1's API server https://127.0.1.1:20143: unreachable" in text
    assert "HTTP 401" in text
    assert "has not synced cluster1 (status 'timeout')" in text


def test_reader_permissions_removed(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[1].remote_secrets[0].missing_permissions["cluster1"] = ["list pods", "watch pods"]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "remote-access")}
    assert "is not authorised in cluster1: it cannot list pods, watch pods" in findings[0].cause


def test_network_label_missing(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[1].network_label = None
    for i in istiods:
        for e in i.endpoints:
            if e["cluster"] == "cluster2":
                e["network"] = ""
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert ("cluster2", "network-label") in checks(findings)
    assert {f.cluster for f in findings if f.check == "endpoints"} == {"cluster1", "cluster2"}
    label = next(f for f in findings if f.check == "network-label")
    assert "topology.istio.io/network" in label.cause and "is missing" in label.cause and "'network2'" in label.cause


def test_pods_injected_before_a_network_change_are_named_not_the_namespace_label(pki: Pki) -> None:
    """cluster2 moved to network9 (namespace label and config agree), but its helloworld pod was injected on
    network2 and still carries that label: istiod goes by the pod's label. The finding names the pod and
    says to recreate it; the endpoint findings point there, not at the (correct) namespace label."""
    clusters, istiods = healthy(pki)
    clusters[1].expected_network = clusters[1].network_label = clusters[1].gateway_network_label = "network9"
    clusters[1].service_pods = [
        {"name": "helloworld-v2-7d9", "ip": POD["cluster2"], "network": "network2"},
        {"name": "helloworld-v2-new", "ip": "10.2.1.9", "network": "network9"},  # recreated since: fine
    ]
    clusters[0].service_pods = [{"name": "helloworld-v1-abc", "ip": POD["cluster1"], "network": "network1"}]
    for i in istiods:
        i.gateways = [g if g["cluster"] == "cluster1" else {**g, "network": "network9"} for g in i.gateways]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "pod-network"), ("cluster1", "endpoints"), ("cluster2", "endpoints")}
    pod = next(f for f in findings if f.check == "pod-network")
    assert "helloworld-v2-7d9" in pod.cause and "helloworld-v2-new" not in pod.cause
    assert "topology.istio.io/network=network2" in pod.cause and "on network network9" in pod.cause
    assert "rollout restart" in pod.fix
    for f in findings:
        if f.check == "endpoints":
            assert "on network network2, not network9" in f.cause
            assert "recreate the pods" in f.fix and "label namespace" not in f.fix


def test_pods_without_a_network_label_are_not_a_finding(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[0].service_pods = [{"name": "helloworld-v1-abc", "ip": POD["cluster1"], "network": None}]
    assert diagnose(clusters, istiods, pki.root, HOST) == []


def test_gateway_without_address(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[1].gateway_addresses = []
    for i in istiods:
        i.gateways = [g for g in i.gateways if g["network"] != "network2"]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "gateway"), ("cluster1", "gateway")}
    assert any("east-west gateway of cluster2 has no address" in f.cause for f in findings)
    doc = report_json("mesh1", clusters, istiods, findings, HOST, pki.root)
    c1 = next(i for i in doc["istiods"] if i["cluster"] == "cluster1")
    assert {e["cluster"]: e["via"] for e in c1["endpoints"]}["cluster2"] is None
    assert "through gateway NONE" in render_text(doc)


def test_istiod_on_its_self_signed_ca_because_cacerts_was_missing(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[0].cacerts_keys, clusters[0].root_pem, clusters[0].intermediate_pem = [], None, None
    istiods[0].serving_cert_pem = pki.self_signed_serving
    istiods[0].tls_error = "unable to get local issuer certificate"
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster1", "ca")}
    causes = " | ".join(f.cause for f in findings)
    assert "cacerts in cluster1 is missing" in causes
    assert "self-signed CA (issuer O=cluster.local)" in causes


def test_istiod_still_on_an_old_intermediate(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    istiods[0].serving_cert_pem = pki.serving["cluster2"]  # chains to the root, wrong intermediate
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster1", "ca")}
    assert "other than the intermediate in its cacerts" in findings[0].cause


def test_roots_that_differ(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[1].root_pem = pki.other_root
    # Without a mesh root (a mesh Pulumi did not build): the clusters disagree.
    findings = diagnose(clusters, istiods, None, HOST)
    assert ("mesh", "root") in checks(findings)
    # With the stack's root: the odd one out is named; its intermediate is not signed by it either.
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "root"), ("cluster2", "ca")}


def test_unreachable_istiod_is_a_finding_not_a_crash(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    istiods[1] = IstiodFacts(cluster="cluster2", address="-", error="cannot reach istiod: connection refused")
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster2", "istiod")}
    doc = report_json("mesh1", clusters, istiods, findings, HOST, pki.root)
    assert doc["ok"] is False
    assert "unreachable: cannot reach istiod" in render_text(doc)


def test_no_remote_secret_at_all(pki: Pki) -> None:
    clusters, istiods = healthy(pki)
    clusters[0].remote_secrets = []
    istiods[0].clusters = istiods[0].clusters[:1]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert ("cluster1", "remote-secret") in checks(findings)
    assert any("has no remote secret for cluster2" in f.cause for f in findings)


def test_endpoint_shardz_flattening() -> None:
    """The shape pilot-discovery 1.30 serves on /debug/endpointShardz (as seen on the lab)."""
    shardz = {
        HOST: {
            "sample": {
                "Shards": {
                    "Kubernetes/cluster1": [
                        {
                            "Addresses": ["10.1.1.5"],
                            "EndpointPort": 5000,
                            "Network": "network1",
                            "Labels": {"version": "v1"},
                        }
                    ],
                    "Kubernetes/cluster2": [
                        {
                            "Addresses": ["10.2.1.7"],
                            "EndpointPort": 5000,
                            "Network": "network2",
                            "Labels": {"version": "v2"},
                        }
                    ],
                }
            }
        },
        "other.sample.svc.cluster.local": {
            "sample": {"Shards": {"Kubernetes/cluster1": [{"Addresses": ["10.1.1.9"]}]}}
        },
    }
    rows = endpoints_of(shardz, HOST)
    assert [(r["cluster"], r["network"], r["address"], r["port"]) for r in rows] == [
        ("cluster1", "network1", "10.1.1.5", 5000),
        ("cluster2", "network2", "10.2.1.7", 5000),
    ]
    assert endpoints_of(shardz, "missing.sample.svc.cluster.local") == []


def test_bad_command_line_input_exits_2_before_anything_is_read(tmp_path: Any, capsys: Any) -> None:
    bad = tmp_path / "mesh.yaml"
    bad.write_text("meshId: mesh1\nclusters:\n  - name: cluster1\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "clusters" in err and "nothing was changed" in err
    assert main(["--config", str(tmp_path / "absent.yaml")]) == 2


def _mesh_config(tmp_path: Any, *clusters: tuple[int, str]) -> Any:
    """A ``--config`` file naming each (i, cluster) with network n<i> and a kubeconfig for 10.0.0.<i>."""
    cfg = tmp_path / "mesh.yaml"
    cfg.write_text(
        "meshId: mesh1\nclusters:\n"
        + "".join(
            f"  - {{name: {c}, network: n{i}, context: {c}, "
            f"kubeconfig: {write_kubeconfig(str(tmp_path), c, f'https://10.0.0.{i}:6443')}}}\n"
            for i, c in clusters
        )
    )
    return cfg


def test_istiod_flag_names_a_mesh_cluster(tmp_path: Any, capsys: Any) -> None:
    cfg = _mesh_config(tmp_path, (1, "cluster1"), (2, "cluster2"))
    assert main(["--config", str(cfg), "--istiod", "cluster9=127.0.0.1:1,127.0.0.1:2"]) == 2
    assert "CLUSTER one of ['cluster1', 'cluster2']" in capsys.readouterr().err
    assert main(["--config", str(cfg), "--istiod", "cluster1=127.0.0.1"]) == 2


def test_a_cluster_marked_unreachable_has_left_the_mesh_and_is_not_checked(
    kubeconfigs: Callable[..., list[dict[str, Any]]],
) -> None:
    entries = kubeconfigs(3)
    entries[2]["unreachable"] = True
    mesh_id, targets = targets_from_config({"meshId": "mesh1", "clusters": entries}, ".")
    assert mesh_id == "mesh1"
    assert [t.name for t in targets] == ["cluster1", "cluster2"]


def test_a_network_with_two_gateway_addresses_is_fine_and_both_are_reported(pki: Pki) -> None:
    """A LoadBalancer Service with externalIPs too (cluster3 of cluster-lab-3) gives istiod two gateways."""
    clusters, istiods = healthy(pki)
    for i in istiods:
        i.gateways.append({"network": "network2", "cluster": "cluster2", "address": "192.0.2.3", "port": 15443})
    assert diagnose(clusters, istiods, pki.root, HOST) == []
    doc = report_json("mesh1", clusters, istiods, [], HOST, pki.root)
    c1 = next(i for i in doc["istiods"] if i["cluster"] == "cluster1")
    assert {e["cluster"]: e["via"] for e in c1["endpoints"]}["cluster2"] == "127.0.2.1:15443, 192.0.2.3:15443"
    # ... but a network whose gateways all listen elsewhere is named.
    for i in istiods:
        i.gateways = [{**g, "port": 443} if g["network"] == "network2" else g for g in i.gateways]
    findings = diagnose(clusters, istiods, pki.root, HOST)
    assert checks(findings) == {("cluster1", "gateway"), ("cluster2", "gateway")}
    assert "port(s) [443], not 15443" in findings[0].cause


class _FakeApiServer(http.server.BaseHTTPRequestHandler):
    """Answers GETs from a table {path: (status, body)}; anything else is a 404 Status."""

    routes: dict[str, tuple[int, dict[str, Any]]] = {}

    def do_GET(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        status, body = self.routes.get(path, (404, {"kind": "Status", "code": 404, "message": f"{path} not found"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_api() -> Iterator[Callable[[dict[str, tuple[int, dict[str, Any]]]], dict[str, Any]]]:
    """``fake_api(routes)`` serves the routes on 127.0.0.1 and returns a kubeconfig (as data) for it."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(routes: dict[str, tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        handler = type("Handler", (_FakeApiServer,), {"routes": routes})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{srv.server_address[1]}"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
            "users": [{"name": "u", "user": {"token": "t"}}],
        }

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_a_refused_read_is_a_finding_and_nothing_is_concluded_from_it(
    fake_api: Callable[[dict[str, tuple[int, dict[str, Any]]]], dict[str, Any]],
) -> None:
    """403 on cacerts and 500 on the gateway Service: reported as 'api' findings naming the object and the
    server's message; no 'ca' or 'gateway' finding is made up from the reads that failed."""
    forbidden = 'secrets "cacerts" is forbidden: User "u" cannot get resource "secrets"'
    kubeconfig = fake_api(
        {
            "/api/v1/namespaces/istio-system": (
                200,
                {"metadata": {"name": "istio-system", "labels": {"topology.istio.io/network": "network1"}}},
            ),
            "/api/v1/namespaces/istio-system/secrets/cacerts": (403, {"kind": "Status", "message": forbidden}),
            "/api/v1/namespaces/istio-system/secrets": (200, {"items": []}),
            "/api/v1/namespaces/istio-system/services/istio-eastwestgateway": (
                500,
                {"kind": "Status", "message": "etcdserver: request timed out"},
            ),
        }
    )
    facts = collect_cluster("cluster1", kubeconfig, None, "network1", ("helloworld", "sample"))
    assert facts.api_error is None
    assert facts.read_errors == {
        "cacerts": f"Secret istio-system/cacerts: HTTP 403: {forbidden}",
        "gateway": "Service istio-system/istio-eastwestgateway: HTTP 500: etcdserver: request timed out",
    }
    assert facts.network_label == "network1" and not facts.service_exists  # 404: absent, not an error
    other = ClusterFacts(name="cluster2", expected_network="network2", read_errors={"remote-secrets": "x"})
    findings = diagnose([facts, other], [], None, HOST)
    assert {f for f in checks(findings) if f[0] == "cluster1"} == {("cluster1", "api"), ("cluster1", "remote-secret")}
    # A remote-secret listing that failed: the read error, not "no remote secret for cluster1".
    assert ("cluster2", "api") in checks(findings) and ("cluster2", "remote-secret") not in checks(findings)
    api = [f.cause for f in findings if f.cluster == "cluster1" and f.check == "api"]
    assert any("Secret istio-system/cacerts: HTTP 403" in c and "checks of cacerts skipped" in c for c in api)
    assert any("istio-eastwestgateway: HTTP 500" in c for c in api)


def test_the_services_running_pods_are_read_with_their_network_label(
    fake_api: Callable[[dict[str, tuple[int, dict[str, Any]]]], dict[str, Any]],
) -> None:
    def pod(name: str, phase: str, labels: dict[str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": labels},
            "status": {"phase": phase, "podIP": f"10.0.0.{len(name)}"},
        }

    kubeconfig = fake_api(
        {
            "/api/v1/namespaces/istio-system": (200, {"metadata": {"name": "istio-system"}}),
            "/api/v1/namespaces/sample/services/helloworld": (
                200,
                {
                    "metadata": {"name": "helloworld"},
                    "spec": {"selector": {"app": "helloworld"}, "ports": [{"port": 5000}]},
                },
            ),
            "/apis/discovery.k8s.io/v1/namespaces/sample/endpointslices": (200, {"items": []}),
            "/api/v1/namespaces/sample/pods": (
                200,
                {
                    "items": [
                        pod("hw-b", "Running", {"app": "helloworld", "topology.istio.io/network": "network2"}),
                        pod("hw-a", "Running", {"app": "helloworld"}),
                        pod("hw-gone", "Succeeded", {"app": "helloworld", "topology.istio.io/network": "x"}),
                    ]
                },
            ),
        }
    )
    facts = collect_cluster("cluster2", kubeconfig, None, "network9", ("helloworld", "sample"))
    assert facts.read_errors == {} and facts.service_exists
    assert [(p["name"], p["network"]) for p in facts.service_pods] == [("hw-a", None), ("hw-b", "network2")]


def test_an_unreachable_api_server_is_one_finding(
    fake_api: Callable[[dict[str, tuple[int, dict[str, Any]]]], dict[str, Any]],
) -> None:
    kubeconfig = fake_api({})
    port = kubeconfig["clusters"][0]["cluster"]["server"].rsplit(":", 1)[1]
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    kubeconfig["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{closed}"
    assert port != str(closed)
    facts = collect_cluster("cluster1", kubeconfig, None, "network1", ("helloworld", "sample"))
    assert facts.api_error and "refused" in facts.api_error.lower()
    findings = diagnose([facts], [], None, HOST)
    assert [(f.cluster, f.check) for f in findings] == [("cluster1", "api")]


def test_istiod_addresses_file_maps_clusters_to_their_istiod(tmp_path: Any, capsys: Any) -> None:
    good = tmp_path / "clusters.json"
    good.write_text(
        json.dumps(
            [
                {
                    "name": "cluster1",
                    "istiod": {"http": "127.0.1.1:20108", "tls": "127.0.1.1:20112", "xds": "127.0.1.1:20110"},
                    "server": "ignored",
                },
                {"name": "cluster2", "istiod": {"http": "127.0.2.1:20208", "tls": "127.0.2.1:20212"}},
            ]
        )
    )
    assert istiod_addresses(str(good)) == {
        "cluster1": ("127.0.1.1:20108", "127.0.1.1:20112", "127.0.1.1:20110"),
        "cluster2": ("127.0.2.1:20208", "127.0.2.1:20212", None),
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"name": "cluster1", "istiod": {"http": "127.0.1.1"}}]))
    with pytest.raises(VerifyUsageError, match=r"cluster1.*'http' and 'tls' as HOST:PORT"):
        istiod_addresses(str(bad))
    # On the command line: every mesh cluster must be listed, else exit 2 before anything is read.
    cfg = _mesh_config(tmp_path, (1, "cluster1"), (3, "cluster3"))
    assert main(["--config", str(cfg), "--istiod-addresses", str(good)]) == 2
    assert "has no address for cluster3" in capsys.readouterr().err


def test_bounded_gives_up_on_a_call_that_does_not_return() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"port-forward to x: no answer within 0s"):
        bounded(lambda: time.sleep(30), 0.2, "port-forward to x")
    assert time.monotonic() - started < 5
    assert bounded(lambda: 42, 5, "answer") == 42
    empty: dict[str, int] = {}
    with pytest.raises(KeyError):
        bounded(lambda: empty["missing"], 5, "lookup")


def test_a_failure_inside_the_proxy_view_is_a_finding_not_a_crash(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """An unexpected exception while asking one istiod for its proxy view becomes that cluster's 'proxy'
    finding (with the exception named); the rest of the report stands."""
    import verify.cli as cli

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("podIP")

    monkeypatch.setattr(cli, "collect_cluster", lambda name, *a, **k: ClusterFacts(name=name, expected_network="n1"))
    monkeypatch.setattr(cli, "collect_istiod", lambda name, access, host, root: IstiodFacts(cluster=name, address="x"))
    monkeypatch.setattr(cli, "collect_proxy", boom)
    monkeypatch.setattr(cli, "envoy_protos", lambda: None)
    target = cli.Target(name="cluster1", network="n1", kubeconfig={}, context=None)
    doc = cli.run_verify(
        [target], {"cluster1": lambda: cast(Any, None)}, None, "helloworld.sample", "mesh1", proxy_view=True
    )
    causes = [f["cause"] for f in doc["findings"] if f["check"] == "proxy"]
    assert causes == [
        "cannot get cluster1's proxy view from istiod: the proxy view failed unexpectedly: KeyError: 'podIP'"
    ]
    assert "KeyError" in capsys.readouterr().err  # the traceback, for the bug report


def test_a_bug_in_verify_exits_3_not_1(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import verify.cli as cli

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unexpected")

    cfg = _mesh_config(tmp_path, (1, "cluster1"), (2, "cluster2"))
    monkeypatch.setattr(cli, "run_verify", boom)
    assert cli.main(["--config", str(cfg), "--json"]) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "internal error (RuntimeError: unexpected)" in captured.err


def test_the_proxy_view_is_on_by_default_and_can_be_turned_off() -> None:
    from verify.cli import build_parser

    assert build_parser().parse_args(["--stack", "s"]).proxy_view is True
    assert build_parser().parse_args(["--stack", "s", "--no-proxy-view"]).proxy_view is False
    assert build_parser().parse_args(["--stack", "s", "--proxy-view"]).proxy_view is True
