"""verify's edits check: the program's objects changed by a field manager other than the program, istiod or
Kubernetes' own controllers, read from ``metadata.managedFields``.

The managed fields are shaped as the API server records them (``fieldsV1`` trees per manager and operation):
what ``kubectl set env``, ``kubectl edit``, ``kubectl rollout restart``, istiod's webhook patcher and
pulumi-kubernetes' server-side apply leave behind. The reads run against a local HTTP server playing the
API server.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import pytest

from istio_mesh.constants import CREATED_BY_ANNOTATION
from verify import ClusterFacts, collect_cluster, render_text, report_json
from verify.edit_checks import changes_of, check_edits, edits_in
from verify.facts import FieldsEntry, MeshObject
from verify.managed_fields import leaf_paths, render, role_of, unexplained

HOST = "helloworld.sample.svc.cluster.local"
PULUMI = "pulumi-kubernetes-1f3a9c0e"  # what the provider draws per resource: pulumi-kubernetes-<8 hex>
PATCH = "pulumi-kubernetes-77b2d410"  # the istiod cacerts-uid DeploymentPatch: a manager of its own
T0 = "2026-08-30T09:00:00Z"
T1 = "2026-09-01T10:15:00Z"
DISCOVERY = 'k:{"name":"discovery"}'


def entry(
    manager: str, fields: Mapping[str, Any], operation: str = "Update", time: str = T1, sub: str = ""
) -> FieldsEntry:
    return FieldsEntry(manager=manager, operation=operation, time=time, fields=fields, subresource=sub)


def istiod_container(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` under istiod's ``discovery`` container of the pod template."""
    return {"f:spec": {"f:template": {"f:spec": {"f:containers": {DISCOVERY: fields}}}}}


def env(*names: str) -> dict[str, Any]:
    return {"f:env": {f'k:{{"name":"{n}"}}': {".": {}, "f:name": {}, "f:value": {}} for n in names}}


#: The program's apply of istiod's Deployment (the chart's fields, abridged), and what Kubernetes adds.
ISTIOD_APPLY = entry(
    PULUMI,
    {
        "f:metadata": {"f:annotations": {".": {}, f"f:{CREATED_BY_ANNOTATION}": {}}, "f:labels": {"f:app": {}}},
        **istiod_container({".": {}, "f:image": {}, "f:name": {}, **env("PILOT_TRACE_SAMPLING", "REVISION")}),
    },
    "Apply",
    T0,
)
REVISION = entry(
    "kube-controller-manager", {"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}, time=T0
)
DEPLOYMENT_STATUS = entry(
    "kube-controller-manager", {"f:status": {"f:replicas": {}, "f:readyReplicas": {}}}, time=T0, sub="status"
)
CACERTS_UID = entry(
    PATCH,
    {"f:spec": {"f:template": {"f:metadata": {"f:annotations": {"f:istio-mesh.dev/cacerts-uid": {}}}}}},
    "Apply",
    T0,
)
#: `kubectl -n istio-system set env deploy/istiod PILOT_DEBUG_X=1` (a strategic merge patch).
SET_ENV = entry("kubectl-set", istiod_container(env("PILOT_DEBUG_X")))


def istiod(*entries: FieldsEntry) -> MeshObject:
    return MeshObject(
        "Deployment",
        "istio-system",
        "istiod",
        "istio-mesh/lab/mesh-cluster1-istiod:istio-system/istiod",
        entries,
        chart="istiod",
    )


def cluster(*objects: MeshObject, name: str = "cluster1") -> ClusterFacts:
    return ClusterFacts(name=name, expected_network="network1", mesh_objects=list(objects))


# ---- fieldsV1 ---------------------------------------------------------------------------------------------


def test_fields_v1_renders_as_paths_people_read() -> None:
    fields = {
        "f:metadata": {"f:annotations": {"f:sidecar.istio.io/inject": {}}, "f:finalizers": {'v:"example.com/x"': {}}},
        "f:data": {"f:mesh": {}},
        "f:spec": {
            "f:ports": {'k:{"port":15443,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}},
            "f:args": {"i:2": {}},
        },
    }
    assert render(leaf_paths(fields)) == [
        "data.mesh",
        'metadata.annotations["sidecar.istio.io/inject"]',
        'metadata.finalizers["example.com/x"]',
        "spec.args[2]",
        "spec.ports[port=15443,protocol=TCP]",  # the item as a whole, not .port and .targetPort
    ]
    # An item held as a whole is one path; fields below an item held by someone else are shown each.
    assert render(leaf_paths(istiod_container(env("X")))) == [
        "spec.template.spec.containers[name=discovery].env[name=X]"
    ]
    assert render(leaf_paths(istiod_container({"f:image": {}, "f:args": {}}))) == [
        "spec.template.spec.containers[name=discovery].args",
        "spec.template.spec.containers[name=discovery].image",
    ]
    assert leaf_paths({}) == set() and leaf_paths(None) == set()


def test_known_managers_are_the_program_istiod_and_kubernetes() -> None:
    for manager in (PULUMI, PATCH, "pulumi-kubernetes", "pulumi-resource-kubernetes", "pulumi-kubernetes.exe"):
        assert role_of(manager) == "program", manager
    assert role_of("mesh-fields", patch_field_manager="mesh-fields") == "program"  # pulumi.com/patchFieldManager
    assert role_of("pilot-discovery") == "istiod"
    for manager in ("kube-controller-manager", "kube-apiserver", "cloud-controller-manager", "kubelet"):
        assert role_of(manager) == "kubernetes", manager
    others = (
        "kubectl-set",
        "kubectl-edit",
        "kubectl-patch",
        "kubectl-client-side-apply",
        "kubectl",
        "kubectl-rollout",
        "helm",
        "OpenAPI-Generator",
        "pulumi-kubernetes-",
        "pulumi-kubernetes-NOTHEX!",
        "istiod",
        "mesh-fields",  # the annotation's name only counts on the object that carries it
    )
    for manager in others:
        assert role_of(manager) is None, manager


# ---- what is named, what is not -----------------------------------------------------------------------------


def test_kubectl_set_env_on_istiod_is_named_with_the_variable() -> None:
    c = cluster(istiod(ISTIOD_APPLY, REVISION, DEPLOYMENT_STATUS, CACERTS_UID, SET_ENV))
    [w] = check_edits([c])
    assert (w.cluster, w.check) == ("cluster1", "edit")
    assert w.cause == (
        f"Deployment istio-system/istiod in cluster1 was changed outside the program by kubectl-set (Update, {T1}): "
        "spec.template.spec.containers[name=discovery].env[name=PILOT_DEBUG_X]"
    )
    assert "kubectl --context cluster1 -n istio-system set env deployment/istiod PILOT_DEBUG_X-" in w.fix
    assert "istio.values" in w.fix and "pilot.env.PILOT_DEBUG_X" in w.fix
    # Without the edit, the same object is quiet: the program, its patch and Kubernetes are expected.
    assert check_edits([cluster(istiod(ISTIOD_APPLY, REVISION, DEPLOYMENT_STATUS, CACERTS_UID))]) == []


def test_a_configmap_edit_is_named() -> None:
    """`kubectl edit configmap istio`, changing the mesh config: the field moves from the program's manager
    (which no longer lists it) to kubectl-edit's."""
    applied = entry(
        PULUMI,
        {"f:data": {".": {}, "f:meshNetworks": {}}, "f:metadata": {"f:labels": {".": {}, "f:release": {}}}},
        "Apply",
        T0,
    )
    edited = entry("kubectl-edit", {"f:data": {"f:mesh": {}}})
    cm = MeshObject(
        "ConfigMap", "istio-system", "istio", "p/s/mesh-cluster2-istiod:istio-system/istio", (applied, edited)
    )
    [w] = check_edits([cluster(cm, name="cluster2")])
    assert w.cause == (
        f"ConfigMap istio-system/istio in cluster2 was changed outside the program by kubectl-edit (Update, {T1}): "
        "data.mesh"
    )
    assert "kubectl --context cluster2 -n istio-system edit configmap istio" in w.fix
    # Not from a chart the stack config has values for: undo is the way.
    assert w.fix.endswith("the stack config has no setting for it")


def test_istiods_webhook_updates_are_not_named() -> None:
    """istiod patches its CA bundle into both webhooks and flips the validator to Fail (manager
    pilot-discovery, Update): expected, not an edit. The same fields set by kubectl are."""
    hook = 'k:{"name":"rev.validation.istio.io"}'
    applied = entry(
        PULUMI,
        {"f:webhooks": {hook: {".": {}, "f:name": {}, "f:clientConfig": {"f:service": {}}, "f:sideEffects": {}}}},
        "Apply",
        T0,
    )
    istiod_patch: dict[str, Any] = {"f:webhooks": {hook: {"f:clientConfig": {"f:caBundle": {}}, "f:failurePolicy": {}}}}
    validator = MeshObject(
        "ValidatingWebhookConfiguration",
        None,
        "istio-validator-istio-system",
        "p/s/mesh-cluster1-istiod:istio-validator-istio-system",
        (applied, entry("pilot-discovery", istiod_patch)),
        chart="istiod",
    )
    injector = MeshObject(
        "MutatingWebhookConfiguration",
        None,
        "istio-sidecar-injector",
        "p/s/mesh-cluster1-istiod:istio-sidecar-injector",
        (
            entry(PULUMI, {"f:webhooks": {}}, "Apply", T0),
            entry("pilot-discovery", {"f:webhooks": {'k:{"name":"namespace.sidecar-injector.istio.io"}': {}}}),
        ),
        chart="istiod",
    )
    assert check_edits([cluster(validator, injector)]) == []
    by_hand = MeshObject(
        validator.kind,
        None,
        validator.name,
        validator.created_by,
        (applied, entry("kubectl-patch", {"f:webhooks": {hook: {"f:failurePolicy": {}}}})),
        chart="istiod",
    )
    [w] = check_edits([cluster(by_hand)])
    assert w.cause.startswith("ValidatingWebhookConfiguration istio-validator-istio-system in cluster1 was changed")
    assert w.cause.endswith(
        "kubectl-patch (Update, 2026-09-01T10:15:00Z): webhooks[name=rev.validation.istio.io].failurePolicy"
    )
    assert "edit validatingwebhookconfiguration istio-validator-istio-system" in w.fix


def test_the_programs_own_apply_is_not_named() -> None:
    """Every Pulumi manager (one per resource, Patch resources their own, the client-side-apply names) is the
    program; so are Kubernetes' own writes: the token controller filling a reader token, the API server
    marking it used."""
    token = MeshObject(
        "Secret",
        "istio-system",
        "istio-mesh-reader-token",
        "p/s/mesh-cluster1-reader-token",
        (
            entry("pulumi-kubernetes", {"f:metadata": {"f:annotations": {}}, "f:type": {}}, "Update", T0),
            entry("kube-controller-manager", {"f:data": {".": {}, "f:ca.crt": {}, "f:token": {}}}, time=T0),
            entry("kube-apiserver", {"f:metadata": {"f:labels": {"f:kubernetes.io/legacy-token-last-used": {}}}}),
        ),
    )
    assert changes_of(token) == []
    assert check_edits([cluster(istiod(ISTIOD_APPLY, CACERTS_UID), token)]) == []


def test_an_object_without_managed_fields_is_ignored() -> None:
    bare = MeshObject("Service", "istio-system", "istiod", "p/s/mesh-cluster1-istiod:istio-system/istiod")
    assert changes_of(bare) == [] and check_edits([cluster(bare)]) == []
    assert check_edits([ClusterFacts(name="cluster1", expected_network="network1")]) == []  # nothing read


def test_a_rollout_restart_and_status_writes_are_not_named() -> None:
    """`kubectl rollout restart` (restartedAt, even where it made the annotations map) changes no behaviour;
    neither does status, whoever writes it (KWOK or a cloud's load-balancer controller on the gateway)."""
    restart = entry(
        "kubectl-rollout",
        {
            "f:spec": {
                "f:template": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/restartedAt": {}}}}
            }
        },
    )
    lb = entry("kwok", {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}, sub="status")
    assert changes_of(istiod(ISTIOD_APPLY, restart)) == []
    gateway = MeshObject(
        "Service", "istio-system", "istio-eastwestgateway", "p/s/x", (entry(PULUMI, {"f:spec": {}}, "Apply"), lb)
    )
    assert changes_of(gateway) == []
    # A restart together with a real change (`kubectl rollout undo` to a template with other args): only the
    # change is named.
    undo = entry("kubectl-rollout", istiod_container({"f:args": {}}))
    [change] = changes_of(istiod(ISTIOD_APPLY, restart, undo))
    assert change.fields == ("spec.template.spec.containers[name=discovery].args",)


def test_a_field_the_program_also_applies_is_no_longer_named() -> None:
    """The fix for an env var set by hand: put it into istio.values. The program then applies the same value
    and holds the field too: nothing is left to name."""
    now_applied = entry(PULUMI, istiod_container({".": {}, **env("PILOT_DEBUG_X", "REVISION")}), "Apply", T1)
    assert changes_of(istiod(now_applied, SET_ENV)) == []
    theirs = leaf_paths(SET_ENV.fields)
    assert unexplained(theirs, set()) == theirs
    assert unexplained(theirs, leaf_paths(now_applied.fields)) == set()


def test_several_managers_on_one_object_are_one_warning() -> None:
    label = entry("kubectl-label", {"f:metadata": {"f:labels": {"f:team": {}}}}, time="2026-09-02T08:00:00Z")
    [edit] = edits_in(cluster(istiod(ISTIOD_APPLY, SET_ENV, label)))
    assert [(c.manager, c.time) for c in edit.changes] == [
        ("kubectl-label", "2026-09-02T08:00:00Z"),
        ("kubectl-set", T1),
    ]
    [w] = check_edits([cluster(istiod(ISTIOD_APPLY, SET_ENV, label))])
    assert "by kubectl-label (Update, 2026-09-02T08:00:00Z): metadata.labels.team; by kubectl-set" in w.cause


# ---- the report -------------------------------------------------------------------------------------------


def test_the_report_shows_edits_as_warnings_that_do_not_fail_verify() -> None:
    c = cluster(istiod(ISTIOD_APPLY, SET_ENV))
    warnings = check_edits([c])
    doc = report_json("mesh1", [c], [], [], HOST, None, None, warnings)
    assert doc["ok"] is True and doc["findings"] == []
    assert [(w["cluster"], w["check"]) for w in doc["warnings"]] == [("cluster1", "edit")]
    assert doc["edits"] == [
        {
            "cluster": "cluster1",
            "kind": "Deployment",
            "namespace": "istio-system",
            "name": "istiod",
            "createdBy": "istio-mesh/lab/mesh-cluster1-istiod:istio-system/istiod",
            "changes": [
                {
                    "manager": "kubectl-set",
                    "operation": "Update",
                    "time": T1,
                    "fields": ["spec.template.spec.containers[name=discovery].env[name=PILOT_DEBUG_X]"],
                }
            ],
        }
    ]
    json.dumps(doc)  # the JSON report stays JSON
    text = render_text(doc).splitlines()
    assert "WARNING: 1 warning(s), which do not fail verify" in text
    assert any(
        line.startswith("  - [cluster1] edit: Deployment istio-system/istiod in cluster1 was changed outside")
        and "env[name=PILOT_DEBUG_X]" in line
        for line in text
    )
    assert any(line.startswith("      fix: if it is not meant, undo it (kubectl") for line in text)
    assert text[-1].startswith("OK:")  # the verdict stays the last line
    # Not read (--no-edits): no edits section, no warnings.
    quiet = report_json("mesh1", [ClusterFacts(name="cluster1", expected_network="n1")], [], [], HOST, None)
    assert quiet["edits"] is None and quiet["warnings"] == []
    assert not any(line.startswith("WARNING") for line in render_text(quiet).splitlines())


# ---- reading the objects ----------------------------------------------------------------------------------


class _FakeApiServer(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, Any]]] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        path = urllib.parse.urlparse(self.path).path
        self.seen.append((path, self.headers.get("Accept", "")))
        status, body = self.routes.get(path, (404, {"kind": "Status", "code": 404, "message": f"{path} not found"}))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


ApiServer = Callable[[dict[str, tuple[int, dict[str, Any]]]], tuple[dict[str, Any], list[tuple[str, str]]]]


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    """``api_server(routes)`` serves the routes on 127.0.0.1: (a kubeconfig for it, the (path, Accept) asked)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(routes: dict[str, tuple[int, dict[str, Any]]]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        seen: list[tuple[str, str]] = []
        handler = type("Handler", (_FakeApiServer,), {"routes": routes, "seen": seen})
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{srv.server_address[1]}"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
            "users": [{"name": "u", "user": {"token": "t"}}],
        }
        return kubeconfig, seen

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _meta(name: str, namespace: str | None = None, ours: bool = True, **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **extra}
    if namespace:
        metadata["namespace"] = namespace
    if ours:
        metadata["annotations"] = {CREATED_BY_ANNOTATION: f"istio-mesh/lab/{name}"}
    return {"metadata": metadata}


def _items(*items: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"kind": "PartialObjectMetadataList", "items": list(items)}


def test_the_programs_objects_are_read_by_their_created_by_annotation_metadata_only(api_server: ApiServer) -> None:
    """One metadata-only list per kind: cluster-wide for namespaces and webhooks, then per namespace the program
    made (istio-system, the samples'); objects without the created-by annotation are not the program's. A kind
    not served (404: no Istio CRDs) has none; a refused list is a warning naming it, not a failure."""
    managed = [
        {
            "manager": "kubectl-set",
            "operation": "Update",
            "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": SET_ENV.fields,
        }
    ]
    deployment = _meta("istiod", "istio-system", managedFields=managed, labels={"helm.sh/chart": "istiod-1.30.4"})
    forbidden = 'secrets is forbidden: User "u" cannot list resource "secrets" in the namespace "sample"'
    kubeconfig, seen = api_server(
        {
            "/api/v1/namespaces/istio-system": (200, _meta("istio-system")),
            "/api/v1/namespaces": _items(_meta("istio-system"), _meta("sample"), _meta("kube-system", ours=False)),
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": _items(
                _meta("istio-sidecar-injector"), _meta("someone-elses-webhook", ours=False)
            ),
            "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations": _items(),
            "/apis/apps/v1/namespaces/istio-system/deployments": _items(deployment),
            "/api/v1/namespaces/istio-system/configmaps": _items(
                _meta("istio", "istio-system"), _meta("istio-ca-root-cert", "istio-system", ours=False)
            ),
            "/api/v1/namespaces/sample/services": _items(_meta("helloworld", "sample")),
            "/api/v1/namespaces/sample/secrets": (403, {"kind": "Status", "message": forbidden}),
        }
    )
    facts = collect_cluster("cluster1", kubeconfig, None, "network1", ("helloworld", "sample"), edits=True)
    assert facts.read_errors == {}
    assert facts.mesh_objects is not None
    assert [o.describe() for o in facts.mesh_objects] == [
        "Namespace istio-system",
        "Namespace sample",
        "MutatingWebhookConfiguration istio-sidecar-injector",
        "Deployment istio-system/istiod",
        "ConfigMap istio-system/istio",
        "Service sample/helloworld",
    ]
    istiod_read = facts.mesh_objects[3]
    assert istiod_read.chart == "istiod" and istiod_read.created_by == "istio-mesh/lab/istiod"
    assert istiod_read.managed_fields == (entry("kubectl-set", SET_ENV.fields),)
    assert facts.unread_objects == [f"Secrets in sample: HTTP 403: {forbidden}"]
    # Every list asks for metadata only (no Secret's data travels); the Istio Gateways' 404 is no objects.
    metadata_only = {p for p, accept in seen if accept.startswith("application/json;as=PartialObjectMetadataList;")}
    assert metadata_only == {
        "/api/v1/namespaces",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
        *(
            f"{prefix}/namespaces/{ns}/{plural}"
            for ns in ("istio-system", "sample")
            for prefix, plural in (
                ("/apis/apps/v1", "deployments"),
                ("/api/v1", "services"),
                ("/api/v1", "configmaps"),
                ("/api/v1", "secrets"),
                ("/apis/networking.istio.io/v1", "gateways"),
            )
        ),
    }
    warnings = check_edits([facts])
    assert [(w.check, w.cause) for w in warnings if w.check == "edit-unread"] == [
        (
            "edit-unread",
            f"in cluster1 the edits check could not list Secrets in sample: HTTP 403: {forbidden}; those objects "
            "are not checked for edits by others",
        )
    ]
    assert [w.cause.split(" was ")[0] for w in warnings if w.check == "edit"] == [
        "Deployment istio-system/istiod in cluster1"
    ]
    # Not asked for: nothing read.
    assert collect_cluster("cluster1", kubeconfig, None, "network1", ("helloworld", "sample")).mesh_objects is None


def test_run_verify_reads_edits_when_asked_and_they_leave_ok_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    import verify.cli as cli
    from verify import IstiodFacts

    asked: list[bool] = []

    def collect(name: str, *a: Any, edits: bool = False, **k: Any) -> ClusterFacts:
        asked.append(edits)
        return cluster(istiod(ISTIOD_APPLY, SET_ENV), name=name) if edits else ClusterFacts(name, "network1")

    monkeypatch.setattr(cli, "collect_cluster", collect)
    monkeypatch.setattr(cli, "collect_istiod", lambda name, *a: IstiodFacts(cluster=name, address="x"))
    monkeypatch.setattr(cli, "diagnose", lambda *a: [])
    target = cli.Target(name="cluster1", network="network1", kubeconfig={}, context=None)
    doc = cli.run_verify(
        [target], {"cluster1": lambda: cast(Any, None)}, None, "helloworld.sample", "mesh1", edits=True
    )
    assert asked == [True] and doc["ok"] is True
    assert [w["check"] for w in doc["warnings"]] == ["edit"]
    doc = cli.run_verify([target], {"cluster1": lambda: cast(Any, None)}, None, "helloworld.sample", "mesh1")
    assert asked == [True, False] and doc["warnings"] == [] and doc["edits"] is None
    assert cli.build_parser().parse_args(["--stack", "s"]).edits is True
    assert cli.build_parser().parse_args(["--stack", "s", "--no-edits"]).edits is False
