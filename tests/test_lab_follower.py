"""The istiod follower's decisions (pure) and how it acts on them, without a cluster."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from lab import egress_routes, follower, istiod, layout
from lab.follower import Observed, decide
from lab.layout import Cluster

C = Cluster(2)
DEP = {"uid": "u1", "template": "aaaa", "injector": True}
ROLLED = {**DEP, "template": "bbbb"}
ROUTE = {("10.102.0.17", 443): ("127.0.2.1", C.istiod_ports[15017])}


def obs(**kw: Any) -> Observed:
    base = Observed(
        deployment=DEP,
        service_ip="10.102.0.17",
        istiod_running=True,
        running_source=DEP,
        stopped_by_hand=False,
        stopped_for=None,
    )
    return dataclasses.replace(base, **kw)


def test_a_new_deployment_starts_istiod_and_routes_the_webhook_service_to_it() -> None:
    plan = decide(C, obs(istiod_running=False, running_source=None))
    assert plan.istiod == "start"
    # The Service's ClusterIP:443 (the chart's webhook port) -> this cluster's istiod webhook listener (15017).
    assert plan.routes == ROUTE and ROUTE[("10.102.0.17", 443)] == ("127.0.2.1", 20217)


def test_istiod_running_from_the_current_deployment_is_left_alone() -> None:
    plan = decide(C, obs())
    assert (plan.istiod, plan.routes, plan.clear_stop_marker) == ("none", ROUTE, False)


@pytest.mark.parametrize(
    "now",
    [
        ROLLED,  # a new pod template: a rollout (e.g. the program's cacerts-uid annotation)
        {**DEP, "uid": "u2"},  # the Deployment was recreated
    ],
)
def test_a_changed_deployment_restarts_istiod(now: dict[str, Any]) -> None:
    assert decide(C, obs(deployment=now)).istiod == "restart"


def test_the_injector_configmap_appearing_after_istiod_started_restarts_it() -> None:
    """istiod reads istio-sidecar-injector once, at start: started without it, it never injects."""
    plan = decide(C, obs(running_source={**DEP, "injector": False}))
    assert plan.istiod == "restart"


def test_the_injector_configmap_going_or_being_replaced_restarts_nothing() -> None:
    """A ConfigMap replace (delete, then create: what a meshId or network change does to it) may be seen
    half-way; istiod watches the ConfigMap once it had it, so only its first appearance matters."""
    assert decide(C, obs(deployment={**DEP, "injector": False})).istiod == "none"
    held = obs(istiod_running=False, stopped_by_hand=True, stopped_for=DEP, deployment={**DEP, "injector": False})
    assert decide(C, held).istiod == "none"


def test_istiod_that_exited_is_started_again() -> None:
    assert decide(C, obs(istiod_running=False)).istiod == "start"


def test_a_deleted_deployment_stops_istiod_and_removes_the_route() -> None:
    plan = decide(C, obs(deployment=None, service_ip=None, stopped_by_hand=True, stopped_for=DEP))
    assert (plan.istiod, plan.routes, plan.clear_stop_marker) == ("stop", {}, True)
    assert decide(C, obs(deployment=None, istiod_running=False)).istiod == "none"
    # The Service alone does not keep a route: nothing would answer it.
    assert decide(C, obs(deployment=None, istiod_running=False)).routes == {}


def test_no_service_ip_means_no_route() -> None:
    assert decide(C, obs(service_ip=None)).routes == {}


def test_a_manual_stop_holds_until_the_deployment_changes() -> None:
    held = decide(C, obs(istiod_running=False, stopped_by_hand=True, stopped_for=DEP))
    assert (held.istiod, held.clear_stop_marker) == ("none", False)
    assert held.routes == ROUTE  # the route stays: a webhook call is refused at once (503), not hung
    rolled = decide(C, obs(deployment=ROLLED, istiod_running=False, stopped_by_hand=True, stopped_for=DEP))
    assert (rolled.istiod, rolled.clear_stop_marker) == ("start", True)
    # A marker that could not name the Deployment (API unreachable at stop time) holds too.
    unnamed = decide(C, obs(istiod_running=False, stopped_by_hand=True, stopped_for=None))
    assert unnamed.istiod == "none"


def test_backoff_grows_to_a_bound() -> None:
    assert [follower.backoff(n) for n in range(0, 8)] == [0, 1, 2, 4, 8, 16, 30, 30]


def test_identity_follows_the_pod_template_not_the_deployments_status() -> None:
    dep: dict[str, Any] = {
        "metadata": {"uid": "u1", "generation": 3, "resourceVersion": "10"},
        "spec": {"replicas": 1, "template": {"metadata": {"annotations": {"a": "1"}}, "spec": {"containers": []}}},
        "status": {"availableReplicas": 1},
    }
    same = {**dep, "metadata": {**dep["metadata"], "resourceVersion": "11"}, "status": {}}
    scaled = {**dep, "spec": {**dep["spec"], "replicas": 2}}
    rolled = {**dep, "spec": {**dep["spec"], "template": {"metadata": {"annotations": {"a": "2"}}}}}
    assert istiod.identity(same, True) == istiod.identity(dep, True)
    assert istiod.identity(scaled, True) == istiod.identity(dep, True)  # scaling is not a rollout
    assert istiod.identity(rolled, True) != istiod.identity(dep, True)
    assert istiod.identity(dep, False) != istiod.identity(dep, True)


def test_the_injector_configmap_name_follows_the_revision() -> None:
    assert istiod.injector_configmap("") == "istio-sidecar-injector"
    assert istiod.injector_configmap("default") == "istio-sidecar-injector"
    assert istiod.injector_configmap("canary") == "istio-sidecar-injector-canary"


# ---- acting ----------------------------------------------------------------------------------------
@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    (tmp_path / C.name).mkdir()
    return tmp_path


class _Script:
    """Scripted observations and a recording istiod.launch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, observations: list[Observed], fail: bool = False) -> None:
        self.observations = observations
        self.launches: list[bool] = []
        self.fail = fail
        monkeypatch.setattr(follower, "observe", lambda api, c, binary: self.observations[0])
        monkeypatch.setattr(istiod, "launch", self.launch)
        monkeypatch.setattr(follower.Follower, "wait_ready", lambda self: None)

    def launch(self, binary: Path, c: Cluster, restart: bool = False) -> dict[str, Any]:
        self.launches.append(restart)
        if self.fail:
            raise istiod.IstiodError("ConfigMap istio-system/istio is missing")
        return {"pid": 1}


def test_the_follower_starts_istiod_and_writes_the_route(lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _Script(monkeypatch, [obs(istiod_running=False, running_source=None)])
    f = follower.Follower(C, Path("/tc/bin/pilot-discovery"), api=object())  # type: ignore[arg-type]
    f.once()
    assert script.launches == [False]
    assert egress_routes.read_routes(follower.routes_file(C)) == ROUTE  # what the egress proxy process follows
    script.observations = [obs(deployment=None, istiod_running=False)]
    f.once()
    assert egress_routes.read_routes(follower.routes_file(C)) == {}


def test_a_failed_start_is_retried_after_a_backoff(lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = _Script(monkeypatch, [obs(istiod_running=False, running_source=None)], fail=True)
    f = follower.Follower(C, Path("/tc/bin/pilot-discovery"), api=object())  # type: ignore[arg-type]
    f.once()
    f.once()  # within the back-off: no second attempt
    assert script.launches == [False] and f.failures == 1
    f.retry_at = 0
    f.once()
    assert script.launches == [False, False] and f.failures == 2
    # A rollout resets the back-off: the new Deployment gets its chance at once.
    script.observations = [obs(deployment=ROLLED, istiod_running=False, running_source=None)]
    script.fail = False
    f.once()  # no waiting out the back-off of the previous template
    assert script.launches == [False, False, False] and f.failures == 0


def test_a_manual_stop_marker_is_pinned_to_the_deployment_seen(lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    istiod.write_json(istiod.stop_marker(C), {"deployment": None})
    script = _Script(monkeypatch, [obs(istiod_running=False, stopped_by_hand=True, stopped_for=None)])
    f = follower.Follower(C, Path("/tc/bin/pilot-discovery"), api=object())  # type: ignore[arg-type]
    f.once()
    assert script.launches == []
    assert (istiod.read_json(istiod.stop_marker(C)) or {})["deployment"] == DEP


def test_manual_stop_without_an_api_server_holds_for_the_deployment_istiod_ran_from(lab_dir: Path) -> None:
    istiod.write_json(istiod.source_file(C), DEP)
    assert istiod.stop("pilot-discovery", [C], hold=True) == []  # nothing ran; the marker is still written
    assert (istiod.read_json(istiod.stop_marker(C)) or {})["deployment"] == DEP


def test_the_istiod_lock_times_out_naming_the_file(lab_dir: Path) -> None:
    with istiod.lock(C), pytest.raises(istiod.IstiodError, match=r"istiod\.lock is held"):  # noqa: SIM117
        with istiod.lock(C, timeout=0.3):
            pass


# ---- a manual start while the follower restarts istiod ------------------------------------------------


def test_a_manual_start_waits_through_a_restart_by_the_follower(lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The follower restarts istiod under the lock (stop, then start): a manual `lab istiod start` waiting for
    readiness sees no istiod for that moment and must wait for the lock, not report that istiod exited."""
    import threading

    running: dict[str, int | None] = {"pid": None}
    holding = threading.Event()

    def follower_restart() -> None:
        with istiod.lock(C):
            holding.set()
            time.sleep(0.6)
            running["pid"] = 4242  # the restarted istiod

    monkeypatch.setattr(istiod.procs, "running_pid", lambda pidfile, binary: running["pid"])
    monkeypatch.setattr(istiod, "ready", lambda c: running["pid"] is not None)
    t = threading.Thread(target=follower_restart)
    t.start()
    holding.wait(5)
    istiod.wait_ready(Path("/bin/true"), [C], timeout=10)
    t.join()


def test_an_istiod_that_exits_with_the_lock_free_is_reported(lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(istiod.procs, "running_pid", lambda pidfile, binary: None)
    monkeypatch.setattr(istiod.procs, "tail", lambda path, n: "bind: address already in use")
    with pytest.raises(istiod.IstiodError, match=r"istiod exited during start-up(.|\n)*address already in use"):
        istiod.wait_ready(Path("/bin/true"), [C], timeout=10)


class _Objects:
    """The two objects istiod mounts, served by path as the lab's API client would."""

    def __init__(self) -> None:
        self.objects: dict[str, Any] = {
            "/api/v1/namespaces/istio-system/configmaps/istio": {"data": {"mesh": "trustDomain: cluster.local\n"}},
            "/api/v1/namespaces/istio-system/secrets/cacerts": {"data": {"root-cert.pem": _b64("old root")}},
        }

    def get(self, path: str) -> Any:
        from lab.kubeapi import ApiError

        if path not in self.objects:
            raise ApiError(404, "not found")
        return self.objects[path]


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_a_changed_secret_or_configmap_reaches_the_running_istiod_in_place_without_a_restart(
    lab_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _Script(monkeypatch, [obs()])  # istiod runs from the current Deployment
    api = _Objects()
    f = follower.Follower(C, Path("/bin/true"), api=api)  # type: ignore[arg-type]
    f.once()
    root = lab_dir / C.name / "istiod" / "etc" / "cacerts" / "root-cert.pem"
    assert root.read_text() == "old root" and root.is_symlink()
    f.once()
    assert capsys.readouterr().out.count("updated istiod's cacerts volume") == 1  # the first poll, not the second

    api.objects["/api/v1/namespaces/istio-system/secrets/cacerts"]["data"]["root-cert.pem"] = _b64("old + new root")
    api.objects["/api/v1/namespaces/istio-system/configmaps/istio"]["data"]["mesh"] = "trustDomain: other\n"
    f.once()
    assert root.read_text() == "old + new root"
    assert (lab_dir / C.name / "istiod" / "etc" / "istio" / "config" / "mesh").read_text() == "trustDomain: other\n"
    out = capsys.readouterr().out
    assert "updated istiod's config volume" in out and "updated istiod's cacerts volume" in out
    assert script.launches == []  # no start, no restart: istiod's own watchers reload
