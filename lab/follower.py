"""The lab's kubelet for istiod: follows Deployment ``istio-system/istiod`` and its Service in one cluster.

No kubelet runs in the lab, so nothing would start istiod when the mesh program installs it, or restart
it when a rollout changes its pod template. One follower per cluster (``python -m lab.follower
--cluster I``, started by ``lab up``, stopped by ``lab down``, shown by ``lab status``) polls every
second and:

* starts the local istiod (``lab/istiod.py``, exactly what ``lab istiod start`` does) once the
  Deployment exists, and restarts it when the Deployment changes (``istiod.identity``: a new pod
  template is a rollout; a recreated Deployment has a new uid) or the injector's ConfigMap appears
  after istiod started without it; starts it again when it exited (a kubelet's restart policy, with
  a back-off);
* writes the egress route ``<istiod Service ClusterIP>:443 -> <cluster address>:<webhook port>`` so
  the API server reaches the sidecar injector and config validator (``lab/egress.py``,
  ``lab/egress_routes.py``);
* while istiod runs: keeps its volumes (ConfigMap ``istio``, Secret ``cacerts``) up to date in place, as
  a kubelet updates a mounted ConfigMap or Secret (``istiod_spec.sync_mounts``): istiod watches both
  and reloads, so a changed mesh config or CA reaches it without a restart, as in a real cluster;
* when the Deployment is deleted: stops istiod and removes the route.

A manual ``lab istiod stop`` is respected (``istiod.stop_marker``): istiod stays stopped until the
Deployment changes or goes, or ``lab istiod start|restart``. One process per cluster, not one for the
lab: each cluster's API server may hang or go away on its own without holding up the others, ``up``
and ``down`` already work cluster by cluster, and its log sits with the cluster's other logs.

Every API call has a timeout; an error is logged with what was being read and retried on the next
poll; the process only ends on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from . import egress_routes, istiod, istiod_spec, procs
from .kubeapi import ApiError, Client
from .layout import Cluster
from .wait import wait_until

POLL_SECONDS = 1.0
API_TIMEOUT = 5.0
READY_TIMEOUT = 120.0
#: Seconds before retrying a start that failed: 1, 2, 4, ... at most BACKOFF_MAX (reset by a change).
BACKOFF_MAX = 30.0
WEBHOOK_SERVICE_PORT = 443  # the chart's webhooks: istiod.istio-system:443 -> targetPort 15017


def routes_file(c: Cluster) -> Path:
    return c.dir / "egress-routes.json"


# ---- the decision (pure) -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Observed:
    """One poll's view of a cluster; ``deployment`` and ``running_source`` are ``istiod.identity`` dicts."""

    deployment: dict[str, Any] | None  # None: there is no Deployment istio-system/istiod
    service_ip: str | None  # the istiod Service's spec.clusterIP (None: no Service, or headless)
    istiod_running: bool
    running_source: dict[str, Any] | None  # what the running istiod was started from (istiod/source.json)
    stopped_by_hand: bool  # a `lab istiod stop` marker exists ...
    stopped_for: dict[str, Any] | None  # ... for this Deployment identity


@dataclasses.dataclass(frozen=True)
class Plan:
    istiod: str  # "none" | "start" | "restart" | "stop"
    routes: dict[egress_routes.Address, egress_routes.Address]
    clear_stop_marker: bool
    reason: str


def same_deployment(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two identities are the same Deployment with the same pod template (no rollout between)."""
    return a is not None and b is not None and (a.get("uid"), a.get("template")) == (b.get("uid"), b.get("template"))


def decide(c: Cluster, o: Observed) -> Plan:
    """What to do about istiod and the egress route, given one poll's observations."""
    if o.deployment is None:
        return Plan(
            "stop" if o.istiod_running else "none",
            {},
            o.stopped_by_hand,
            "the Deployment istio-system/istiod is gone",
        )
    routes: dict[egress_routes.Address, egress_routes.Address] = {}
    if o.service_ip:
        routes[(o.service_ip, WEBHOOK_SERVICE_PORT)] = (c.ip, c.istiod_ports[15017])
    if o.stopped_by_hand:
        if o.stopped_for is None or same_deployment(o.stopped_for, o.deployment):
            # (A marker that could not name the Deployment applies to the one there now: the follower
            # pins it, see Follower.once, so a later rollout still ends the stop.)
            return Plan("none", routes, False, "stopped by `lab istiod stop` (until the Deployment changes)")
        # The Deployment changed since the manual stop: a rollout starts istiod again, as a kubelet would.
        return Plan(
            "restart" if o.istiod_running else "start",
            routes,
            True,
            "the Deployment changed since `lab istiod stop`",
        )
    if not o.istiod_running:
        return Plan("start", routes, False, "the Deployment exists and istiod is not running")
    if not same_deployment(o.running_source, o.deployment):
        return Plan(
            "restart",
            routes,
            False,
            f"the Deployment changed (running from {o.running_source}, now {o.deployment})",
        )
    # istiod reads the injector's ConfigMap at start only when it exists then (it watches it from then
    # on, so a ConfigMap replaced later needs nothing): started without it, istiod never injects.
    if o.running_source is not None and not o.running_source.get("injector") and o.deployment.get("injector"):
        return Plan("restart", routes, False, "the injector's ConfigMap appeared after istiod started without it")
    return Plan("none", routes, False, "istiod runs from the current Deployment")


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failed starts of the same Deployment."""
    return 0.0 if failures <= 0 else min(BACKOFF_MAX, 2.0 ** (failures - 1))


# ---- observing and acting ------------------------------------------------------------------------
def observe(api: Client, c: Cluster, binary: Path) -> Observed:
    """Reads the Deployment and Service (ApiError/OSError propagate: the caller logs and retries)."""
    deployment: dict[str, Any] | None = None
    try:
        dep = api.get(istiod.deployment_path())
        deployment = istiod.identity(dep, istiod.injector_present(api, dep))
    except ApiError as e:
        if e.status != 404:
            raise
    service_ip: str | None = None
    try:
        svc = api.get(f"/api/v1/namespaces/{istiod.NAMESPACE}/services/{istiod.SERVICE}")
        ip = (svc.get("spec") or {}).get("clusterIP")
        service_ip = ip if ip and ip != "None" else None
    except ApiError as e:
        if e.status != 404:
            raise
    marker = istiod.read_json(istiod.stop_marker(c))
    return Observed(
        deployment=deployment,
        service_ip=service_ip,
        istiod_running=procs.running_pid(c.pidfile("istiod"), binary) is not None,
        running_source=istiod.read_json(istiod.source_file(c)),
        stopped_by_hand=istiod.stop_marker(c).exists(),
        stopped_for=(marker or {}).get("deployment"),
    )


class Follower:
    def __init__(self, c: Cluster, binary: Path, api: Client | None = None) -> None:
        self.c = c
        self.binary = binary
        self.api = api if api is not None else Client(c, timeout=API_TIMEOUT)
        self.stopping = threading.Event()
        self.failures = 0
        self.failed_for: dict[str, Any] | None = None
        self.retry_at = 0.0
        self.last_reason = ""
        self.last_error = ""
        self.last_sync_error = ""

    def log(self, msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.c.name} follower: {msg}", flush=True)

    def run(self) -> None:
        what = f"{istiod.NAMESPACE}/{istiod.DEPLOYMENT}"
        self.log(f"following {what} every {POLL_SECONDS:g}s (pilot-discovery {self.binary})")
        while not self.stopping.is_set():
            try:
                self.once()
            except Exception:  # the follower must outlive any single poll: it logs the traceback and retries
                self.log("poll failed, retrying:\n" + traceback.format_exc())
            self.stopping.wait(POLL_SECONDS)
        self.log("stopped")

    def once(self) -> None:
        _reap_children()
        try:
            obs = observe(self.api, self.c, self.binary)
        except (OSError, ApiError, ValueError) as e:
            msg = f"cannot read Deployment/Service {istiod.NAMESPACE}/istiod from {self.c.server}: {e}"
            if msg != self.last_error:
                self.log(msg + " (retrying every poll)")
                self.last_error = msg
            return
        self.last_error = ""
        plan = decide(self.c, obs)
        self.apply_routes(plan.routes)
        if plan.istiod == "none":
            if obs.stopped_by_hand and obs.stopped_for is None and obs.deployment is not None:
                istiod.write_json(istiod.stop_marker(self.c), {"deployment": obs.deployment, "pinned": True})
            self.note(plan.reason)
            if obs.istiod_running and not obs.stopped_by_hand:
                self.sync_volumes()
            return
        if self.failed_for is not None and not same_deployment(obs.deployment, self.failed_for):
            # A new Deployment (or rollout) gets its chance at once: the back-off was for the old one.
            self.failures, self.failed_for, self.retry_at = 0, None, 0.0
        if plan.istiod in ("start", "restart") and time.monotonic() < self.retry_at:
            return
        self.log(f"{plan.istiod} istiod: {plan.reason}")
        self.last_reason = ""
        try:
            with istiod.lock(self.c):
                # Re-read under the lock: a manual command may have acted since the observation.
                again = decide(self.c, observe(self.api, self.c, self.binary))
                if again.istiod != plan.istiod:
                    self.log(f"not acting: now {again.istiod} ({again.reason})")
                    return
                if plan.clear_stop_marker:
                    istiod.stop_marker(self.c).unlink(missing_ok=True)
                if plan.istiod == "stop":
                    procs.stop(self.c.pidfile("istiod"), self.binary)
                    istiod.source_file(self.c).unlink(missing_ok=True)
                    self.log("stopped istiod")
                    return
                istiod.launch(self.binary, self.c, restart=plan.istiod == "restart")
            self.wait_ready()
            self.failures, self.failed_for = 0, None
            self.log(f"istiod ready on {istiod.http_url(self.c)}")
        except (OSError, ApiError, istiod.IstiodError, ValueError) as e:
            self.failures += 1
            self.failed_for = obs.deployment
            wait = backoff(self.failures)
            self.retry_at = time.monotonic() + wait
            self.log(f"{plan.istiod} failed ({self.failures} in a row; next try in {wait:g}s): {e}")

    def sync_volumes(self) -> None:
        """A changed ConfigMap ``istio`` or Secret ``cacerts`` reaches the running istiod the way a kubelet
        updates a mounted volume: in place, the files swapped at once, no restart (istiod watches both)."""
        try:
            with istiod.lock(self.c):
                _, changed = istiod_spec.sync_mounts(self.api, self.c)
        except (OSError, ApiError, istiod.IstiodError, ValueError) as e:
            msg = f"cannot update istiod's volumes: {e}"
            if msg != self.last_sync_error:
                self.log(msg + " (retrying every poll)")
                self.last_sync_error = msg
            return
        self.last_sync_error = ""
        for name in changed:
            self.log(f"updated istiod's {name} volume in place ({istiod_spec.MOUNTS[name]}), as a kubelet does")

    def wait_ready(self) -> None:
        """Until istiod answers /ready, or the follower is stopping (SIGTERM ends the wait at once)."""

        def done() -> bool:
            if self.stopping.is_set():
                return True
            if procs.running_pid(self.c.pidfile("istiod"), self.binary) is None:
                raise istiod.IstiodError(
                    f"istiod exited during start-up; last lines of {self.c.log('istiod')}:\n"
                    + procs.tail(self.c.log("istiod"), 20)
                )
            return istiod.ready(self.c)

        wait_until(
            "istiod /ready",
            done,
            READY_TIMEOUT,
            0.5,
            lambda: istiod.IstiodError(
                f"istiod not ready on {istiod.http_url(self.c)}/ready after {READY_TIMEOUT:.0f}s; "
                f"see {self.c.log('istiod')}"
            ),
            sleep=self.stopping.wait,
        )

    def apply_routes(self, routes: dict[egress_routes.Address, egress_routes.Address]) -> None:
        path = routes_file(self.c)
        try:
            current = egress_routes.read_routes(path)
        except ValueError:
            current = None
        if current != routes or not path.exists():
            egress_routes.write_routes(path, routes)
            shown = ", ".join(
                f"{egress_routes.format_address(t)}={egress_routes.format_address(d)}" for t, d in routes.items()
            )
            self.log(f"egress routes: {shown or 'none'}")

    def note(self, reason: str) -> None:
        if reason != self.last_reason:
            self.log(reason)
            self.last_reason = reason


def _reap_children() -> None:
    """Collects istiods that exited (they are this process's children) so none lingers as a zombie."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.follower", description=__doc__.split("\n")[0])
    ap.add_argument("--cluster", type=int, required=True, help="the lab cluster's index (cluster<I>)")
    ap.add_argument("--pilot-discovery", type=Path, required=True, help="the istiod binary to run")
    args = ap.parse_args(argv)
    follower = Follower(Cluster(args.cluster), args.pilot_discovery)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: follower.stopping.set())
    follower.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
