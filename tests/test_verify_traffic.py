"""The traffic test (verify.traffic, verify.traffic_checks): the guide's last step, requests from each
cluster's ``sleep`` to helloworld through the API server's pod exec.

The command runs here under a real ``sh`` and ``curl`` against a local server that answers as helloworld
and Envoy do, so the framing the parser relies on is curl's own; the exec is a fake of
``kubernetes.stream.stream`` (the lab cannot exec into pods), except for a refused exec, which goes through
the real client to a fake API server. The findings come from the healthy two-network mesh of test_verify
with one failure at a time, diagnosed by ``diagnose`` as verify does.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from test_verify import HOST, Pki, healthy
from test_verify import pki as pki  # the module-scoped PKI fixture

from verify import ClusterFacts, Finding, IstiodFacts, diagnose, render_text, report_json
from verify.cli import build_parser
from verify.collect import collect_cluster
from verify.facts import Reply, TrafficFacts
from verify.traffic import (
    EXEC_MARGIN,
    MARK,
    instance_clusters,
    parse_replies,
    run_traffic,
    tally,
    traffic_command,
)
from verify.traffic_checks import check_traffic

URL = "http://helloworld.sample:5000/hello"
V1 = "helloworld-v1-776f57d5f6-s7zfc"
V2 = "helloworld-v2-54df5f84b-9xk2q"
SLEEP = {"cluster1": "sleep-64d7d56698-abcde", "cluster2": "sleep-64d7d56698-fghij"}
MISSING = "no answer: the command ended before this request"


# ---- what the command prints ------------------------------------------------------------------------


def hello(version: str, instance: str) -> str:
    """helloworld's answer (with its newline), then curl's write-out, as the command prints them."""
    return f"Hello version: {version}, instance: {instance}\n\n{MARK} http 200\n{MARK} exit 0\n"


def output(*bodies: str) -> str:
    """The command's stdout for these requests (each body as ``hello`` or a failure renders it)."""
    return "".join(f"{MARK} request {n}\n{body}" for n, body in enumerate(bodies, 1))


TIMEOUT = (
    f"curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received\n\n{MARK} http 000\n{MARK} exit 28\n"
)
NO_UPSTREAM = f"no healthy upstream\n{MARK} http 503\n{MARK} exit 0\n"


class _Helloworld(http.server.BaseHTTPRequestHandler):
    """Answers /hello in turn as helloworld v1, as Envoy without an upstream (503, no newline), and not at
    all (slower than curl's --max-time)."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        turn = type(self).calls % 3
        if turn == 0:
            time.sleep(2.5)
            return
        status, body = (200, f"Hello version: v1, instance: {V1}\n") if turn == 1 else (503, "no healthy upstream")
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_command_runs_under_sh_with_curl_and_every_request_is_told_apart() -> None:
    """The real command, with this machine's sh and curl, against a local helloworld: a hello, a 503 whose
    body has no newline, and a request that outlives --max-time, twice over."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Helloworld,), {"calls": 0}))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hello"
        command = traffic_command(url, 6, per_request_timeout=1)
        assert command[:2] == ["sh", "-c"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    finally:
        srv.shutdown()
        srv.server_close()
    assert done.returncode == 0, done.stderr
    replies = parse_replies(done.stdout, 6, MISSING)
    timed_out = "curl: (28) Operation timed out after N milliseconds with 0 bytes received"
    assert (
        replies
        == [
            Reply(version="v1", instance=V1),
            Reply(error="HTTP 503: no healthy upstream"),
            Reply(error=timed_out),
        ]
        * 2
    )


def test_answers_and_failures_are_parsed_per_request() -> None:
    stdout = output(
        hello("v1", V1),
        hello("v2", V2),
        TIMEOUT,
        NO_UPSTREAM,
        f"curl: (6) Could not resolve host: helloworld.sample\n\n{MARK} http 000\n{MARK} exit 6\n",
        f"<html>a proxy page</html>\n\n{MARK} http 200\n{MARK} exit 0\n",
        "Hello version: v2, instance: ",  # the exec ended while this request was under way
    )
    replies = parse_replies(stdout, 8, MISSING)
    assert replies == [
        Reply(version="v1", instance=V1),
        Reply(version="v2", instance=V2),
        Reply(error="curl: (28) Operation timed out after N milliseconds with 0 bytes received"),
        Reply(error="HTTP 503: no healthy upstream"),
        Reply(error="curl: (6) Could not resolve host: helloworld.sample"),
        Reply(error="unexpected answer: <html>a proxy page</html>"),
        Reply(error=MISSING),  # cut off
        Reply(error=MISSING),  # never sent
    ]


def test_each_instance_is_mapped_to_the_cluster_whose_namespace_holds_the_pod() -> None:
    clusters = [
        ClusterFacts(name="cluster1", expected_network="network1", service_pods=[{"name": V1, "ip": "10.1.1.5"}]),
        ClusterFacts(
            name="cluster2",
            expected_network="network2",
            service_pods=[{"name": V2, "ip": "10.2.1.7"}, {"name": "twin", "ip": "10.2.1.8"}],
        ),
        ClusterFacts(name="cluster3", expected_network="network3", service_pods=[{"name": "twin", "ip": "10.3.1.8"}]),
    ]
    owners = instance_clusters(clusters)
    assert owners == {V1: ["cluster1"], V2: ["cluster2"], "twin": ["cluster2", "cluster3"]}
    t = TrafficFacts("cluster1", "sample", URL, 6, pod=SLEEP["cluster1"])
    t.replies = [
        Reply(version="v1", instance=V1),
        Reply(version="v2", instance=V2),
        Reply(version="v2", instance=V2),
        Reply(version="v3", instance="helloworld-v3-gone"),  # in no cluster's namespace (any more)
        Reply(version="v2", instance="twin"),  # in two: not attributed to either
        Reply(error="HTTP 503: no healthy upstream"),
    ]
    counted = tally(t, owners)
    assert (counted.answered, counted.failed) == (5, 1)
    assert counted.answers == {("v1", "cluster1"): 1, ("v2", "cluster2"): 2, ("v3", None): 1, ("v2", None): 1}
    assert counted.instances[("v2", "cluster2")] == {V2}
    assert counted.reached == {"cluster1", "cluster2"}
    assert counted.failures == {"HTTP 503: no healthy upstream": 1}


# ---- the exec -------------------------------------------------------------------------------------------


def pod(name: str, phase: str = "Running", ready: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app": "sleep"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeCore:
    """A CoreV1Api for ``run_traffic``: lists the given pods (as the client's raw response), and has the exec
    method the stream function is handed."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.listed: list[tuple[str, str]] = []

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kw: Any) -> Any:
        assert kw["_request_timeout"] > 0
        self.listed.append((namespace, label_selector))
        return SimpleNamespace(data=json.dumps({"items": self.pods}).encode())

    def connect_get_namespaced_pod_exec(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("only the stream function calls this")


class FakeExec:
    """What ``stream(..., _preload_content=False)`` returns: the channels of a finished (or hung) exec."""

    def __init__(self, stdout: str = "", stderr: str = "", status: str = '{"status":"Success"}', hangs: bool = False):
        self.channels = {1: stdout, 2: stderr, 3: status}
        self.hangs = hangs
        self.waited: float | None = None
        self.closed = False

    def run_forever(self, timeout: float | None = None) -> None:
        self.waited = timeout

    def is_open(self) -> bool:
        return self.hangs and not self.closed

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        return self.channels[channel]

    def close(self) -> None:
        self.closed = True


class FakeStream:
    """Stands in for ``kubernetes.stream.stream``: records the call, returns the exec."""

    def __init__(self, ws: FakeExec) -> None:
        self.ws = ws
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> FakeExec:
        self.calls.append((fn, args, kwargs))
        return self.ws


def test_the_exec_runs_the_requests_in_the_sleep_container_of_a_ready_sleep_pod() -> None:
    core = FakeCore(
        [
            pod("sleep-aaa-pending", phase="Pending"),
            pod("sleep-bbb-leaving", deleting=True),
            pod("sleep-ccc-unready", ready=False),
            pod("sleep-ddd-ready"),
        ]
    )
    ws = FakeExec(stdout=output(*[hello("v1", V1), hello("v2", V2)] * 10))
    stream = FakeStream(ws)
    t = run_traffic("cluster1", core, "sample", URL, stream_fn=stream)
    assert core.listed == [("sample", "app=sleep")]
    assert t.error is None and t.pod == "sleep-ddd-ready"
    [(fn, args, kwargs)] = stream.calls
    assert fn == core.connect_get_namespaced_pod_exec
    assert args == ("sleep-ddd-ready", "sample")
    assert kwargs == {
        "command": traffic_command(URL, 20, 3),
        "container": "sleep",
        "stdin": False,
        "stdout": True,
        "stderr": True,
        "tty": False,
        "_preload_content": False,
    }
    assert "--max-time 3" in kwargs["command"][2] and URL in kwargs["command"][2]
    assert ws.waited == 20 * 3 + EXEC_MARGIN and ws.closed
    assert t.replies == [Reply(version="v1", instance=V1), Reply(version="v2", instance=V2)] * 10


def test_an_exec_that_does_not_end_in_time_counts_the_unanswered_requests() -> None:
    ws = FakeExec(stdout=output(hello("v1", V1), hello("v1", V1), "Hello"), hangs=True)
    t = run_traffic("cluster1", FakeCore([pod("sleep-1")]), "sample", URL, requests=5, stream_fn=FakeStream(ws))
    late = "no answer: the exec did not end within 30s"
    assert t.replies == [Reply(version="v1", instance=V1)] * 2 + [Reply(error=late)] * 3
    assert ws.closed
    [f] = check_traffic([t], [], [], [])
    assert f.check == "traffic-failed" and f"3 of 5 request(s) from sample/sleep-1 in cluster1 to {URL}" in f.cause
    assert f"3x {late}" in f.cause


def test_a_command_that_cannot_start_is_named_with_the_status_the_api_server_sent() -> None:
    status = json.dumps(
        {
            "status": "Failure",
            "message": 'exec: "sh": executable file not found in $PATH',
            "reason": "InternalError",
        }
    )
    ws = FakeExec(status=status)
    t = run_traffic("cluster2", FakeCore([pod("sleep-1")]), "sample", URL, stream_fn=FakeStream(ws))
    assert t.error == (
        'the requests did not run (exec in pod sample/sleep-1 (container sleep)): exec: "sh": executable file not '
        "found in $PATH"
    )
    [f] = check_traffic([t], [], [], [])
    assert (f.cluster, f.check) == ("cluster2", "traffic") and "kubectl exec works" in f.fix


def test_no_running_sleep_pod_is_a_finding_and_nothing_is_executed() -> None:
    stream = FakeStream(FakeExec())
    t = run_traffic("cluster2", FakeCore([pod("sleep-1", phase="Pending")]), "sample", URL, stream_fn=stream)
    assert stream.calls == [] and t.pod is None
    [f] = check_traffic([t], [], [], [])
    assert (f.cluster, f.check) == ("cluster2", "traffic")
    assert f.cause == "the traffic test cannot run from cluster2: no running pod labelled app=sleep in namespace sample"
    assert "samples.enabled" in f.fix
    # Not asked for (verify's default): a cluster without a sleep pod is said in the report, not a finding;
    # an exec the API server refuses still is.
    assert check_traffic([t], [], [], [], required=False) == []


class _ApiServer(http.server.BaseHTTPRequestHandler):
    """An API server answering GETs from a table {path: (status, body)}; anything else (the exec's upgrade
    among them) is refused as RBAC refuses it: 403 with a Status."""

    routes: dict[str, tuple[int, Any]] = {}
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        forbidden = {"kind": "Status", "status": "Failure", "message": FORBIDDEN, "code": 403}
        status, body = self.routes.get(urllib.parse.urlparse(self.path).path, (403, forbidden))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


FORBIDDEN = (
    'pods "sleep-1" is forbidden: User "viewer" cannot create resource "pods/exec" in API group "" in the '
    'namespace "sample"'
)
ApiServer = Callable[[dict[str, tuple[int, Any]]], tuple[dict[str, Any], list[str]]]


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    """``api_server(routes)`` serves the routes on 127.0.0.1: (a kubeconfig for it, the paths asked for)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(routes: dict[str, tuple[int, Any]]) -> tuple[dict[str, Any], list[str]]:
        seen: list[str] = []
        srv = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), type("Handler", (_ApiServer,), {"routes": routes, "seen": seen})
        )
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


def test_an_exec_the_api_server_refuses_is_a_finding_with_its_message(api_server: ApiServer) -> None:
    """Through the real kubernetes client and its websocket stream: the 403 Status's message, not the
    client's wrapping, is in the finding, whose fix names the permission."""
    from verify import Target, traffic_from

    kubeconfig, seen = api_server({"/api/v1/namespaces/sample/pods": (200, {"items": [pod("sleep-1")]})})
    t = traffic_from(Target("cluster1", "network1", kubeconfig, None), "sample", URL, requests=2)
    assert t.pod == "sleep-1"
    assert t.error == f"cannot exec in pod sample/sleep-1 (container sleep): HTTP 403: {FORBIDDEN}"
    exec_path = urllib.parse.urlparse(seen[-1])
    assert exec_path.path == "/api/v1/namespaces/sample/pods/sleep-1/exec"
    query = urllib.parse.parse_qs(exec_path.query)
    assert query["container"] == ["sleep"] and query["command"] == traffic_command(URL, 2)
    [f] = check_traffic([t], [], [], [])
    assert (f.cluster, f.check) == ("cluster1", "traffic") and FORBIDDEN in f.cause
    assert "create on pods/exec in sample" in f.fix


def test_the_east_west_gateways_pods_are_read_with_their_readiness(api_server: ApiServer) -> None:
    gateway = {
        "items": [
            {**pod("istio-eastwestgateway-7c9-a"), "metadata": {"name": "istio-eastwestgateway-7c9-a"}},
            {**pod("istio-eastwestgateway-7c9-b", ready=False), "metadata": {"name": "istio-eastwestgateway-7c9-b"}},
            pod("istio-eastwestgateway-7c9-c", deleting=True),  # still Ready, but on its way out
        ]
    }
    kubeconfig, seen = api_server(
        {
            "/api/v1/namespaces/istio-system": (200, {"metadata": {"name": "istio-system"}}),
            "/api/v1/namespaces/istio-system/pods": (200, gateway),
        }
    )
    facts = collect_cluster("cluster2", kubeconfig, None, "network2", ("helloworld", "sample"), gateway_pods=True)
    assert facts.gateway_pods == {
        "istio-eastwestgateway-7c9-a": True,
        "istio-eastwestgateway-7c9-b": False,
        "istio-eastwestgateway-7c9-c": False,
    }
    assert "/api/v1/namespaces/istio-system/pods?labelSelector=istio%3Deastwestgateway" in seen
    # Not asked for (no --traffic): not read, and no check runs on them.
    assert collect_cluster("cluster2", kubeconfig, None, "network2", ("helloworld", "sample")).gateway_pods is None


# ---- the findings -----------------------------------------------------------------------------------------

INSTANCE = {"v1": V1, "v2": V2}


def mesh(pki: Pki) -> tuple[list[ClusterFacts], list[IstiodFacts]]:
    """test_verify's healthy two-network mesh, with helloworld v1 running in cluster1 and v2 in cluster2 and
    each east-west gateway's pod ready (as verify reads them with --traffic)."""
    clusters, istiods = healthy(pki)
    for c, (name, ip) in zip(clusters, ((V1, "10.1.1.5"), (V2, "10.2.1.7")), strict=True):
        c.service_pods = [{"name": name, "ip": ip, "network": c.expected_network}]
        c.gateway_pods = {f"istio-eastwestgateway-{c.name}": True}
    return clusters, istiods


def sent(cluster: str, answers: list[str]) -> TrafficFacts:
    """The traffic test from ``cluster`` with these outcomes, as the exec's output parses: a version answers
    from helloworld's pod of that version, anything else is a failure reason."""
    t = TrafficFacts(cluster, "sample", URL, len(answers), pod=SLEEP[cluster])
    t.replies = [Reply(version=a, instance=INSTANCE[a]) if a in INSTANCE else Reply(error=a) for a in answers]
    return t


def verdict(
    clusters: list[ClusterFacts], istiods: list[IstiodFacts], traffic: list[TrafficFacts]
) -> tuple[list[Finding], list[Finding]]:
    """(diagnose's findings, the traffic checks' findings), as run_verify makes them."""
    findings = diagnose(clusters, istiods, None, HOST)
    return findings, check_traffic(traffic, clusters, istiods, findings)


BOTH = ["v1", "v2"] * 10  # a healthy mesh: both versions, from both clusters
ONLY_V1 = ["v1"] * 20  # cluster1's sidecar never reaches cluster2


def test_a_healthy_mesh_answers_with_both_versions_from_both_clusters_and_has_no_finding(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    traffic = [sent("cluster1", BOTH), sent("cluster2", BOTH)]
    findings, found = verdict(clusters, istiods, traffic)
    assert findings == [] and found == []
    doc = report_json("mesh1", clusters, istiods, found, HOST, pki.root, traffic)
    assert doc["ok"] is True
    first = doc["traffic"][0]
    assert (first["cluster"], first["pod"]) == ("cluster1", f"sample/{SLEEP['cluster1']}")
    assert (first["sent"], first["answered"], first["failed"]) == (20, 20, 0)
    assert first["answers"] == [
        {"version": "v1", "cluster": "cluster1", "count": 10, "instances": [V1]},
        {"version": "v2", "cluster": "cluster2", "count": 10, "instances": [V2]},
    ]
    assert first["failures"] == [] and first["notReached"] == [] and first["error"] is None
    text = render_text(doc)
    assert f"traffic from cluster2 (pod sample/{SLEEP['cluster2']}): 20 request(s) to {URL}, 20 answered" in text
    assert "  v1 from cluster1: 10\n  v2 from cluster2: 10" in text
    assert text.splitlines()[-1].startswith("OK:") and "every request from each cluster's sleep" in text
    # Without --traffic the report says nothing of it.
    assert report_json("mesh1", clusters, istiods, [], HOST, pki.root)["traffic"] is None


def test_failed_requests_are_a_finding_counted_by_reason(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    answers = BOTH[:16] + ["HTTP 503: no healthy upstream"] * 3 + ["curl: (28) Operation timed out"]
    traffic = [sent("cluster1", answers), sent("cluster2", BOTH)]
    _, found = verdict(clusters, istiods, traffic)
    [f] = found
    assert (f.cluster, f.check) == ("cluster1", "traffic-failed")
    assert f.cause == (
        f"4 of 20 request(s) from sample/{SLEEP['cluster1']} in cluster1 to {URL} failed: "
        "3x HTTP 503: no healthy upstream; 1x curl: (28) Operation timed out"
    )
    doc = report_json("mesh1", clusters, istiods, found, HOST, None, traffic)
    assert doc["ok"] is False
    assert doc["traffic"][0]["failures"][0] == {"reason": "HTTP 503: no healthy upstream", "count": 3}
    assert "  failed 3x: HTTP 503: no healthy upstream" in render_text(doc)


def reach(found: list[Finding]) -> Finding:
    """The one traffic-reach finding, which must be cluster1's about cluster2."""
    [f] = [f for f in found if f.check == "traffic-reach"]
    assert (f.cluster, f.about) == ("cluster1", ("cluster2",))
    assert f.cause.startswith(
        f"none of the 20 request(s) from sample/{SLEEP['cluster1']} in cluster1 (20 answered) reached cluster2 "
        "(network network2), which runs 1 pod(s) of the service. Likely cause: "
    )
    return f


def test_unreached_because_the_remote_gateway_has_no_address(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    clusters[1].gateway_addresses = []
    for i in istiods:
        i.gateways = [g for g in i.gateways if g["network"] != "network2"]
    _, found = verdict(clusters, istiods, [sent("cluster1", ONLY_V1), sent("cluster2", BOTH)])
    f = reach(found)
    assert "[cluster2] gateway: the east-west gateway of cluster2 has no address" in f.cause
    assert "[cluster1] gateway: istiod of cluster1 knows no gateway for network network2" in f.cause
    assert "externalIPs" in f.fix
    assert [x.check for x in found] == ["traffic-reach"]  # cluster2 reaches cluster1: nothing about it


def test_unreached_because_the_remote_gateway_has_no_ready_pod(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    clusters[1].gateway_pods = {"istio-eastwestgateway-7c9-a": False}
    findings, found = verdict(clusters, istiods, [sent("cluster1", ONLY_V1), sent("cluster2", BOTH)])
    assert {(x.cluster, x.check) for x in findings} == {("cluster2", "gateway-pod")}
    f = reach(found)
    assert (
        "[cluster2] gateway-pod: the east-west gateway of cluster2 has no ready pod (1 pod(s), none ready labelled "
        "istio=eastwestgateway in istio-system)"
    ) in f.cause
    assert "describe pods -l istio=eastwestgateway" in f.fix


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "no remote secret",
            ["[cluster1] remote-secret: cluster1 has no remote secret for cluster2", "has not synced cluster2"],
        ),
        (
            "token rejected",
            ["[cluster1] remote-access: remote secret istio-remote-secret-cluster2", "(status 'timeout')"],
        ),
        ("not synced", ["[cluster1] sync: istiod of cluster1 has not synced cluster2 (status 'pending')"]),
    ],
)
def test_unreached_because_the_readers_remote_secret_is_missing_or_not_synced(
    pki: Pki, case: str, expected: list[str]
) -> None:
    clusters, istiods = mesh(pki)
    if case == "no remote secret":
        clusters[0].remote_secrets = []
        istiods[0].clusters = istiods[0].clusters[:1]
        istiods[0].endpoints = [e for e in istiods[0].endpoints if e["cluster"] == "cluster1"]
    elif case == "token rejected":
        clusters[0].remote_secrets[0].access["cluster2"] = "unauthorised: the API server rejects the token (HTTP 401)"
        istiods[0].clusters[1]["syncStatus"] = "timeout"
    else:
        istiods[0].clusters[1]["syncStatus"] = "pending"
    findings, found = verdict(clusters, istiods, [sent("cluster1", ONLY_V1), sent("cluster2", BOTH)])
    f = reach(found)
    for text in expected:
        assert text in f.cause
    # Only findings about cluster1 reading cluster2 are named: none of them is about another pair.
    assert all(x.about == ("cluster2",) for x in findings)


@pytest.mark.parametrize(("labelled", "expected"), [("cluster2", "is missing"), ("cluster1", "is 'network2'")])
def test_unreached_because_a_network_label_on_istio_system_is_missing_or_wrong(
    pki: Pki, labelled: str, expected: str
) -> None:
    """cluster2's label missing (its endpoints on no network: cluster1's sidecar is sent their pod IPs), or
    cluster1's naming cluster2's network (cluster1's istiod takes cluster2 for its own network)."""
    clusters, istiods = mesh(pki)
    c = next(c for c in clusters if c.name == labelled)
    c.network_label = None if labelled == "cluster2" else "network2"
    _, found = verdict(clusters, istiods, [sent("cluster1", ONLY_V1), sent("cluster2", BOTH)])
    f = reach(found)
    assert (
        f"[{labelled}] network-label: label topology.istio.io/network on namespace istio-system in {labelled} "
        f"{expected} (expected"
    ) in f.cause
    assert "pulumi up --refresh restores the label" in f.fix


def test_an_unexplained_unreached_cluster_says_what_was_ruled_out_and_what_could_not_be(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    clusters[0].read_errors["remote-secrets"] = "Secrets labelled istio/multiCluster=true in istio-system: HTTP 403"
    findings, found = verdict(clusters, istiods, [sent("cluster1", ONLY_V1), sent("cluster2", BOTH)])
    assert {(x.cluster, x.check) for x in findings} == {("cluster1", "api")}
    [f] = found
    assert (f.cluster, f.check, f.about) == ("cluster1", "traffic-reach", ("cluster2",))
    assert "reached cluster2 (network network2), which runs 1 pod(s) of the service, and no known cause shows" in (
        f.cause
    )
    ruled_out, not_ruled_out = f.cause.split(". Ruled out: ")[1].split(". Not ruled out: ")
    assert ruled_out.split("; ") == [
        "cluster2's east-west gateway exists and has an address (127.0.2.1)",
        "cluster2's east-west gateway has a ready pod",
        "the topology.istio.io/network label on istio-system is as configured in cluster1 (network1) and cluster2 "
        "(network2)",
        "cluster2's pods of the service carry its network",
        "istiod of cluster1 has synced cluster2 and knows its network's gateway and its endpoints",
        "cluster1 and cluster2 share the mesh root and their istiods sign with their intermediates",
    ]
    assert not_ruled_out.split("; ") == [
        "cluster1 has a remote secret for cluster2 whose credentials work there (cluster1: cannot read Secrets "
        "labelled istio/multiCluster=true in istio-system: HTTP 403)",
        "a sidecar in cluster1 is sent cluster2's network through its gateway, and that gateway passes the service "
        "on (proxy view) (the proxy view was not asked for (--no-proxy-view))",
    ]
    assert "istioctl proxy-config endpoints" in f.fix


def test_a_missing_cluster_is_concluded_only_when_luck_cannot_explain_it(pki: Pki) -> None:
    """With helloworld on one pod in each of two clusters, 9 requests that all land in cluster1 happen by
    chance once in 512 (above MISS_CHANCE); 10 requests, once in 1024 (below)."""
    clusters, istiods = mesh(pki)
    for n, concluded in ((9, False), (10, True)):
        traffic = [sent("cluster1", ["v1"] * n)]
        _, found = verdict(clusters, istiods, traffic)
        assert [(f.cluster, f.check) for f in found] == ([("cluster1", "traffic-reach")] if concluded else [])
        doc = report_json("mesh1", clusters, istiods, found, HOST, None, traffic)
        assert doc["traffic"][0]["notReached"] == ["cluster2"]
        assert "  never answered: cluster2" in render_text(doc)


def test_an_answer_from_a_pod_no_cluster_listed_leaves_reach_unconcluded(pki: Pki) -> None:
    """A pod that started after the clusters were read may be the unreached cluster's: nothing is concluded."""
    clusters, istiods = mesh(pki)
    t = sent("cluster1", ONLY_V1)
    assert [f.check for f in check_traffic([t], clusters, istiods, [])] == ["traffic-reach"]
    t.replies[0] = Reply(version="v2", instance="helloworld-v2-new")
    assert check_traffic([t], clusters, istiods, []) == []


def test_a_cluster_on_the_sources_own_network_is_not_required_to_answer(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    for c in clusters:
        c.expected_network = c.network_label = "network1"
    assert check_traffic([sent("cluster1", ONLY_V1)], clusters, istiods, []) == []


def test_an_unreadable_source_cluster_is_left_to_its_api_finding(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    clusters[0].api_error = "connection refused"
    t = TrafficFacts("cluster1", "sample", URL, 20, error="not run: the cluster cannot be read")
    assert check_traffic([t], clusters, istiods, []) == []


def test_pair_findings_name_the_peer_they_are_about(pki: Pki) -> None:
    clusters, istiods = mesh(pki)
    clusters[0].remote_secrets = []
    istiods[0].clusters = istiods[0].clusters[:1]
    findings = diagnose(clusters, istiods, None, HOST)
    assert {(f.cluster, f.check, f.about) for f in findings} == {
        ("cluster1", "remote-secret", ("cluster2",)),
        ("cluster1", "sync", ("cluster2",)),
    }
    doc = report_json("mesh1", clusters, istiods, findings, HOST, None)
    assert {tuple(f["about"]) for f in json.loads(json.dumps(doc))["findings"]} == {("cluster2",)}


# ---- the command line ---------------------------------------------------------------------------------------


def test_traffic_runs_by_default_where_it_can_and_requests_must_be_a_positive_count(capsys: Any) -> None:
    args = build_parser().parse_args(["--stack", "s"])
    assert (args.traffic, args.requests) == (None, 20)  # None: run where a sleep pod runs (run_verify)
    args = build_parser().parse_args(["--stack", "s", "--traffic", "--requests", "50"])
    assert (args.traffic, args.requests) == (True, 50)
    assert build_parser().parse_args(["--stack", "s", "--no-traffic"]).traffic is False
    for bad in ("0", "-3", "many", "501"):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args(["--stack", "s", "--traffic", "--requests", bad])
        assert exited.value.code == 2
    assert "expected a whole number from 1 to 500, got '501'" in capsys.readouterr().err


@pytest.mark.parametrize("traffic", [False, True])
def test_run_verify_sends_the_traffic_from_every_cluster_only_when_asked(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, traffic: bool
) -> None:
    import verify.cli as cli

    clusters, istiods = mesh(pki)
    for c in clusters:
        c.service_ports = [5000]
    read_pods: list[bool] = []
    asked: list[tuple[str, str, str, int]] = []

    def collect(name: str, *a: Any, gateway_pods: bool = False, **k: Any) -> ClusterFacts:
        read_pods.append(gateway_pods)
        return next(c for c in clusters if c.name == name)

    def send(target: Any, namespace: str, url: str, requests: int) -> TrafficFacts:
        asked.append((target.name, namespace, url, requests))
        return sent(target.name, BOTH[:requests])

    monkeypatch.setattr(cli, "collect_cluster", collect)
    monkeypatch.setattr(cli, "collect_istiod", lambda name, *a: next(i for i in istiods if i.cluster == name))
    monkeypatch.setattr(cli, "traffic_from", send)
    targets = [cli.Target(name=c.name, network=c.expected_network, kubeconfig={}, context=None) for c in clusters]
    access: dict[str, Any] = {c.name: lambda: None for c in clusters}
    doc = cli.run_verify(targets, access, pki.root, "helloworld.sample", "mesh1", traffic=traffic, requests=12)
    assert read_pods == [traffic, traffic]
    if not traffic:
        assert asked == [] and doc["traffic"] is None
        return
    assert sorted(asked) == [("cluster1", "sample", URL, 12), ("cluster2", "sample", URL, 12)]
    assert doc["ok"] is True, doc["findings"]
    assert [(t["cluster"], t["answered"]) for t in doc["traffic"]] == [("cluster1", 12), ("cluster2", 12)]


def test_an_exec_opens_on_an_api_client_of_its_own() -> None:
    """kubernetes.stream.stream swaps ``api_client.request`` while it opens the websocket: a pod list made
    meanwhile on the same client from another thread would go out as a websocket (the load's "(0)"
    errors). open_exec therefore opens on its own ApiClient, with the same configuration."""
    from kubernetes import client

    from verify.traffic import open_exec

    configuration = client.Configuration()
    configuration.host = "https://127.0.1.1:20143"
    core = client.CoreV1Api(client.ApiClient(configuration))
    seen: dict[str, Any] = {}

    def stream(api_method: Any, *args: Any, **kwargs: Any) -> Any:
        seen["client"] = api_method.__self__.api_client
        return object()

    open_exec(core, "sample", "sleep-1", ["true"], stream_fn=stream)
    assert seen["client"] is not core.api_client
    assert seen["client"].configuration.host == "https://127.0.1.1:20143"
