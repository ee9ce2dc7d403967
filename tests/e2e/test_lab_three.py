"""N=3: adding a list entry gives a third primary, 6 remote secrets and 3 intermediates under one root."""

from __future__ import annotations

import base64
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from harness import ROOT, Lab, Stack, k8s_api

CLUSTERS = ("cluster1", "cluster2", "cluster3")


@pytest.fixture(scope="module")
def stack3(tc_env: dict[str, str], e2e_backend: Path) -> Any:
    lab = Lab(env=tc_env, clusters=3)
    lab.down(purge=True)
    lab.up()
    s = Stack("cluster-lab-3", tc_env, e2e_backend / "three")
    s.init()
    yield s
    # Destroy is tested on two clusters (test_lab_mesh); here the disposable lab is simply purged,
    # which saves about three minutes of CI. `stack rm --force` drops the state with it.
    s.remove()
    lab.down(purge=True)


def _core(cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(k8s_api(Path(os.environ.get("LAB_DIR", ROOT / ".lab")) / cluster / "kubeconfig"))


def test_three_clusters(stack3: Stack) -> None:
    stack3.up()
    out = stack3.outputs()
    roots = set()
    intermediates = set()
    for reader, source in itertools.permutations(CLUSTERS, 2):
        secret = _core(reader).read_namespaced_secret(f"istio-remote-secret-{source}", "istio-system")
        assert list(secret.data) == [source]
        kubeconfig = yaml.safe_load(base64.b64decode(secret.data[source]))
        from kubernetes import client

        assert client.CoreV1Api(k8s_api(kubeconfig)).list_namespace().items  # authenticates to the source
    for c in CLUSTERS:
        data = _core(c).read_namespaced_secret("cacerts", "istio-system").data
        ca = x509.load_pem_x509_certificate(base64.b64decode(data["ca-cert.pem"]))
        root = x509.load_pem_x509_certificate(base64.b64decode(data["root-cert.pem"]))
        ca.verify_directly_issued_by(root)
        roots.add(root.fingerprint(ca.signature_hash_algorithm))
        intermediates.add(ca.serial_number)
        held = out["clusters"][c]["remoteSecrets"]
        assert held == sorted(f"istio-remote-secret-{o}" for o in CLUSTERS if o != c)
        # cluster1/2: the lab's load balancer; cluster3: the walkthrough's externalIPs (Pulumi.cluster-lab-3.yaml).
        expected = "192.0.2.3" if c == "cluster3" else f"127.0.{c[-1]}.1"
        assert out["clusters"][c]["eastWestGatewayAddress"] == expected
    assert len(roots) == 1 and len(intermediates) == 3
    remote = [
        s
        for c in CLUSTERS
        for s in _core(c).list_namespaced_secret("istio-system").items
        if s.metadata.name.startswith("istio-remote-secret-")
    ]
    assert len(remote) == 6
    svc = _core("cluster3").read_namespaced_service("istio-eastwestgateway", "istio-system")
    assert svc.spec.external_ips == ["192.0.2.3"]  # set by the program's transform, as `kubectl patch` did
    stack3.cli("preview", "--expect-no-changes")


def test_verify_passes_on_three_clusters(stack3: Stack, tc_env: dict[str, str]) -> None:
    """Every istiod of the three syncs the other two, signs under the one root, knows the three networks'
    gateways (cluster3's includes the walkthrough's externalIP) and sees the samples in every cluster
    that runs them: helloworld in cluster1 and cluster2 (the walkthrough's layout), sleep in all three."""
    import json

    from harness import run, wait_for

    def verify(*extra: str) -> dict[str, Any]:
        proc = run(
            [str(ROOT / "scripts" / "verify"), "--stack", stack3.name, "--lab", "--json", *extra],
            stack3.env,
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stderr[-2000:]
        doc: dict[str, Any] = json.loads(proc.stdout)
        return doc

    lab = Lab(env=tc_env, clusters=3)
    lab.istiod("start")
    try:
        wait_for("verify to pass on three clusters", lambda: verify()["ok"], timeout=150, interval=3)
        # cluster3's gateway Service has the walkthrough's externalIP and, being type LoadBalancer, the
        # lab load balancer's address too: istiod lists both for network3.
        gateways = {
            ("network1", "127.0.1.1"),
            ("network2", "127.0.2.1"),
            ("network3", "127.0.3.1"),
            ("network3", "192.0.2.3"),
        }
        via_gateway = {
            "cluster1": "127.0.1.1:15443",
            "cluster2": "127.0.2.1:15443",
            "cluster3": "127.0.3.1:15443, 192.0.2.3:15443",
        }
        for service, runs_in in (("helloworld.sample", {"cluster1", "cluster2"}), ("sleep.sample", set(CLUSTERS))):
            doc = verify("--service", service)
            assert doc["ok"], doc["findings"]
            for i in doc["istiods"]:
                assert {e["id"] for e in i["syncedClusters"] if e["syncStatus"] == "synced"} == set(CLUSTERS)
                assert {(g["network"], g["address"]) for g in i["gateways"]} == gateways
                assert i["ca"]["chainsToMeshRoot"]
                seen = {(e["cluster"], e["via"]) for e in i["endpoints"]}
                assert seen == {(c, "direct" if c == i["cluster"] else via_gateway[c]) for c in runs_in}, service
    finally:
        lab.istiod("stop")
