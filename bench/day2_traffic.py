"""Benchmark (not a test): each day-2 change of docs/operations.md applied to a running mesh on the lab's real
data plane while a bounded load runs, measured in failed requests (issue 26). ``bench/day2-traffic`` runs it.

One fresh three-cluster lab and a scratch copy of the project (stack ``cluster-lab``, config written per
change from the repository's lab stacks), clusters 1 and 2 deployed first. Then for each change: the load
(``bench/load.py``: 10 requests/s from every cluster's ``sleep`` pod to ``helloworld.sample:5000/hello``,
stopping by itself) starts, ``before`` for a few seconds, the change (``pulumi up`` or the out-of-band
action), and ``after`` until the load ends; the table has one row per change, phase and source cluster.
Writes ``bench/results-day2-traffic.md``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import load  # noqa: E402 - bench/load.py, next to this file

STACK = "cluster-lab"
#: Seconds of load before the change starts, and the load's whole length per change.
BEFORE, DURATION = 8, 110


def log(msg: str) -> None:
    print(f"[day2-traffic {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Project:
    """A scratch copy of the project whose stack config is written per change."""

    def __init__(self, work: Path, lab_dir: Path):
        self.dir = work / "project"
        self.dir.mkdir(parents=True)
        for name in ("Pulumi.yaml", "__main__.py"):
            (self.dir / name).write_text((REPO / name).read_text())
        for name in ("components", "stack_config", ".venv"):
            (self.dir / name).symlink_to(REPO / name)
        (self.dir / ".lab").symlink_to(lab_dir)
        two = yaml.safe_load((REPO / "Pulumi.cluster-lab.yaml").read_text())
        three = yaml.safe_load((REPO / "Pulumi.cluster-lab-3.yaml").read_text())
        self.base = two
        #: Every Envoy writes an access log (``--access-log``): which upstream a failed request went to.
        self.access_log = False
        self.entries = {c["name"]: c for c in three["config"]["istio-mesh:clusters"]}
        self.entries.update({c["name"]: c for c in two["config"]["istio-mesh:clusters"]})

    def write(self, clusters: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> None:
        doc = copy.deepcopy(self.base)
        if self.access_log:
            mesh_config = doc["config"]["istio-mesh:istio"].setdefault("values", {}).setdefault("meshConfig", {})
            mesh_config["accessLogFile"] = "/dev/stdout"
        doc["config"]["istio-mesh:clusters"] = [copy.deepcopy(self.entries[n]) for n in clusters]
        if edit:
            edit(doc["config"])
        (self.dir / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def pulumi(self, *args: str) -> float:
        t0 = time.monotonic()
        proc = subprocess.run(
            ["pulumi", *args, "--stack", STACK, "--non-interactive"],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return time.monotonic() - t0


def api_client(lab_dir: Path, cluster: str) -> Any:
    """A Kubernetes ApiClient for a lab cluster, from the kubeconfig the lab wrote."""
    from kubernetes import config

    return config.new_client_from_config_dict(yaml.safe_load((lab_dir / cluster / "kubeconfig").read_text()))


def core(lab_dir: Path, cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client(lab_dir, cluster))


def apps(lab_dir: Path, cluster: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client(lab_dir, cluster))


def measure(
    lab_dir: Path, clusters: list[str], change: str, apply: Callable[[], str], access_log: bool = False
) -> tuple[list[load.Row], str]:
    """Run the load from every cluster's sleep pod, apply the change after ``BEFORE`` seconds; the rows per
    phase and a note (what was done, how long it took)."""
    sources = [load.Cluster(c, core(lab_dir, c)) for c in clusters]
    run = load.start(sources, rate=10, duration=DURATION)
    time.sleep(BEFORE)
    run.mark("change")
    t0 = time.monotonic()
    note = apply()
    took = time.monotonic() - t0
    run.mark("after")
    log(f"{change}: applied in {took:.1f}s ({note}); waiting for the load to end")
    result = run.result()
    print(load.details(result), flush=True)
    if access_log:
        print(failures_in_access_logs(lab_dir, result), flush=True)
    return load.rows(change, result, by_phase=True), f"{change}: {note}, {took:.1f} s"


#: Seconds of access log shown either side of a failed request.
AROUND = 3.0
_START_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\] ")


def failures_in_access_logs(lab_dir: Path, result: load.LoadResult) -> str:
    """Every failed request (source, when sent, why), then the access log lines of every Envoy of the lab
    (sidecars and gateways, the pods deleted since included: the lab keeps their logs) that started within
    ``AROUND`` seconds of one and did not answer 200: which upstream each went to and what Envoy saw."""
    failed = [(c, a) for c, run in result.runs.items() for a in run.output.attempts if not a.answered]
    if not failed:
        return "access logs: no request failed"
    out = ["failed requests:"]
    for c, a in failed:
        when = datetime.datetime.fromtimestamp(a.sent_ms / 1000, datetime.UTC).isoformat(timespec="milliseconds")
        out.append(f"- from {c}: request {a.seq} sent {when}, {a.took_ms} ms: {a.reply.error}")
    windows = [(a.sent_ms / 1000 - AROUND, a.done_ms / 1000 + AROUND) for _, a in failed]
    out.append("access log lines (not 200) around them:")
    for path in sorted(lab_dir.glob("*/pods/*/logs/istio-proxy.log")):
        hits = []
        for line in path.read_text(errors="replace").splitlines():
            m = _START_TIME.match(line)
            if not m or '" 200 ' in line:
                continue
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.UTC).timestamp()
            if any(lo <= t <= hi for lo, hi in windows):
                hits.append(line)
        if hits:
            out.append(f"  {path.relative_to(lab_dir)} ({_pod_name(path)}):")
            out += [f"    {h}" for h in hits]
    return "\n".join(out)


def _pod_name(log_path: Path) -> str:
    """The pod a log belongs to, from its sandbox's record (gone once the pod was stopped: then its uid)."""
    record = log_path.parent.parent / "pod.json"
    if record.exists():
        doc = json.loads(record.read_text())
        return f"{doc['namespace']}/{doc['name']}"
    return f"a pod since stopped, uid {log_path.parent.parent.name}"


def warm_up(lab_dir: Path, clusters: list[str], timeout: float = 300.0) -> None:
    """Until a short probe (5 s at the load's rate) from every cluster's sleep has no failure and reaches
    every helloworld version, so a table row never counts a mesh that was still forming."""
    sources = [load.Cluster(c, core(lab_dir, c)) for c in clusters]
    end = time.monotonic() + timeout
    while True:
        result = load.start(sources, rate=10, duration=5).result()
        table = load.rows("probe", result)
        failed = sum(r.stats.failed for r in table)
        versions = [{v for v, _ in r.stats.answers} for r in table]
        if not failed and all(len(v) >= 2 for v in versions) and all(r.stats.error is None for r in table):
            log(f"data plane ready: a probe of {sum(r.stats.sent for r in table)} requests, none failed")
            return
        if time.monotonic() > end:
            raise RuntimeError(f"the data plane did not settle in {timeout:.0f}s: last probe\n{load.details(result)}")
        time.sleep(3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/day2-traffic", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, help="a scratch directory (state, project)")
    ap.add_argument("--only", help="comma-separated change names to run (default: all)")
    ap.add_argument(
        "--access-log",
        action="store_true",
        help="every Envoy writes an access log; after each change, print the lines around each failed request",
    )
    args = ap.parse_args(argv)
    work = Path(args.work)
    lab_dir = Path(os.environ.get("LAB_DIR", REPO / ".lab"))
    py = str(REPO / ".venv" / "bin" / "python")
    subprocess.run([py, "-m", "lab", "down", "--purge"], cwd=REPO, check=True, capture_output=True)
    subprocess.run([py, "-m", "lab", "up", "--clusters", "3"], cwd=REPO, check=True, capture_output=True)
    proj = Project(work, lab_dir)
    proj.access_log = args.access_log
    two, three = ["cluster1", "cluster2"], ["cluster1", "cluster2", "cluster3"]
    proj.write(two)
    subprocess.run(
        ["pulumi", "stack", "init", STACK, "--secrets-provider", "passphrase", "--non-interactive"],
        cwd=proj.dir,
        check=True,
        capture_output=True,
    )
    took = proj.pulumi("up", "--yes", "--skip-preview")
    log(f"up from empty (cluster1, cluster2): {took:.1f}s; waiting for the data plane")
    warm_up(lab_dir, two)

    def up(clusters: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> Callable[[], str]:
        def apply() -> str:
            proj.write(clusters, edit)
            return f"pulumi up {proj.pulumi('up', '--yes', '--skip-preview'):.1f} s"

        return apply

    def set_path(*path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(cfg: dict[str, Any]) -> None:
            node = cfg
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value

        return edit

    def cluster_edit(name: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def edit(cfg: dict[str, Any]) -> None:
            for c in cfg["istio-mesh:clusters"]:
                if c["name"] == name:
                    c[key] = value

        return edit

    def gateway_stopped() -> str:
        """cluster2's east-west gateway scaled to 0 out of band for 20 s, then back (what cluster1 sees)."""
        a = apps(lab_dir, "cluster2")
        a.patch_namespaced_deployment_scale("istio-eastwestgateway", "istio-system", {"spec": {"replicas": 0}})
        time.sleep(20)
        a.patch_namespaced_deployment_scale("istio-eastwestgateway", "istio-system", {"spec": {"replicas": 1}})
        return "cluster2's gateway scaled to 0 for 20 s, then to 1"

    changes: list[tuple[str, list[str], Callable[[], str]]] = [
        ("no change (pulumi up)", two, up(two)),
        ("token rotation", two, up(two, set_path("istio-mesh:remoteAccess", "tokenGeneration", value=2))),
        ("intermediate renewal", two, up(two, set_path("istio-mesh:ca", "renewBeforeDays", value=3700))),
        ("istio.tag change", two, up(two, set_path("istio-mesh:istio", "tag", value="1.30.5"))),
        ("meshId change", two, up(two, lambda cfg: cfg.update({"istio-mesh:meshId": "mesh2"}))),
        ("add cluster3", two, up(three)),
        ("remove cluster3", three, up(two)),
        ("cluster2's gateway stopped", two, gateway_stopped),
        # Last: it rolls cluster2's sample pods (the load's own sleep among them) and the config written for
        # any later change would move cluster2 back.
        ("network change (cluster2 -> network9)", two, up(two, cluster_edit("cluster2", "network", "network9"))),
    ]
    wanted = set(args.only.split(",")) if args.only else None
    table: list[load.Row] = []
    notes = []
    for name, senders, apply in changes:
        if wanted and name not in wanted:
            continue
        log(f"{name}: load from {', '.join(senders)}")
        try:
            warm_up(lab_dir, senders)
            rows, note = measure(lab_dir, senders, name, apply, args.access_log)
        except Exception as e:  # one change failing must not lose the others' figures
            log(f"{name}: FAILED: {e}")
            notes.append(f"{name}: not measured: {e}".splitlines()[0])
            continue
        table += rows
        notes.append(note)
        time.sleep(5)
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; the lab's real data plane (upstream "
        f"Envoy 1.40 under Istio 1.30's pilot-agent); 10 requests/s from each cluster's sleep for {DURATION} s "
        f"per change, the change {BEFORE} s in (phases: before, change = while it was applied, after).\n\n"
        + load.render_table(table)
        + "\n"
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )
    (REPO / "bench" / "results-day2-traffic.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
