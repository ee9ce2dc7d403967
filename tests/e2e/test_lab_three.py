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
