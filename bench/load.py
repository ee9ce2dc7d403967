"""A bounded request load on a running mesh, measured in failed requests (issue 26): the instrument that day-2
changes (a cluster joins or leaves, a token or an intermediate is rotated, a gateway stops) are measured with.

From each cluster's ``sleep`` pod (found as ``verify --traffic`` finds it), R requests per second to
``http://helloworld.sample:5000/hello`` for D seconds, through ONE pod exec per cluster running a shell loop
in the pod (``load_command``). The loop never starts two requests less than 1000/R ms apart, whether they
answer, fail fast or hang (each curl runs in the background, bounded by ``--max-time``), prints one line per
request (its start in epoch milliseconds, curl's exit code, the HTTP status, the time it took, the answer or
curl's error) and stops by itself at its deadline: nothing is left running in the pod if this process dies.

``start`` returns at once; ``Load.mark(label)`` records when a phase began ("pulumi up started", "up done");
``Load.result()`` waits and returns, per source cluster, the requests sent, answered (by version and
answering cluster, as verify maps helloworld's instances), failed (by reason), the longest gap between two
answered requests and the window the failures fell in, for the whole run or per phase. ``render_table``
writes the markdown table ``bench/README.md`` shows. Run it with ``python -m bench.load`` from the
repository root (``--help``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from verify.facts import DEFAULT_SERVICE, Reply, TrafficFacts
from verify.kube import REQUEST_TIMEOUT, error_text, read
from verify.traffic import (
    EXEC_MARGIN,
    STATUS,
    STDERR,
    STDOUT,
    ExecStream,
    StreamFn,
    exec_error_text,
    exec_place,
    locate_sleep_pod,
    open_exec,
    reply_of,
    service_url,
    status_message,
    tally,
)

#: Requests per second from each cluster: default and bounds (each request is a curl process in the pod).
DEFAULT_RATE, MAX_RATE = 10, 50
#: Seconds the load runs: default and bounds (the loop stops by itself after it).
DEFAULT_DURATION, MAX_DURATION = 60, 600
#: Seconds each request may take (curl ``--max-time``): default and bounds; at most RATE x MAX_TIME in flight.
DEFAULT_MAX_TIME, MAX_MAX_TIME = 2, 10
#: Seconds the loop may spend lining its clock up with the second's edge (see ``load_command``).
CLOCK_ALIGN = 2
#: The first word of every line the loop prints.
MARK = "bench-load"
#: Separates curl's output from its write-out in the loop.
_WRITE_OUT = "@@bench-load-w@@"
#: The reason of a request whose line never arrived (the exec ended or broke first).
NO_OUTCOME = "no outcome: its line never arrived"
#: The label of the phase from the start of the load to the first mark.
FIRST_PHASE = "load started"
_AFTER_MS = re.compile(r"after \d+ ms\b")
#: What a stop file's path may be (it is quoted in the loop's script).
_STOP_FILE = re.compile(r"(/[A-Za-z0-9._-]+)+")
#: Where the loop looks for its stop file, in the sleep container (the lab's pods share the host's /tmp: each
#: load and source has its own name).
STOP_DIR = "/tmp"

_SCRIPT = r"""set -f
M=__MARK__
case $(date +%s%3N) in
''|*[!0-9]*)
  up() { read -r u x </proc/uptime; u=${u%.*}${u#*.}; u=${u#"${u%%[!0]*}"}; }
  s=$(date +%s); f=$s
  while [ "$f" = "$s" ]; do sleep 0.01; f=$(date +%s); done
  up; b=$((f * 1000 - u * 10))
  now() { up; t=$((b + u * 10)); }
  echo "$M clock uptime";;
*)
  now() { t=$(date +%s%3N); }
  echo "$M clock date";;
esac
now; end=$((t + __DURATION_MS__)); due=$t; i=0; stop='__STOP__'
echo "$M start $t $end"
while :; do
  now
  [ "$t" -lt "$end" ] || break
  if [ -n "$stop" ] && [ -e "$stop" ]; then echo "$M stopped $t"; break; fi
  if [ "$t" -lt "$due" ]; then
    d=$((due - t)); z=$((d % 1000 + 1000)); sleep "$((d / 1000)).${z#1}"; continue
  fi
  i=$((i + 1)); due=$((t + __INTERVAL_MS__))
  (
    o=$(curl -s --max-time __MAX_TIME__ -w '\n__W__%{http_code} %{time_total}\t%{errormsg}' '__URL__' 2>/dev/null)
    rc=$?; w=${o##*__W__}; b=${o%__W__*}
    if [ "$w" = "$o" ]; then w=; fi
    set -- $b
    printf '%s req %s %s %s %s\t%.200s\n' "$M" "$i" "$t" "$rc" "$w" "$*"
  ) &
done
wait
[ -z "$stop" ] || rm -f "$stop"
echo "$M done $i"
"""


def check_bounds(rate: int, duration: int, max_time: int) -> None:
    """ValueError naming the setting, its value and the valid range."""
    for name, value, top in (("rate", rate, MAX_RATE), ("duration", duration, MAX_DURATION)):
        if not 1 <= value <= top:
            raise ValueError(f"{name}: {value} is out of range (a whole number from 1 to {top})")
    if not 1 <= max_time <= MAX_MAX_TIME:
        raise ValueError(f"max_time: {max_time} is out of range (a whole number from 1 to {MAX_MAX_TIME})")


def load_command(
    url: str, rate: int, duration: int, max_time: int = DEFAULT_MAX_TIME, stop_file: str | None = None
) -> list[str]:
    """The shell loop run in the sleep container. Its clock is ``date +%s%3N``; where ``date`` has no
    ``%N`` (busybox built without it) it is /proc/uptime (10 ms steps) lined up with the second's edge of
    ``date +%s``. Each request starts at least ceil(1000/rate) ms after the one before: at most ``rate``
    per second, even when requests fail at once; the loop ends ``duration`` s after it began, once the
    requests in flight (each at most ``max_time`` s) are done. Lines: ``clock``, ``start T END``, one
    ``req N T EXIT HTTP SECONDS<tab>ERROR<tab>BODY`` per request (body on one line, 200 characters at most),
    ``done N``. With ``stop_file`` (an absolute path in the pod), the loop also stops, sending nothing more,
    once that file exists (it prints ``stopped T``; ``Load.stop`` creates it) and removes it at its end."""
    check_bounds(rate, duration, max_time)
    if any(c in url for c in "'\\ \t\n") or not url.startswith(("http://", "https://")):
        raise ValueError(f"url: {url!r} is not an http(s) URL without quotes, backslashes or blanks")
    if stop_file is not None and not _STOP_FILE.fullmatch(stop_file):
        raise ValueError(f"stop_file: {stop_file!r} is not an absolute path of letters, digits, '.', '_', '-'")
    script = _SCRIPT
    for key, value in (
        ("__MARK__", MARK),
        ("__DURATION_MS__", str(duration * 1000)),
        ("__INTERVAL_MS__", str(-(-1000 // rate))),
        ("__MAX_TIME__", str(max_time)),
        ("__W__", _WRITE_OUT),
        ("__URL__", url),
        ("__STOP__", stop_file or ""),
    ):
        script = script.replace(key, value)
    return ["sh", "-c", script]


# ---- what the loop printed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One request: when it was sent (epoch ms, the pod's clock), how long it took, who answered or why not."""

    seq: int
    sent_ms: int
    took_ms: int | None
    reply: Reply

    @property
    def answered(self) -> bool:
        return self.reply.error is None and bool(self.reply.version and self.reply.instance)

    @property
    def done_ms(self) -> int:
        return self.sent_ms + (self.took_ms or 0)


@dataclass
class LoopOutput:
    """The loop's output, parsed: ``attempts`` by number, one per request sent (a request whose line is missing
    fails with NO_OUTCOME, at the time of the request before it); ``finished``: its ``done`` line arrived, so
    ``sent`` is exact (otherwise the highest request number seen)."""

    clock: str | None = None
    started_ms: int | None = None
    sent: int = 0
    finished: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    unparsed: int = 0
    #: When the loop saw its stop file (the pod's clock, epoch ms): it stopped before its deadline.
    stopped_ms: int | None = None


def attempt_of(line: str) -> Attempt | None:
    """One ``req`` line as an Attempt; None when it is cut short or not the loop's."""
    head, tab, body = line.rpartition("\t")
    head, _, err = head.partition("\t")
    words = head.split()
    if not tab or len(words) < 5 or words[:2] != [MARK, "req"] or not all(w.isdigit() for w in words[2:5]):
        return None
    seq, sent, rc = int(words[2]), int(words[3]), int(words[4])
    http = words[5] if len(words) > 5 else None
    seconds = words[6].replace(",", ".") if len(words) > 6 else ""  # curl's %{time_total}, 0.012345
    took = round(float(seconds) * 1000) if seconds.replace(".", "", 1).isdigit() else None
    lines = [f"curl: ({rc}) {err.strip()}"] if rc and err.strip() else []
    reply = reply_of([*lines, body.strip()] if body.strip() else lines, http, rc)
    if reply.error:  # as verify drops "N milliseconds": equal failures count together ("after 0 ms", "after 1 ms")
        reply = Reply(error=_AFTER_MS.sub("after N ms", reply.error))
    return Attempt(seq, sent, took, reply)


def parse_loop(stdout: str) -> LoopOutput:
    """The loop's lines. A last line without its newline (the stream was cut mid-line) and lines that are
    not the loop's are counted in ``unparsed``; lines of requests arrive in any order (they run in parallel)."""
    out = LoopOutput()
    seen: dict[int, Attempt] = {}
    lines = stdout.split("\n")
    out.unparsed += bool(lines[-1].strip())  # cut mid-line
    for line in lines[:-1]:
        words = line.split()
        if words[:2] == [MARK, "req"]:
            a = attempt_of(line)
            if a is None:
                out.unparsed += 1
            else:
                seen[a.seq] = a
        elif words[:2] == [MARK, "clock"] and len(words) == 3:
            out.clock = words[2]
        elif words[:2] == [MARK, "start"] and len(words) >= 3 and words[2].isdigit():
            out.started_ms = int(words[2])
        elif words[:2] == [MARK, "stopped"] and len(words) == 3 and words[2].isdigit():
            out.stopped_ms = int(words[2])
        elif words[:2] == [MARK, "done"] and len(words) == 3 and words[2].isdigit():
            out.finished, out.sent = True, int(words[2])
        elif line.strip():
            out.unparsed += 1
    if not out.finished:
        out.sent = max(seen, default=0)
    last = out.started_ms or min((a.sent_ms for a in seen.values()), default=0)
    for n in range(1, out.sent + 1):
        a = seen.get(n) or Attempt(n, last, None, Reply(error=NO_OUTCOME))
        out.attempts.append(a)
        last = a.sent_ms
    return out


# ---- counting --------------------------------------------------------------------------------------


@dataclass
class Stats:
    """Requests of one source (in one phase): sent, answered by (version, answering cluster or None), failed
    by reason; the longest gap between the sending of two answered requests (ms; about 1000/rate when nothing
    fails; None with fewer than two answers); the window of the failures (ms after the load started: the
    first failed request sent, the last one ended). ``error``: the load did not run from there; ``note``: it
    ran but its end was not seen (counts are then a lower bound)."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    answers: dict[tuple[str, str | None], int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    longest_gap_ms: int | None = None
    failures_from_ms: int | None = None
    failures_to_ms: int | None = None
    error: str | None = None
    note: str | None = None


def longest_gap(answered_ms: Sequence[int], lo: float = float("-inf"), hi: float = float("inf")) -> int | None:
    """The longest stretch between two consecutive answered requests (sorted send times), the part of it
    within [lo, hi) when a phase is asked for: an outage across a mark counts in both phases."""
    gaps = [min(b, hi) - max(a, lo) for a, b in itertools.pairwise(answered_ms)]
    gaps = [g for g in gaps if g > 0]
    return int(max(gaps)) if gaps else None


def summarize(
    attempts: Sequence[Attempt],
    owners: dict[str, list[str]],
    origin_ms: int,
    answered_ms: Sequence[int],
    lo: float = float("-inf"),
    hi: float = float("inf"),
) -> Stats:
    """Stats of the attempts sent within [lo, hi); ``answered_ms``: every answered request's send time of the
    whole run (a gap may begin before the phase); ``owners``: helloworld instance -> clusters holding it."""
    mine = [a for a in attempts if lo <= a.sent_ms < hi]
    t = tally(TrafficFacts("", "", "", len(mine), replies=[a.reply for a in mine]), owners)
    s = Stats(sent=len(mine), answered=t.answered, failed=t.failed, answers=t.answers, failures=t.failures)
    s.longest_gap_ms = longest_gap(answered_ms, lo, hi)
    failed = [a for a in mine if not a.answered]
    if failed:
        s.failures_from_ms = min(a.sent_ms for a in failed) - origin_ms
        s.failures_to_ms = max(a.done_ms for a in failed) - origin_ms
    return s


@dataclass
class SourceRun:
    """The load from one cluster: its sleep pod, the loop's output; ``error`` when it did not run, ``note``
    when its end was not seen (stream broke, exec hung, output cut)."""

    cluster: str
    pod: str | None = None
    output: LoopOutput = field(default_factory=LoopOutput)
    error: str | None = None
    note: str | None = None


@dataclass
class LoadResult:
    """Everything ``Load.result`` gathered. ``started_ms`` and ``marks`` are this machine's clock (epoch ms),
    the requests' times the pods' (the same clock in the lab; NTP-close on real nodes)."""

    url: str
    rate: int
    duration: int
    started_ms: int
    marks: list[tuple[str, int]]
    runs: dict[str, SourceRun]
    owners: dict[str, list[str]]

    def phases(self) -> list[tuple[str, int]]:
        """(label, start ms): FIRST_PHASE, then each mark in time order."""
        return [(FIRST_PHASE, self.started_ms), *sorted(self.marks, key=lambda m: m[1])]

    def stats(self, cluster: str, phase: str | None = None) -> Stats:
        """The whole run from ``cluster``, or the requests it sent during ``phase`` (a label of ``phases``)."""
        run = self.runs[cluster]
        if run.error:
            return Stats(error=run.error)
        lo, hi = float("-inf"), float("inf")
        if phase is not None:
            bounds = self.phases()
            i = [label for label, _ in bounds].index(phase)
            lo = float("-inf") if i == 0 else bounds[i][1]
            hi = bounds[i + 1][1] if i + 1 < len(bounds) else float("inf")
        attempts = run.output.attempts
        answered = sorted(a.sent_ms for a in attempts if a.answered)
        s = summarize(attempts, self.owners, self.started_ms, answered, lo, hi)
        s.note = run.note
        return s


# ---- running it --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    """A mesh cluster: its name and a ``CoreV1Api`` for it (its helloworld pods count as answering there)."""

    name: str
    core: Any


def service_pods(core: Any, service: str) -> list[str]:
    """The pods the Service ``NAME.NAMESPACE`` selects (any phase), by name."""
    name, _, namespace = service.partition(".")
    spec = (read(core.read_namespaced_service, name, namespace) or {}).get("spec") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    if not selector:
        return []
    pods = read(core.list_namespaced_pod, namespace, label_selector=selector) or {}
    return [str(p["metadata"]["name"]) for p in pods.get("items") or []]


def drain(ws: ExecStream, limit: float) -> tuple[str, str, str, str | None]:
    """(stdout, stderr, status, why its end was not seen) of an exec, read as it arrives for at most
    ``limit`` seconds (what arrived before a broken stream still counts); closes it."""
    out: list[str] = []
    err: list[str] = []
    status, note = "", None
    deadline = time.monotonic() + limit
    try:
        while ws.is_open() and time.monotonic() < deadline:
            ws.run_forever(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            out.append(ws.read_channel(STDOUT, timeout=0))
            err.append(ws.read_channel(STDERR, timeout=0))
        out.append(ws.read_channel(STDOUT, timeout=0))  # what came with the end (or before the first wait)
        err.append(ws.read_channel(STDERR, timeout=0))
        if ws.is_open():
            note = f"the exec did not end within {limit:.0f}s"
        else:
            status = ws.read_channel(STATUS, timeout=0)
    except Exception as e:  # the stream broke half-way: what arrived still counts, and the note says so
        note = f"the exec stream broke ({exec_error_text(e)})"
    finally:
        ws.close()
    return "".join(out), "".join(err), status, note


class Load:
    """A load under way (``start``). ``mark`` records phases; ``result`` waits for the end."""

    def __init__(
        self,
        url: str,
        rate: int,
        duration: int,
        max_time: int,
        clusters: Sequence[Cluster],
        service: str,
        stream_fn: StreamFn | None = None,
    ):
        self.url, self.rate, self.duration, self.max_time = url, rate, duration, max_time
        self.clusters, self.service, self.stream_fn = list(clusters), service, stream_fn
        token = secrets.token_hex(6)
        #: Each source's stop file in its pod (``stop``).
        self.stop_files = {c.name: f"{STOP_DIR}/{MARK}-stop.{token}.{c.name}" for c in self.clusters}
        self.started_ms = int(time.time() * 1000)
        #: Seconds the exec may take: the run, the requests in flight at its end, the clock's alignment.
        self.limit = duration + max_time + CLOCK_ALIGN + EXEC_MARGIN
        self.runs: dict[str, SourceRun] = {}
        self._marks: list[tuple[str, int]] = []
        self._owners: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def mark(self, label: str) -> None:
        """Records that the phase ``label`` begins now (this machine's clock)."""
        with self._lock:
            if label == FIRST_PHASE or any(label == m for m, _ in self._marks):
                raise ValueError(f"mark: {label!r} is already a phase of this load")
            self._marks.append((label, int(time.time() * 1000)))

    @property
    def marks(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._marks)

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def stop(self, timeout: float | None = None) -> LoadResult:
        """Stops every source's loop now, before its deadline (one more exec per source: it creates the loop's
        stop file), and returns ``result``. A source that cannot be told runs on to its deadline (said on
        stderr), and ``result`` waits for it."""
        _, _, namespace = self.service.partition(".")
        for c in self.clusters:
            run = self.runs.get(c.name)
            if run is None or run.pod is None or run.error:
                continue
            where = exec_place(namespace, run.pod)
            try:
                ws = open_exec(c.core, namespace, run.pod, ["touch", self.stop_files[c.name]], self.stream_fn)
                _, stderr, status, note = drain(ws, REQUEST_TIMEOUT)
                problem = status_message(status) or note or (stderr.strip() or None)
            except Exception as e:  # the loop still ends at its deadline
                problem = exec_error_text(e)
            if problem:
                print(f"load: cannot stop the load from {c.name} ({where}): {problem}", file=sys.stderr)
        return self.result(timeout)

    def result(self, timeout: float | None = None) -> LoadResult:
        """Waits for every source's exec (at most ``timeout`` s; by default the load's own bound plus the API
        calls around it), lists helloworld's pods again (instances that appeared during the run) and counts."""
        wait = self.limit + 3 * REQUEST_TIMEOUT if timeout is None else timeout
        end = time.monotonic() + wait
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        late = [t.name for t in self._threads if t.is_alive()]
        if late:
            raise TimeoutError(f"the load from {', '.join(late)} did not end within {wait:.0f}s")
        self._list_owners()
        with self._lock:
            owners = {i: sorted(c) for i, c in self._owners.items()}
        return LoadResult(self.url, self.rate, self.duration, self.started_ms, self.marks, dict(self.runs), owners)

    def _list_owners(self) -> None:
        """Adds each cluster's helloworld pods to the owners (unreadable clusters are skipped: their instances,
        if they answered, count as answered by an unknown cluster)."""
        for c in self.clusters:
            try:
                names = service_pods(c.core, self.service)
            except Exception as e:  # a cluster that left the mesh may be unreachable: said, not fatal
                print(f"load: cannot list {self.service}'s pods in {c.name}: {error_text(e)}", file=sys.stderr)
                continue
            with self._lock:
                for n in names:
                    self._owners.setdefault(n, set()).add(c.name)

    def _send_from(self, c: Cluster, stream_fn: StreamFn | None) -> None:
        run = self.runs[c.name]
        _, _, namespace = self.service.partition(".")
        try:
            run.pod, run.error = locate_sleep_pod(c.core, namespace)
            if run.pod is None:
                return
            where = exec_place(namespace, run.pod)
            command = load_command(self.url, self.rate, self.duration, self.max_time, self.stop_files[c.name])
            try:
                ws = open_exec(c.core, namespace, run.pod, command, stream_fn)
            except Exception as e:  # refused (403, no such container), unreachable: said in the result
                run.error = f"cannot {where}: {exec_error_text(e)}"
                return
            stdout, stderr, status, run.note = drain(ws, self.limit)
            run.output = parse_loop(stdout)
            if run.output.started_ms is None:
                why = status_message(status) or stderr.strip() or run.note or "no output"
                run.error = f"the load did not run ({where}): {why}"
            elif not run.output.finished and not run.note:
                run.note = "the loop's output ended before its last line"
        except Exception as e:  # a bug here is named in the result, not lost in a thread
            run.error = f"the load failed unexpectedly: {type(e).__name__}: {e}"


def start(
    clusters: Sequence[Cluster],
    rate: int = DEFAULT_RATE,
    duration: int = DEFAULT_DURATION,
    *,
    senders: Collection[str] | None = None,
    service: str = DEFAULT_SERVICE,
    url: str | None = None,
    max_time: int = DEFAULT_MAX_TIME,
    stream_fn: StreamFn | None = None,
) -> Load:
    """Starts the load from the sleep pod of each cluster in ``senders`` (default: all) and returns at once.
    ``service``: NAME.NAMESPACE (the sleep pods run in its namespace; the pods it selects in every cluster
    map an answer's instance to a cluster); ``url``: default ``http://NAME.NAMESPACE:<helloworld port>/hello``."""
    check_bounds(rate, duration, max_time)
    name, _, namespace = service.partition(".")
    if not name or not namespace:
        raise ValueError(f"service: {service!r} is not NAME.NAMESPACE")
    if url is None:
        from istio_mesh.sample_apps import HELLOWORLD_PORT

        url = service_url(name, namespace, HELLOWORLD_PORT)
    load_command(url, rate, duration, max_time)  # checks the URL before anything starts
    names = [c.name for c in clusters]
    unknown = sorted(set(senders or ()) - set(names))
    if unknown:
        raise ValueError(f"senders: {', '.join(unknown)} not among the clusters ({', '.join(names)})")
    load = Load(url, rate, duration, max_time, clusters, service, stream_fn)
    threads = [threading.Thread(target=load._list_owners, name="owners", daemon=True)]
    for c in clusters:
        if senders is None or c.name in senders:
            load.runs[c.name] = SourceRun(c.name)
            threads.append(threading.Thread(target=load._send_from, args=(c, stream_fn), name=c.name, daemon=True))
    load._threads = threads
    for t in threads:
        t.start()
    return load


# ---- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the table: a change (or a phase of it), the cluster the requests came from, their stats."""

    change: str
    source: str
    stats: Stats


def rows(change: str, result: LoadResult, by_phase: bool = False) -> list[Row]:
    """The rows of one load: one per source cluster, or one per (phase, source) as ``change: phase``."""
    if not by_phase:
        return [Row(change, c, result.stats(c)) for c in result.runs]
    return [Row(f"{change}: {p}", c, result.stats(c, p)) for p, _ in result.phases() for c in result.runs]


def _seconds(ms: int) -> str:
    return f"{ms / 1000:.2f}"


def render_table(table: Iterable[Row]) -> str:
    """Markdown: change, source cluster, requests, failed, longest gap between answers, failure window
    (seconds after the load started)."""
    out = [
        "| change | from | requests | failed | longest gap (s) | failures between (s) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in table:
        s = r.stats
        if s.error:
            cells = ["—", "—", "—", f"not run: {s.error}"]
        else:
            window = (
                "—"
                if s.failures_from_ms is None
                else f"{_seconds(s.failures_from_ms)} to {_seconds(s.failures_to_ms or 0)}"
            )
            gap = "no answer" if not s.answered and s.sent else "—" if s.longest_gap_ms is None else ""
            cells = [
                f"{s.sent}{' (end not seen)' if s.note else ''}",
                str(s.failed),
                gap or _seconds(s.longest_gap_ms or 0),
                window,
            ]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in [r.change, r.source, *cells]) + " |")
    return "\n".join(out) + "\n"


def details(result: LoadResult) -> str:
    """Per source: the pod, who answered, the failures by reason, and why a run's end was not seen."""
    out: list[str] = []
    for c, run in result.runs.items():
        s = result.stats(c)
        if s.error:
            out.append(f"- {c}: not run: {s.error}")
            continue
        answers = ", ".join(
            f"{n}x {v} from {where or 'an unknown cluster'}" for (v, where), n in sorted(s.answers.items(), key=str)
        )
        failures = ", ".join(f"{n}x {why}" for why, n in sorted(s.failures.items(), key=lambda kv: -kv[1]))
        out.append(f"- {c} (pod {run.pod}, clock {run.output.clock}): {answers or 'no answer'}")
        if failures:
            out.append(f"  - failed: {failures}")
        if s.note:
            out.append(f"  - {s.note}")
    marks = ", ".join(f"{label} at {_seconds(at - result.started_ms)} s" for label, at in result.marks)
    return "\n".join(out + ([f"- phases: {marks}"] if marks else [])) + "\n"


def as_json(result: LoadResult) -> dict[str, Any]:
    """The result as plain data (``--json``)."""

    def stats(s: Stats) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(s).items() if k != "answers"},
            "answers": [{"version": v, "cluster": c, "count": n} for (v, c), n in s.answers.items()],
        }

    return {
        "url": result.url,
        "rate": result.rate,
        "duration": result.duration,
        "startedMs": result.started_ms,
        "marks": [{"label": label, "atMs": at} for label, at in result.marks],
        "sources": {
            c: {
                "pod": run.pod,
                "clock": run.output.clock,
                "total": stats(result.stats(c)),
                "phases": {p: stats(result.stats(c, p)) for p, _ in result.phases()} if result.marks else {},
            }
            for c, run in result.runs.items()
        },
    }


# ---- command line ------------------------------------------------------------------------------------


def _bounded_int(top: int) -> Any:
    def parse(value: str) -> int:
        if not value.isdigit() or not 1 <= int(value) <= top:
            raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {top}, got {value!r}")
        return int(value)

    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Send a bounded load from each cluster's sleep pod to helloworld and count what failed "
        "(one exec per cluster; the loop in the pod stops by itself).",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stack", help="Pulumi stack whose config names the clusters (default: the selected stack)")
    src.add_argument("--config", metavar="FILE", help="YAML with the istio-mesh settings, as scripts/verify --config")
    ap.add_argument(
        "--from",
        dest="senders",
        action="append",
        metavar="CLUSTER",
        help="send from this cluster (repeatable; default: every cluster)",
    )
    for flag, top, default, what in (
        ("--rate", MAX_RATE, DEFAULT_RATE, "requests per second from each cluster"),
        ("--duration", MAX_DURATION, DEFAULT_DURATION, "seconds the load runs"),
        ("--max-time", MAX_MAX_TIME, DEFAULT_MAX_TIME, "seconds each request may take (curl --max-time)"),
    ):
        help_text = f"{what} (default %(default)s, at most {top})"
        ap.add_argument(flag, type=_bounded_int(top), default=default, metavar="N", help=help_text)
    ap.add_argument("--service", default=DEFAULT_SERVICE, help="NAME.NAMESPACE (default %(default)s)")
    ap.add_argument("--change", default="load", help="the label of the table's rows (default %(default)s)")
    ap.add_argument(
        "--marks",
        action="store_true",
        help="read phase labels from stdin while the load runs, one per line: each marks when its phase began",
    )
    ap.add_argument("--json", action="store_true", help="print the result as JSON instead of markdown")
    ap.add_argument("--project-dir", default=".", help=argparse.SUPPRESS)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0: the load ran from every source (failures are the measurement); 1: a source did not run or
    its end was not seen; 2: bad input."""
    import yaml
    from kubernetes import client

    from verify.cli import VerifyUsageError, stack_inputs, targets_from_config
    from verify.kube import client_for

    args = build_parser().parse_args(argv)
    try:
        if args.config:
            try:
                with open(args.config) as fh:
                    raw = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError) as e:
                raise VerifyUsageError(f"--config {args.config}: {e}") from None
            _, targets = targets_from_config(raw, os.path.dirname(os.path.abspath(args.config)))
        else:
            _, targets = targets_from_config(stack_inputs(args.stack, args.project_dir)[0], args.project_dir)
        clusters = [Cluster(t.name, client.CoreV1Api(client_for(t.kubeconfig, t.context))) for t in targets]
        load = start(
            clusters, args.rate, args.duration, senders=args.senders, service=args.service, max_time=args.max_time
        )
    except (VerifyUsageError, ValueError) as e:
        print(f"load: {e}", file=sys.stderr)
        return 2
    print(f"load: {args.rate}/s for {args.duration}s to {load.url} from {', '.join(load.runs)}", file=sys.stderr)
    if args.marks:

        def read_marks() -> None:
            for line in sys.stdin:
                if line.strip():
                    try:
                        load.mark(line.strip())
                    except ValueError as e:
                        print(f"load: {e}", file=sys.stderr)

        threading.Thread(target=read_marks, name="marks", daemon=True).start()
    result = load.result()
    if args.json:
        print(json.dumps(as_json(result), indent=2))
    else:
        print(render_table(rows(args.change, result, by_phase=bool(result.marks))))
        print(details(result), end="")
    return 1 if any(r.error or r.note for r in result.runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
