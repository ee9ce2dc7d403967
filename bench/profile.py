"""Where the time of a `pulumi up` from empty and of a no-op `pulumi preview` goes (bench/profile).

Each operation runs in a session of its own; every process of that session (the engine, the Python
language host running the program and its dynamic providers, each provider plugin) is sampled from
/proc every 0.2 s for its CPU time. A second run of the same operation with the engine's own log
(``-v=7 --logflow``) gives the timeline: when the program started, every provider call (Check, Diff,
Create, ..., Construct of a Helm chart) with its duration, aggregated per operation and resource kind.
Logging costs time itself, so wall times are reported from the plain runs and the per-call table only
for where the time goes.

Usage (bench/profile does the set-up): python bench/profile.py --stack cluster-lab --out FILE
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CALL = re.compile(r"Provider\[[^\]]*\]\.(Check|Diff|Create|Update|Read|Delete|Construct|Invoke|Call)\(([^,)]*)")


@dataclass
class Sample:
    """CPU seconds per process of one run, by the role the process plays."""

    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    returncode: int = 0
    output: str = ""


def _role(cmdline: str) -> str:
    exe = Path(cmdline.split("\0", 1)[0]).name
    if "pulumi-resource-pulumi-python" in cmdline or "dynamic" in cmdline:
        return "provider pulumi-python (dynamic)"
    if exe == "pulumi":
        return "engine (pulumi CLI)"
    if exe.startswith("pulumi-resource-"):
        return "provider " + exe.removeprefix("pulumi-resource-")
    if "pulumi-language-python-exec" in cmdline or "pulumi_language_python" in cmdline:
        return "program (Python)"
    if "pulumi-language-python" in cmdline:
        return "language host"
    if "python" in exe:
        return "program (Python)"
    return exe


def _session_cpu(sid: int) -> dict[int, tuple[str, float]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is the state (stat field 3): session is field 6, utime/stime fields 14/15.
        if int(fields[3]) != sid:
            continue
        out[int(entry.name)] = (_role(cmdline), (int(fields[11]) + int(fields[12])) / TICK)
    return out


def run_sampled(cmd: list[str], env: dict[str, str], cwd: Path, stderr_path: Path | None = None) -> Sample:
    """Run cmd in a new session; CPU seconds per role of every process it started."""
    sample = Sample()
    err = open(stderr_path, "w") if stderr_path else subprocess.PIPE  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
    )
    seen: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            for pid, (role, cpu) in _session_cpu(proc.pid).items():
                # A process that has exited (a zombie) shows an empty command line: keep its first role.
                known_role, known_cpu = seen.get(pid, (role, 0.0))
                seen[pid] = (known_role or role, max(cpu, known_cpu))
            done.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, errs = proc.communicate()
    sample.wall = time.monotonic() - t0
    done.set()
    poller.join()
    if stderr_path:
        err.close()  # type: ignore[union-attr]
    sample.returncode = proc.returncode
    sample.output = (out or "") + (errs or "")
    for role, cpu in seen.values():
        sample.cpu[role] += cpu
    return sample


@dataclass
class Timeline:
    wall: float
    program_start: float
    calls: dict[tuple[str, str], list[float]]
    constructs: list[tuple[str, float, float]]
    #: When the engine asked the language host for the program's plugins, and when it had the answer.
    plugins: tuple[float, float] = (0.0, 0.0)


def _when(stamp: str) -> datetime.datetime:
    """A log record's time (RFC 3339 with a varying number of fraction digits) as naive UTC."""
    stamp = stamp.removesuffix("Z")
    whole, _, frac = stamp.partition(".")
    return datetime.datetime.fromisoformat(f"{whole}.{(frac + '000000')[:6]}")


def parse_log(path: Path) -> Timeline:
    """Provider calls from the engine's -v=7 log: (operation, kind) -> durations; chart spans."""
    started: dict[tuple[str, str], datetime.datetime] = {}
    calls: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    constructs = []
    first = last = None
    program_start = 0.0
    plugins_asked = plugins_known = 0.0
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        t = _when(rec["time"])
        first = first or t
        last = t
        msg = rec.get("msg", "")
        if not program_start and msg.startswith("langhost[python].Run("):
            program_start = (t - first).total_seconds()
        if not plugins_asked and msg.startswith("gatherPackagesFromProgram(): gathering plugins"):
            plugins_asked = (t - first).total_seconds()
        if not plugins_known and msg.startswith("langhost[python].GetRequiredPlugins(") and " success" in msg:
            plugins_known = (t - first).total_seconds()
        m = CALL.match(msg)
        if not m:
            continue
        op, arg = m.groups()
        if op == "Construct":
            # Construct(<type>, <name>, <parent urn>)
            name = msg.split(", ")[1] if ", " in msg else arg
            key = (op, name)
        else:
            key = (op, arg)
        if "executing" in msg:
            started[key] = t
        elif key in started and (" success" in msg or " failed" in msg):
            took = (t - started.pop(key)).total_seconds()
            if op == "Construct":
                constructs.append((key[1], (t - first).total_seconds() - took, took))
                kind = "helm.sh/v4:Chart"
            elif op in ("Invoke", "Call"):
                kind = arg
            else:
                kind = arg.split("::")[-2].split("$")[-1].removeprefix("kubernetes:") if "::" in arg else arg
            calls[(op, kind)].append(took)
    wall = (last - first).total_seconds() if first and last else 0.0
    return Timeline(wall, program_start, calls, constructs, (plugins_asked, plugins_known))


def phase_table(tl: Timeline) -> list[str]:
    """The run's wall time cut where the critical path changes hands (from the engine's log)."""
    if not tl.constructs or not tl.program_start:
        return []
    first_chart = min(start for _, start, _ in tl.constructs)
    base_done = max(
        (start + took for name, start, took in tl.constructs if name.endswith("-base")), default=first_chart
    )
    charts_done = max(start + took for _, start, took in tl.constructs)
    asked, known = tl.plugins
    marks = [
        ("CLI start-up: backend, stack state and secrets, the language host's runtime metadata", asked or 0.0),
        ("the language host lists the program's plugins (Python host: `pip list`)", known or asked),
        ("the engine starts the program", tl.program_start),
        ("the program: imports, config, first resources, up to the first Helm chart", first_chart),
        ("Istio's `base` charts: render, then check and diff (or create) each CRD", base_done),
        ("the `istiod` and gateway charts and the rest of the resources", charts_done),
        ("the last resources, outputs, summary", tl.wall),
    ]
    rows = ["| phase (critical path) | from s | to s | takes s |", "|---|---:|---:|---:|"]
    at = 0.0
    for label, until in marks:
        until = max(until, at)
        rows.append(f"| {label} | {at:.1f} | {until:.1f} | {until - at:.1f} |")
        at = until
    return rows


def cpu_table(title: str, samples: Iterable[tuple[str, Sample]]) -> list[str]:
    samples = list(samples)
    # Roles that used no measurable CPU (the dynamic provider's shell launcher and the like) are left out.
    used = {r for _, s in samples for r, cpu in s.cpu.items() if cpu >= 0.05}
    roles = sorted(used, key=lambda r: -max(s.cpu.get(r, 0) for _, s in samples))
    head = "| " + title + " | wall | " + " | ".join(f"CPU: {r}" for r in roles) + " |"
    rows = [head, "|---|---:|" + "---:|" * len(roles)]
    for label, s in samples:
        rows.append(f"| {label} | {s.wall:.1f} | " + " | ".join(f"{s.cpu.get(r, 0):.1f}" for r in roles) + " |")
    return rows


def call_table(tl: Timeline, top: int = 12) -> list[str]:
    rows = ["| provider call | resource kind | calls | total s | max s |", "|---|---|---:|---:|---:|"]
    # Construct spans hold their children's calls: they are the chart table's, not counted twice here.
    ranked = sorted(((k, v) for k, v in tl.calls.items() if k[0] != "Construct"), key=lambda kv: -sum(kv[1]))
    for (op, kind), ds in ranked[:top]:
        rows.append(f"| {op} | `{kind}` | {len(ds)} | {sum(ds):.1f} | {max(ds):.2f} |")
    rest = ranked[top:]
    if rest:
        n = sum(len(ds) for _, ds in rest)
        rows.append(f"| (all others) | | {n} | {sum(sum(ds) for _, ds in rest):.1f} | |")
    return rows


def chart_table(tl: Timeline) -> list[str]:
    rows = [
        "| Helm chart (Construct: render, register and check/diff its objects) | starts at s | takes s |",
        "|---|---:|---:|",
    ]
    for name, start, took in sorted(tl.constructs, key=lambda c: c[1]):
        rows.append(f"| {name} | {start:.1f} | {took:.1f} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stack", required=True)
    ap.add_argument("--project", type=Path, default=Path.cwd())
    ap.add_argument("--logs", type=Path, required=True, help="directory for the engine logs")
    ap.add_argument("--label", default="", help="what this run is (e.g. 'with Pulumi automatic logs')")
    args = ap.parse_args()
    env = dict(os.environ)
    base = ["pulumi", "--stack", args.stack, "--non-interactive"]
    args.logs.mkdir(parents=True, exist_ok=True)

    def op(name: str, *cli: str, log: bool = False) -> Sample:
        extra = ["-v=7", "--logflow", "--logtostderr"] if log else []
        s = run_sampled(
            [*base[:1], *cli, *base[1:], *extra], env, args.project, args.logs / f"{name}.log" if log else None
        )
        if s.returncode != 0:
            sys.stderr.write(s.output[-4000:])
            raise SystemExit(f"bench/profile: `pulumi {' '.join(cli)}` failed (exit {s.returncode})")
        return s

    def destroy() -> None:
        op("destroy", "destroy", "--yes", "--skip-preview")

    up = op("up", "up", "--yes", "--skip-preview")
    preview = op("preview", "preview", "--expect-no-changes")
    preview_refresh = op("preview-refresh", "preview", "--refresh", "--expect-no-changes")
    op("preview-logged", "preview", "--expect-no-changes", log=True)
    destroy()
    op("up-logged", "up", "--yes", "--skip-preview", log=True)
    destroy()
    tl_preview = parse_log(args.logs / "preview-logged.log")
    tl_up = parse_log(args.logs / "up-logged.log")

    lines = [
        f"Measured {datetime.date.today()} on {os.cpu_count()} cores{', ' + args.label if args.label else ''};"
        " seconds; CPU = user+system time of every process of that kind (2 cores: CPU can exceed wall).",
        "",
        *cpu_table(
            "operation",
            [("`up` from empty", up), ("no-op `preview`", preview), ("`preview --refresh`", preview_refresh)],
        ),
        "",
        f"No-op `preview`, engine log (-v=7, its wall {tl_preview.wall:.1f} s; program started at"
        f" {tl_preview.program_start:.1f} s):",
        "",
        *phase_table(tl_preview),
        "",
        *call_table(tl_preview),
        "",
        *chart_table(tl_preview),
        "",
        f"`up` from empty, engine log (its wall {tl_up.wall:.1f} s; program started at {tl_up.program_start:.1f} s):",
        "",
        *phase_table(tl_up),
        "",
        *call_table(tl_up),
        "",
        *chart_table(tl_up),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
