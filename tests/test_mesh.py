"""The mesh the program registers, checked against reference/ISTIO_FACTS.md under recording mocks."""

from __future__ import annotations

import base64
import datetime
import itertools
from typing import Any

import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from support.mocks import FAKE_CLUSTER_CA, FAKE_TOKEN_PREFIX, Recorded, Registration, mock_private_key_pem, run_program
from support.program import mesh_program

from istio_mesh import constants as c
from istio_mesh.create_guard import CREATED_BY_ANNOTATION
from istio_mesh.root_ca import pem_fingerprint
from istio_mesh.transforms import delete_crds_on_destroy

SECRET = "kubernetes:core/v1:Secret"
CHART = "kubernetes:helm.sh/v4:Chart"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
GATEWAY_CR = "kubernetes:networking.istio.io/v1:Gateway"
ROOT_KEY = mock_private_key_pem("mesh-root-ca-key", 4096)
INTERMEDIATE = "pulumi-python:dynamic/istiomesh:IntermediateCertificate"
CA_USAGES = ["digital_signature", "content_commitment", "key_encipherment", "cert_signing"]


def _b64d(value: str) -> str:
    return base64.b64decode(value).decode()


def _build(settings: Any) -> Recorded:
    return run_program(mesh_program(settings))


# ---- trust ------------------------------------------------------------------------------------------


def test_root_ca_has_istio_root_fields(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    key = rec.one("tls:index/privateKey:PrivateKey", name_contains="root-ca")
    assert (key.inputs["algorithm"], key.inputs["rsaBits"]) == ("RSA", 4096)
    cert = rec.one("tls:index/selfSignedCert:SelfSignedCert")
    assert cert.inputs["subject"] == {"organization": "Istio", "commonName": "Root CA"}
    assert cert.inputs["validityPeriodHours"] == 3650 * 24
    assert cert.inputs["isCaCertificate"] is True
    assert sorted(cert.inputs["allowedUses"]) == sorted(CA_USAGES)
    assert cert.inputs["privateKeyPem"] == ROOT_KEY
    # The generated root is protected against accidental deletion by default.
    assert key.protect and cert.protect


def test_lab_style_root_is_not_protected(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(ca={"protect": False}))
    assert not rec.one("tls:index/privateKey:PrivateKey", name_contains="root-ca").protect
    assert not rec.one("tls:index/selfSignedCert:SelfSignedCert").protect


def _pem_public(pem: str) -> bytes:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_each_cluster_gets_an_intermediate_signed_by_the_one_root(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(3))
    root_pem = rec.outputs["rootCertificatePem"]
    root = x509.load_pem_x509_certificate(root_pem.encode())
    signed = rec.of_type(INTERMEDIATE)
    assert len(signed) == 3
    assert len(rec.of_type("tls:index/selfSignedCert:SelfSignedCert")) == 1
    serials = set()
    for cluster in ("cluster1", "cluster2", "cluster3"):
        own_key = rec.one("tls:index/privateKey:PrivateKey", name_contains=f"-{cluster}-ca-")
        assert (own_key.inputs["algorithm"], own_key.inputs["rsaBits"]) == ("RSA", 4096)
        reg = rec.one(INTERMEDIATE, name_contains=f"-{cluster}-ca-")
        assert reg.inputs["root_cert_pem"] == root_pem
        assert reg.inputs["root_key_pem"] == ROOT_KEY and reg.is_secret("root_key_pem")
        assert reg.inputs["cluster_name"] == cluster and reg.inputs["validity_days"] == 3650
        # The certificate itself, as the signer made it (ISTIO_FACTS, intermediate column).
        ca = _intermediate_of(rec, cluster)
        ca.verify_directly_issued_by(root)
        assert ca.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == _pem_public(mock_private_key_pem(own_key.name, 4096))
        assert isinstance(ca.signature_hash_algorithm, hashes.SHA256)
        assert {a.oid: a.value for a in ca.subject} == {
            NameOID.ORGANIZATION_NAME: "Istio",
            NameOID.COMMON_NAME: "Intermediate CA",
            NameOID.LOCALITY_NAME: cluster,
        }
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == 0
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert (ku.value.digital_signature, ku.value.content_commitment) == (True, True)
        assert (ku.value.key_encipherment, ku.value.key_cert_sign) == (True, True)
        assert not (ku.value.crl_sign or ku.value.data_encipherment or ku.value.key_agreement)
        san = ca.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == ["istiod.istio-system.svc"]
        # 3650 days, but never past the root (made moments earlier with the same validity).
        ten_years = ca.not_valid_before_utc + datetime.timedelta(days=3650)
        assert ca.not_valid_after_utc == min(ten_years, root.not_valid_after_utc)
        assert ten_years - ca.not_valid_after_utc < datetime.timedelta(minutes=1)
        serials.add(ca.serial_number)
    assert len(serials) == 3


def _intermediate_of(rec: Recorded, cluster: str) -> x509.Certificate:
    secret = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
    return x509.load_pem_x509_certificate(base64.b64decode(secret.inputs["data"]["ca-cert.pem"]))


def test_cacerts_holds_the_four_keys_with_chain_intermediate_then_root(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    root_pem = rec.outputs["rootCertificatePem"]
    for cluster in ("cluster1", "cluster2"):
        secret = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        assert rec.provider_of(secret) == f"k8s-{cluster}"
        data = {k: _b64d(v) for k, v in secret.inputs["data"].items()}
        assert sorted(data) == ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
        intermediate = data["ca-cert.pem"]
        assert "BEGIN CERTIFICATE" in intermediate and intermediate.endswith("\n")
        assert data["ca-key.pem"] == mock_private_key_pem(f"mesh-{cluster}-ca-key", 4096)
        assert data["root-cert.pem"] == root_pem
        assert data["cert-chain.pem"] == intermediate + root_pem
        assert secret.is_secret("data")
        # Applied over other field managers (drift repair; a take-back after a lost state under the same root).
        assert secret.inputs["metadata"]["annotations"]["pulumi.com/patchForce"] == "true"


def test_intermediate_state_never_holds_the_root_key(mesh_settings: Any) -> None:
    """The signer's outputs (what the engine stores as the resource's state) leave the root key out."""
    from support.mocks import run_dynamic_create

    rec = _build(mesh_settings())
    for reg in rec.of_type(INTERMEDIATE):
        _, outs = run_dynamic_create(reg.inputs)
        assert "root_key_pem" not in outs and ROOT_KEY not in repr(outs)
        assert "BEGIN CERTIFICATE" in outs["cert_pem"]


def test_root_key_is_written_into_no_cluster(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(3))
    k8s_objects = [r for r in rec.registrations if r.type.startswith("kubernetes:")]
    assert k8s_objects
    for reg in k8s_objects:
        text = repr(reg.inputs)
        decoded = [_b64d(v) for v in (reg.inputs.get("data") or {}).values()]
        assert ROOT_KEY not in text and all(ROOT_KEY not in d for d in decoded), reg.name


def test_istiod_starts_only_after_cacerts_and_base(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
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
    rec = _build(mesh_settings())
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
    rec = _build(mesh_settings())
    for cluster in ("cluster1", "cluster2"):
        patch = rec.one("kubernetes:apps/v1:DeploymentPatch", "istio-system/istiod", name_contains=f"-{cluster}-")
        cacerts = rec.one(SECRET, "istio-system/cacerts", name_contains=f"-{cluster}-")
        istiod = rec.one(CHART, name_contains=f"mesh-{cluster}-istiod")
        annotations = patch.inputs["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {"istio-mesh.dev/cacerts-uid": f"uid-{cacerts.name}"}
        assert rec.depends_on(patch, cacerts) and rec.depends_on(patch, istiod)
        assert rec.provider_of(patch) == rec.provider_of(cacerts) == f"k8s-{cluster}"


# ---- control plane ----------------------------------------------------------------------------------


def test_istio_system_is_labelled_with_the_clusters_network(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    for cluster, network in (("cluster1", "network1"), ("cluster2", "network2")):
        ns = rec.one(NAMESPACE, "istio-system", name_contains=f"-{cluster}-")
        assert ns.inputs["metadata"]["labels"] == {"topology.istio.io/network": network}
        # `up --refresh` takes the label back even from another field manager (kubectl label ...).
        assert ns.inputs["metadata"]["annotations"] == {"pulumi.com/patchForce": "true"}
        assert rec.provider_of(ns) == f"k8s-{cluster}"


def test_istiod_values_carry_mesh_id_cluster_name_and_network(mesh_settings: Any) -> None:
    rec = _build(
        mesh_settings(istio={"version": "1.30.4", "hub": "registry.example/istio", "tag": "1.28.0-distroless"})
    )
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
    rec = _build(mesh_settings(istio={"chartDirectory": str(tmp_path / "charts")}))
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


WEBHOOK = "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def test_runtime_webhook_fields_are_not_drift(mesh_settings: Any) -> None:
    """istiod's caBundle is ignored on every webhook configuration. The validators keep the chart's install
    value failurePolicy Ignore (a validator that fails closed before istiod is reachable would reject the
    program's own Gateway), ignored once istiod switches it to Fail, and force their fields on update
    (otherwise the recorded Ignore would be a server-side-apply conflict with pilot-discovery)."""
    rec = _build(mesh_settings())
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
    kept = _build(mesh_settings())
    crd = kept.rendered(kept.one(CHART, name_contains="mesh-cluster1-base"), CRD, props, keep)
    assert crd.opts.retain_on_delete is True
    assert crd.props["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    lab = _build(mesh_settings(istio={"keepCRDs": False}))
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


def test_each_rendered_object_costs_one_transform_callback(mesh_settings: Any) -> None:
    """The engine calls the program once per transform in an object's ancestry, with all its properties
    (an Istio CRD is ~100 KB): the guard, drift, CRD and externalIPs rules reach each object as one."""
    rec = _build(mesh_settings(istio={"keepCRDs": False}))
    charts = rec.of_type(CHART)
    assert len(charts) == 6
    for chart in charts:
        for kind in (CRD, WEBHOOK, "kubernetes:core/v1:Service", "kubernetes:apps/v1:Deployment"):
            rendered = rec.rendered(chart, kind, {"metadata": {"name": "x"}})
            assert rendered.callbacks == 1, (chart.name, kind)
            # ... and that one callback still marks it as this stack's.
            assert rendered.props["metadata"]["annotations"][CREATED_BY_ANNOTATION].startswith("istio-mesh/test/")


# ---- east-west gateway ------------------------------------------------------------------------------


def _service_transform_result(rec: Recorded, chart: Registration, props: dict[str, Any]) -> dict[str, Any]:
    return rec.rendered(chart, "kubernetes:core/v1:Service", props, name="istio-eastwestgateway").props


def test_east_west_gateway_chart_per_network(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    for cluster, network in (("cluster1", "network1"), ("cluster2", "network2")):
        chart = rec.one(CHART, name_contains=f"mesh-{cluster}-eastwest")
        assert rec.provider_of(chart) == f"k8s-{cluster}"
        assert chart.inputs["chart"] == "gateway"
        assert chart.inputs["name"] == "istio-eastwestgateway"  # gives app/istio pod labels
        assert chart.inputs["namespace"] == "istio-system"
        values = chart.inputs["values"]
        assert values["networkGateway"] == network
        assert values["service"]["type"] == "LoadBalancer"
        # externalIPs: nothing waits for a load balancer.
        assert values["service"]["annotations"] == {"pulumi.com/skipAwait": "true"}
        i = cluster[-1]
        props = _service_transform_result(rec, chart, {"spec": {"type": "LoadBalancer"}})
        assert props["spec"]["externalIPs"] == [f"10.0.{i}.10"]
        # The gateway chart goes in after the control plane.
        assert rec.depends_on(chart, rec.one(CHART, name_contains=f"mesh-{cluster}-istiod"))
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] == "10.0.1.10"
    assert rec.outputs["clusters"]["cluster2"]["eastWestGatewayAddress"] == "10.0.2.10"


def test_the_one_cross_network_gateway(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    gateways = rec.of_type(GATEWAY_CR)
    assert sorted(rec.provider_of(g) for g in gateways) == ["k8s-cluster1", "k8s-cluster2"]
    for gw in gateways:
        assert gw.k8s_name == "istio-system/cross-network-gateway"
        assert gw.inputs["apiVersion"] == "networking.istio.io/v1"
        assert gw.inputs["spec"] == {
            "selector": {"istio": "eastwestgateway"},
            "servers": [
                {
                    "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                    "tls": {"mode": "AUTO_PASSTHROUGH"},
                    "hosts": ["*.local"],
                }
            ],
        }
        cluster = rec.provider_of(gw).removeprefix("k8s-")
        assert rec.depends_on(gw, rec.one(CHART, name_contains=f"mesh-{cluster}-base"))  # the Gateway CRD
        # Deleted in the background: no finalizer for the garbage collector to drop with an UPDATE that
        # istiod's webhook (failurePolicy Fail) would have to admit, so a down istiod cannot block it.
        assert gw.inputs["metadata"]["annotations"]["pulumi.com/deletionPropagationPolicy"] == "background"
        # istiod's validation webhook checks it: not while the cacerts patch is rolling istiod.
        rollout = rec.one("kubernetes:apps/v1:DeploymentPatch", "istio-system/istiod", name_contains=f"-{cluster}-")
        assert rec.depends_on(gw, rollout)


def test_load_balancer_gateway_waits_with_a_timeout(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    clusters = kubeconfigs(2)
    clusters[0]["eastWestGateway"] = {"serviceType": "LoadBalancer", "loadBalancerTimeoutSeconds": 300}
    rec = _build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    chart = rec.one(CHART, name_contains="mesh-cluster1-eastwest")
    # Pulumi's Service await waits for status.loadBalancer.ingress, at most this long.
    assert chart.inputs["values"]["service"]["annotations"] == {"pulumi.com/timeoutSeconds": "300"}
    assert "externalIPs" not in _service_transform_result(rec, chart, {"spec": {}})["spec"]
    # No transform above the chart skips the load balancer's await.
    rendered = {"metadata": {"annotations": dict(chart.inputs["values"]["service"]["annotations"])}, "spec": {}}
    annotations = _service_transform_result(rec, chart, rendered)["metadata"]["annotations"]
    assert annotations["pulumi.com/timeoutSeconds"] == "300" and "pulumi.com/skipAwait" not in annotations
    # The mocks render no chart objects, so there is no Service to take an address from.
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] == ""


def test_a_cluster_ip_or_node_port_gateway_is_not_awaited(kubeconfigs: Any) -> None:
    from stack_config import parse_settings

    for service_type in ("ClusterIP", "NodePort"):
        clusters = kubeconfigs(2)
        clusters[0]["eastWestGateway"] = {"serviceType": service_type}
        rec = _build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
        chart = rec.one(CHART, name_contains="mesh-cluster1-eastwest")
        assert chart.inputs["values"]["service"] == {
            "type": service_type,
            "annotations": {"pulumi.com/skipAwait": "true"},
        }


def test_load_balancer_address_comes_from_the_charts_service() -> None:
    import pulumi_kubernetes as k8s

    from istio_mesh.east_west_gateway import load_balancer_address

    def build() -> dict[str, pulumi.Output[Any]]:
        svc = k8s.core.v1.Service("lb-service")
        other = k8s.core.v1.ServiceAccount("sa")
        return {"address": load_balancer_address([other, svc]), "none": load_balancer_address([other])}

    rec = run_program(build)
    assert rec.outputs == {"address": "203.0.113.10", "none": ""}


def test_single_network_mesh_has_no_gateways(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(2, networks=["shared", "shared"]))
    assert not [r for r in rec.of_type(CHART) if r.inputs["chart"] == "gateway"]
    assert not rec.of_type(GATEWAY_CR)
    assert rec.outputs["clusters"]["cluster1"]["eastWestGatewayAddress"] is None
    # Remote secrets are still exchanged: a multi-primary mesh on one network.
    assert len(rec.of_type(SECRET)) == 2 + 2 + 2


# ---- remote secrets ---------------------------------------------------------------------------------


def _remote_secret(rec: Recorded, source: str, reader: str) -> Registration:
    found = [
        r
        for r in rec.of_type(SECRET)
        if r.k8s_name == f"istio-system/istio-remote-secret-{source}" and rec.provider_of(r) == f"k8s-{reader}"
    ]
    assert len(found) == 1, (source, reader, [r.name for r in found])
    return found[0]


def test_remote_secret_is_what_istioctl_creates(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
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

        kubeconfig = yaml.safe_load(_b64d(secret.inputs["data"][source]))
        assert kubeconfig["current-context"] == source
        assert [x["name"] for x in kubeconfig["clusters"]] == [source]
        assert [x["name"] for x in kubeconfig["contexts"]] == [source]
        assert [x["name"] for x in kubeconfig["users"]] == [source]
        assert kubeconfig["contexts"][0]["context"] == {"cluster": source, "user": source}
        i = source[-1]
        assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://10.0.{i}.1:6443"
        ca = _b64d(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])
        assert ca == f"{FAKE_CLUSTER_CA}istio-system/{token.name}"
        assert kubeconfig["users"][0]["user"] == {"token": f"{FAKE_TOKEN_PREFIX}{token.name}"}


def test_token_is_read_only_after_it_exists_and_after_the_reader_account(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
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
    rec = _build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    kubeconfig = yaml.safe_load(_b64d(_remote_secret(rec, "cluster1", "cluster2").inputs["data"]["cluster1"]))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://cluster1.api.example:443"


def test_three_clusters_give_six_remote_secrets_and_one_root(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(3))
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
    _build(parse_settings({"meshId": "mesh1", "clusters": clusters}))
    assert any("loopback" in r.getMessage() and "cluster1" in r.getMessage() for r in caplog.records)
    caplog.clear()
    _build(parse_settings({"meshId": "mesh1", "clusters": clusters, "lab": True}))
    assert not any("loopback" in r.getMessage() for r in caplog.records)


def _rules(role: Registration) -> list[tuple[list[str], list[str], list[str], list[str]]]:
    return [(r["apiGroups"], r["resources"], r.get("resourceNames", []), r["verbs"]) for r in role.inputs["rules"]]


def test_the_reader_lists_and_watches_only_what_a_peer_istiod_reads(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    for cl in ("cluster1", "cluster2"):
        role = rec.one(CLUSTER_ROLE, "istio-mesh-reader", f"mesh-{cl}-")
        assert rec.provider_of(role) == f"k8s-{cl}"
        assert _rules(role) == [
            ([""], ["namespaces", "pods", "services", "nodes"], [], ["list", "watch"]),
            (["discovery.k8s.io"], ["endpointslices"], [], ["list", "watch"]),
            (["apiextensions.k8s.io"], ["customresourcedefinitions"], [], ["list", "watch"]),
            (["gateway.networking.k8s.io"], ["gateways"], [], ["list", "watch"]),
            (["networking.istio.io"], ["workloadentries"], [], ["list", "watch"]),
            ([""], ["secrets"], [], ["list", "watch"]),
        ]
        config_role = rec.one(ROLE, "istio-system/istio-mesh-reader", f"mesh-{cl}-")
        assert _rules(config_role) == [([""], ["configmaps"], ["istio"], ["list", "watch"])]
        binding = rec.one(CLUSTER_ROLE_BINDING, "istio-mesh-reader", f"mesh-{cl}-")
        assert binding.inputs["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "istio-mesh-reader",
        }
        assert binding.inputs["subjects"] == [
            {"kind": "ServiceAccount", "name": "istio-mesh-reader", "namespace": "istio-system"}
        ]
        account = rec.one(SERVICE_ACCOUNT, "istio-system/istio-mesh-reader", f"mesh-{cl}-")
        assert account.inputs["automountServiceAccountToken"] is False


def test_a_reader_without_secrets_is_a_choice(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(remoteAccess={"readSecrets": False}))
    for cl in ("cluster1", "cluster2"):
        rules = _rules(rec.one(CLUSTER_ROLE, "istio-mesh-reader", f"mesh-{cl}-"))
        assert not [r for r in rules if "secrets" in r[1]]
        assert len(rules) == 5


def test_istios_own_reader_keeps_the_names_of_earlier_versions(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(remoteAccess={"reader": "istio"}))
    assert not rec.of_type(CLUSTER_ROLE) and not [r for r in rec.of_type(SERVICE_ACCOUNT) if "reader" in r.name]
    for source, reader in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        token = rec.one(SECRET, f"istio-system/istio-reader-token-{reader}", name_contains=f"-{source}-reader-token")
        assert token.inputs["metadata"]["annotations"] == {
            "kubernetes.io/service-account.name": "istio-reader-service-account"
        }
        # Istio's reader account is rendered by the charts: the token waits for them.
        assert rec.depends_on(token, rec.one(CHART, name_contains=f"mesh-{source}-base"))


def test_a_new_token_generation_renames_every_token_under_the_same_logical_names(mesh_settings: Any) -> None:
    def tokens(rec: Recorded) -> dict[str, str]:
        return {r.name: r.k8s_name for r in rec.of_type(SECRET) if r.inputs.get("type") == c.SA_TOKEN_SECRET_TYPE}

    # Same logical names, new object names: Pulumi replaces each token (the new one is created first,
    # the remote secrets move to it, the old one is deleted last, which revokes it).
    assert tokens(_build(mesh_settings())) == {
        "mesh-cluster1-cluster2-cluster1-reader-token": "istio-system/istio-mesh-reader-token-cluster2",
        "mesh-cluster1-cluster2-cluster2-reader-token": "istio-system/istio-mesh-reader-token-cluster1",
    }
    assert tokens(_build(mesh_settings(remoteAccess={"tokenGeneration": 3}))) == {
        "mesh-cluster1-cluster2-cluster1-reader-token": "istio-system/istio-mesh-reader-token-cluster2-g3",
        "mesh-cluster1-cluster2-cluster2-reader-token": "istio-system/istio-mesh-reader-token-cluster1-g3",
    }


def test_intermediates_carry_the_renewal_window(mesh_settings: Any) -> None:
    for settings, days in ((mesh_settings(), 30), (mesh_settings(ca={"renewBeforeDays": 90}), 90)):
        for reg in _build(settings).of_type(INTERMEDIATE):
            assert reg.inputs["renew_before_days"] == days


def test_secrets_are_recreated_on_change_never_patched(mesh_settings: Any) -> None:
    """The provider's default (a Secret whose data changes is replaced): an in-place server-side apply
    would keep keys someone else added and fail on values someone else changed."""
    rec = _build(mesh_settings())
    for reg in rec.of_type("pulumi:providers:kubernetes"):
        assert "enableSecretMutable" not in reg.inputs
    for reg in rec.of_type(SECRET):
        assert "immutable" not in reg.inputs


# ---- placement, secrets, outputs --------------------------------------------------------------------


def test_every_kubernetes_object_is_bound_to_its_own_clusters_provider(mesh_settings: Any) -> None:
    rec = _build(mesh_settings(3))
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
    rec = _build(mesh_settings())
    for reg in rec.of_type("pulumi:providers:kubernetes"):
        assert reg.is_secret("kubeconfig")
        assert reg.inputs["context"] == reg.name.removeprefix("k8s-")


def test_outputs_hold_no_private_material(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
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


def test_root_key_output_is_secret(mesh_settings: Any) -> None:
    from istio_mesh import RootCA

    settings = mesh_settings()
    seen: dict[str, bool] = {}

    def build() -> dict[str, pulumi.Output[Any]]:
        root = RootCA("root", settings.ca)

        async def secrecy() -> bool:
            assert root.key_pem is not None  # (generated)
            seen["key"] = await root.key_pem.is_secret()
            seen["cert"] = await root.cert_pem.is_secret()
            return True

        return {"checked": pulumi.Output.from_input(secrecy())}

    run_program(build)
    assert seen == {"key": True, "cert": False}


# ---- samples ----------------------------------------------------------------------------------------


def test_samples_follow_the_walkthrough(mesh_settings: Any) -> None:
    settings = mesh_settings(3)
    rec = _build(settings)
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

    rec = _build(parse_settings({"meshId": "mesh1", "clusters": kubeconfigs(2)}))
    assert not rec.of_type("kubernetes:apps/v1:Deployment")
    assert not rec.of_type("istiomesh:index:SampleApps")


def test_component_type_tokens(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
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
