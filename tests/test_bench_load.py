"""The load of bench/load.py: its shell loop runs here under the machine's ``sh`` and ``curl`` against a local
server that answers as helloworld and fails as Envoy does (503, a hang beyond ``--max-time``, a closed port);
the pod exec is a fake of ``kubernetes.stream.stream`` that runs the command here and streams its output."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))

import load

from verify.facts import Reply

V1 = "helloworld-v1-776f57d5f6-s7zfc"
V2 = "helloworld-v2-54df5f84b-9xk2q"
NO_UPSTREAM = "HTTP 503: no healthy upstream"
TIMED_OUT = "curl: (28) Operation timed out after N milliseconds with 0 bytes received"


# ---- a local helloworld ------------------------------------------------------------------------------


class Server:
    """A local HTTP server whose answer to the n-th request (from 1) is ``answer(n)``: (status, body), or
    None to hang for 2.5 s (beyond the --max-time of 1 s the tests use)."""

    def __init__(self, answer: Callable[[int], tuple[int, str] | None]) -> None:
        self.answer, self.calls, self.lock = answer, 0, threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer.lock:
                    outer.calls += 1
                    n = outer.calls
                got = outer.answer(n)
                if got is None:
                    time.sleep(2.5)
                    return
                data = got[1].encode()
                self.send_response(got[0])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hello"


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[int], tuple[int, str] | None]], Server]]:
    servers: list[Server] = []

    def make(answer: Callable[[int], tuple[int, str] | None]) -> Server:
        s = Server(answer)
        threading.Thread(target=s.httpd.serve_forever, daemon=True).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def hello(version: str, instance: str) -> tuple[int, str]:
    return 200, f"Hello version: {version}, instance: {instance}\n"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hello"


def run_loop(url: str, rate: int, duration: int, env: dict[str, str] | None = None) -> tuple[load.LoopOutput, float]:
    """The loop under this machine's sh, as the pod runs it: (its parsed output, seconds it took)."""
    began = time.monotonic()
    done = subprocess.run(
        load.load_command(url, rate, duration, max_time=1), capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    # Its last line comes once the requests still in flight at the deadline have ended.
    assert done.stdout.splitlines()[-1].startswith(f"{load.MARK} done ")
    return load.parse_loop(done.stdout), time.monotonic() - began


# ---- the loop, for real -------------------------------------------------------------------------------


def test_the_loop_tells_answers_503s_and_requests_beyond_max_time_apart(serve: Any) -> None:
    """Turns of four: v1, v2, a 503 (Envoy's, no newline), a hang beyond --max-time."""
    srv = serve(lambda n: [None, hello("v1", V1), hello("v2", V2), (503, "no healthy upstream")][n % 4])
    out, took = run_loop(srv.url, rate=10, duration=2)
    assert out.finished and out.clock == "date" and out.unparsed == 0
    assert 10 <= out.sent <= 20 and srv.calls == out.sent
    assert [a.seq for a in out.attempts] == list(range(1, out.sent + 1))
    replies = [a.reply for a in out.attempts]
    # The server numbers requests as they arrive: which request got which turn is not fixed, the counts are.
    turns = [n % 4 for n in range(1, out.sent + 1)]
    assert replies.count(Reply(version="v1", instance=V1)) == turns.count(1)
    assert replies.count(Reply(version="v2", instance=V2)) == turns.count(2)
    assert replies.count(Reply(error=NO_UPSTREAM)) == turns.count(3)
    assert replies.count(Reply(error=TIMED_OUT)) == turns.count(0)
    assert all(900 <= (a.took_ms or 0) < 2000 for a in out.attempts if a.reply.error == TIMED_OUT)
    # Hung requests run in the background: they do not slow the loop, and it waits for the last of them.
    assert took < 2 + 1 + 2


def test_requests_that_fail_at_once_stay_within_the_rate_and_the_loop_stops_by_itself() -> None:
    """A closed port fails every request within a millisecond: still at most 10/s, at least 100 ms apart. The
    loop runs with nobody reading its output (a client that died) and ends at its deadline, children and all."""
    url = closed_port_url()
    with tempfile.TemporaryFile("w+") as sink:
        began = time.monotonic()
        proc = subprocess.Popen(load.load_command(url, 10, 2, 1), stdout=sink, start_new_session=True)
        assert proc.wait(timeout=10) == 0
        took = time.monotonic() - began
        with pytest.raises(ProcessLookupError):  # nothing of its process group is left
            os.killpg(proc.pid, 0)
        sink.seek(0)
        out = load.parse_loop(sink.read())
    assert out.finished and 10 <= out.sent <= 20, out.sent
    assert took < 2 + 2
    sent = [a.sent_ms for a in out.attempts]
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 100
    assert sent[-1] - (out.started_ms or 0) < 2000
    [(reason, n)] = out_failures(out).items()
    assert (
        n == out.sent and reason.startswith("curl: (7) Failed to connect to 127.0.0.1 port") and "after N ms" in reason
    )


def out_failures(out: load.LoopOutput) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for a in out.attempts:
        if a.reply.error:
            reasons[a.reply.error] = reasons.get(a.reply.error, 0) + 1
    return reasons


def test_without_nanoseconds_in_date_the_clock_is_uptime_lined_up_with_the_second(tmp_path: Path) -> None:
    """busybox's date built without %N prints it literally: the loop then counts /proc/uptime's centiseconds
    from the edge of a second of ``date +%s``, so its times are still this machine's epoch milliseconds."""
    real = subprocess.run(["sh", "-c", "command -v date"], capture_output=True, text=True).stdout.strip()
    fake = tmp_path / "date"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "+%s%3N" ]; then echo "$({real} +%s)%3N"; else exec {real} "$@"; fi\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    before = time.time() * 1000
    out, _ = run_loop(closed_port_url(), rate=5, duration=1, env=env)
    after = time.time() * 1000
    assert out.clock == "uptime" and out.finished and 2 <= out.sent <= 5
    assert out.started_ms is not None and before - 100 <= out.started_ms <= after
    sent = [a.sent_ms for a in out.attempts]
    assert all(before - 100 <= t <= after for t in sent)
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 200


# ---- reading the output -------------------------------------------------------------------------------


def test_the_output_is_parsed_robustly() -> None:
    t = 1_700_000_000_000
    text = (
        "sh: 1: something the shell said\n"
        f"bench-load clock date\nbench-load start {t} {t + 1000}\n"
        f"bench-load req 2 {t + 100} 0 503 0.002\t\tno healthy upstream\n"
        f"bench-load req 1 {t} 0 200 0.001\t\tHello version: v1, instance: {V1}\n"
        f"bench-load req 4 {t + 300} 7 000 0.000\tFailed to connect to helloworld port 5000 after 3 ms: refused\t\n"
        f"bench-load req 5 {t + 400} 0 200 0.004\t\tupstream connect error\n"
        f"bench-load req 6 {t + 500} 127 \t\n"
        "bench-load req x\n"
        "bench-load done 7\n"
        f"bench-load req 7 {t + 600} 0 200 0.00"
    )
    out = load.parse_loop(text)
    assert (out.clock, out.started_ms, out.sent, out.finished, out.unparsed) == ("date", t, 7, True, 3)
    assert [(a.seq, a.sent_ms - t, a.took_ms) for a in out.attempts] == [
        (1, 0, 1),
        (2, 100, 2),
        (3, 100, None),  # its line never arrived: at the time of the one before
        (4, 300, 0),
        (5, 400, 4),
        (6, 500, None),
        (7, 500, None),  # cut mid-line
    ]
    assert [a.reply for a in out.attempts] == [
        Reply(version="v1", instance=V1),
        Reply(error=NO_UPSTREAM),
        Reply(error=load.NO_OUTCOME),
        Reply(error="curl: (7) Failed to connect to helloworld port 5000 after N ms: refused"),
        Reply(error="unexpected answer: upstream connect error"),
        Reply(error="curl exit 127"),
        Reply(error=load.NO_OUTCOME),
    ]
    cut = load.parse_loop(text.replace("bench-load done 7\n", ""))
    assert (cut.sent, cut.finished) == (6, False)


# ---- counting -----------------------------------------------------------------------------------------

T0 = 1_700_000_000_000


def synthetic(outage: tuple[int, int], marks: list[tuple[str, int]]) -> load.LoadResult:
    """cluster1 sends 10/s for 4 s (ms after T0 = the load's start), answered by v1 (cluster1) and v2
    (cluster2) in turn, failing with 503 while ``outage``; cluster2 did not run."""
    attempts = []
    for n in range(40):
        at = n * 100
        if outage[0] <= at < outage[1]:
            reply = Reply(error=NO_UPSTREAM)
        else:
            reply = Reply(version="v1", instance=V1) if n % 2 == 0 else Reply(version="v2", instance=V2)
        attempts.append(load.Attempt(n + 1, T0 + 20 + at, 10, reply))
    out = load.LoopOutput(clock="date", started_ms=T0 + 20, sent=40, finished=True, attempts=attempts)
    runs = {
        "cluster1": load.SourceRun("cluster1", pod="sleep-1", output=out),
        "cluster2": load.SourceRun("cluster2", error="no running pod labelled app=sleep in namespace sample"),
    }
    owners = {V1: ["cluster1"], V2: ["cluster2"]}
    marks = [(label, T0 + at) for label, at in marks]
    return load.LoadResult("http://helloworld.sample:5000/hello", 10, 4, T0, marks, runs, owners)


def test_the_longest_gap_and_the_failure_window_of_a_run() -> None:
    r = synthetic(outage=(1000, 1500), marks=[])
    s = r.stats("cluster1")
    assert (s.sent, s.answered, s.failed) == (40, 35, 5)
    assert s.answers == {("v1", "cluster1"): 17, ("v2", "cluster2"): 18}
    assert s.failures == {NO_UPSTREAM: 5}
    assert s.longest_gap_ms == 600  # answered at 900 ms, then at 1500 ms
    assert (s.failures_from_ms, s.failures_to_ms) == (1020, 1430)
    assert r.stats("cluster2").error == "no running pod labelled app=sleep in namespace sample"
    clean = synthetic(outage=(0, 0), marks=[]).stats("cluster1")
    assert (clean.failed, clean.longest_gap_ms, clean.failures_from_ms) == (0, 100, None)


def test_marks_split_the_run_into_phases_and_an_outage_across_a_mark_counts_in_both() -> None:
    """A request counts in the phase it was sent in: the one sent at 1520 ms ends at 1530 ms, after the mark."""
    r = synthetic(outage=(1000, 2000), marks=[("up done", 3000), ("up started", 1525)])
    assert [label for label, _ in r.phases()] == ["load started", "up started", "up done"]
    first, during, after = (r.stats("cluster1", p) for p, _ in r.phases())
    # Sent at 20, 120, ... ms: until 1525 ms (16), until 3000 ms (14), after (10).
    assert (first.sent, first.failed, during.sent, during.failed, after.sent, after.failed) == (16, 6, 14, 4, 10, 0)
    assert sum(s.sent for s in (first, during, after)) == r.stats("cluster1").sent
    # Answered at 920 ms, then 2020 ms: 1100 ms in all, 605 of them before the mark at 1525 ms, 495 after.
    assert r.stats("cluster1").longest_gap_ms == 1100
    assert (first.longest_gap_ms, during.longest_gap_ms, after.longest_gap_ms) == (605, 495, 100)
    assert (first.failures_from_ms, first.failures_to_ms) == (1020, 1530)
    assert (during.failures_from_ms, during.failures_to_ms) == (1620, 1930)
    assert after.failures_from_ms is None


def test_the_table_has_one_row_per_change_and_source() -> None:
    r = synthetic(outage=(1000, 1500), marks=[("up done", 2000)])
    assert load.render_table(load.rows("add cluster3", r)).splitlines() == [
        "| change | from | requests | failed | longest gap (s) | failures between (s) |",
        "|---|---|---:|---:|---:|---|",
        "| add cluster3 | cluster1 | 40 | 5 | 0.60 | 1.02 to 1.43 |",
        "| add cluster3 | cluster2 | — | — | — | not run: no running pod labelled app=sleep in namespace sample |",
    ]
    phased = load.render_table(load.rows("add cluster3", r, by_phase=True)).splitlines()
    assert phased[2] == "| add cluster3: load started | cluster1 | 20 | 5 | 0.60 | 1.02 to 1.43 |"
    assert phased[4] == "| add cluster3: up done | cluster1 | 20 | 0 | 0.10 | — |"
    assert len(phased) == 2 + 4
    text = load.details(r)
    assert "- cluster1 (pod sleep-1, clock date): 17x v1 from cluster1, 18x v2 from cluster2" in text
    assert f"  - failed: 5x {NO_UPSTREAM}" in text and "- phases: up done at 2.00 s" in text
    doc = json.loads(json.dumps(load.as_json(r)))
    one = doc["sources"]["cluster1"]
    assert one["total"]["answers"] == [
        {"version": "v1", "cluster": "cluster1", "count": 17},
        {"version": "v2", "cluster": "cluster2", "count": 18},
    ]
    assert [one["phases"][p]["failed"] for p in ("load started", "up done")] == [5, 0]
    assert doc["sources"]["cluster2"]["total"]["error"].startswith("no running pod")


# ---- through the pod exec ------------------------------------------------------------------------------


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


class FakeCore:
    """A CoreV1Api: the sleep pod and the helloworld Service and pods of one cluster."""

    def __init__(self, sleep: list[str], hello: list[str]) -> None:
        self.sleep, self.hello = sleep, hello

    def list_namespaced_pod(self, namespace: str, label_selector: str, **kw: Any) -> Any:
        assert namespace == "sample" and kw["_request_timeout"] > 0
        names, labels = (self.sleep, {"app": "sleep"}) if label_selector == "app=sleep" else (self.hello, {})
        assert label_selector in ("app=sleep", "app=helloworld")
        return SimpleNamespace(data=json.dumps({"items": [pod(n, labels) for n in names]}).encode())

    def read_namespaced_service(self, name: str, namespace: str, **kw: Any) -> Any:
        assert (name, namespace) == ("helloworld", "sample")
        return SimpleNamespace(data=json.dumps({"spec": {"selector": {"app": "helloworld"}}}).encode())

    def connect_get_namespaced_pod_exec(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("only the stream function calls this")


class LocalExec:
    """What ``stream(..., _preload_content=False)`` returns, for a command run here: its output arrives as the
    process writes it; ``read_channel`` hands out what arrived since the last read, as the client does."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.buf = {1: "", 2: ""}
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._pump, args=(ch,), daemon=True) for ch in (1, 2)]
        for t in self.readers:
            t.start()
        self.closed = False

    def _pump(self, channel: int) -> None:
        stream = self.proc.stdout if channel == 1 else self.proc.stderr
        assert stream is not None
        for line in stream:
            with self.lock:
                self.buf[channel] += line

    def run_forever(self, timeout: float | None = None) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return
        for t in self.readers:
            t.join()

    def is_open(self) -> bool:
        return not self.closed and (self.proc.poll() is None or any(t.is_alive() for t in self.readers))

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        if channel == 3:
            return json.dumps({"status": "Success"})
        with self.lock:
            out, self.buf[channel] = self.buf[channel], ""
        return out

    def close(self) -> None:
        self.closed = True


class LocalStream:
    """Stands in for ``kubernetes.stream.stream``: records each call and runs its command here."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> LocalExec:
        self.calls.append((fn, args, kwargs))
        return LocalExec(kwargs["command"])


def test_the_load_runs_in_each_sleep_container_in_one_exec_and_counts_per_phase(serve: Any) -> None:
    """Two clusters send 10/s for 2 s through the fake exec to a local helloworld that answers as v1 or v2 in
    turn, and with 503 for a while; a mark after the first second splits the run."""
    began = time.time() * 1000
    failing = (began + 500, began + 800)
    srv = serve(
        lambda n: (
            (503, "no healthy upstream")
            if failing[0] <= time.time() * 1000 < failing[1]
            else hello(*(("v1", V1) if n % 2 else ("v2", V2)))
        )
    )
    cores = {"cluster1": FakeCore(["sleep-aaa"], [V1]), "cluster2": FakeCore(["sleep-bbb"], [V2])}
    clusters = [load.Cluster(n, c) for n, c in cores.items()]
    stream = LocalStream()
    running = load.start(clusters, rate=10, duration=2, url=srv.url, max_time=1, stream_fn=stream)
    time.sleep(1)
    running.mark("change applied")
    with pytest.raises(ValueError, match="already a phase"):
        running.mark("change applied")
    result = running.result(timeout=20)
    assert sorted((args, kwargs["container"]) for _, args, kwargs in stream.calls) == [
        (("sleep-aaa", "sample"), "sleep"),
        (("sleep-bbb", "sample"), "sleep"),
    ]
    for fn, args, kwargs in stream.calls:
        name = "cluster1" if args[0] == "sleep-aaa" else "cluster2"
        assert fn == cores[name].connect_get_namespaced_pod_exec
        assert kwargs == {
            "command": load.load_command(srv.url, 10, 2, 1, running.stop_files[name]),
            "container": "sleep",
            "stdin": False,
            "stdout": True,
            "stderr": True,
            "tty": False,
            "_preload_content": False,
        }
    assert result.owners == {V1: ["cluster1"], V2: ["cluster2"]}
    [(label, at)] = result.marks
    for name in cores:
        run = result.runs[name]
        total = result.stats(name)
        assert run.error is None and run.note is None and run.output.finished
        assert 10 <= total.sent <= 20 and total.answered + total.failed == total.sent
        assert set(total.answers) <= {("v1", "cluster1"), ("v2", "cluster2")} and total.answered > 0
        assert set(total.failures) <= {NO_UPSTREAM}
        if total.failed:
            assert total.failures_from_ms is not None and total.failures_to_ms is not None
            assert (
                failing[0] - began - 150 <= total.failures_from_ms <= total.failures_to_ms <= failing[1] - began + 150
            )
        first, second = (result.stats(name, p) for p in (load.FIRST_PHASE, label))
        assert first.sent + second.sent == total.sent and first.failed + second.failed == total.failed
        assert all(a.sent_ms >= at for a in run.output.attempts[first.sent :])
        assert all(a.sent_ms < at for a in run.output.attempts[: first.sent])
    assert srv.calls == sum(result.stats(n).sent for n in cores)
    assert sum(result.stats(n).failed for n in cores) >= 1


def test_a_stop_file_ends_the_loop_before_its_deadline_and_is_removed(tmp_path: Path) -> None:
    """The loop runs for 30 s unless told: its stop file appears after about a second, and it sends nothing
    more, waits for the requests in flight, says when it stopped and removes the file."""
    url, stop = closed_port_url(), tmp_path / "stop-me"
    began = time.monotonic()
    proc = subprocess.Popen(
        load.load_command(url, 10, 30, 1, str(stop)), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(1)
    stop.touch()
    out, _ = proc.communicate(timeout=10)
    took = time.monotonic() - began
    parsed = load.parse_loop(out)
    assert proc.returncode == 0 and parsed.finished and parsed.unparsed == 0
    assert took < 1 + 3 and 5 <= parsed.sent <= 20, (took, parsed.sent)
    assert parsed.stopped_ms is not None and parsed.started_ms is not None
    assert all(a.sent_ms <= parsed.stopped_ms for a in parsed.attempts)
    assert not stop.exists()


def test_stop_files_are_checked_paths() -> None:
    for bad in ("relative/stop", "/tmp/it's", "/tmp/a b", "/tmp/$(x)", ""):
        with pytest.raises(ValueError, match="stop_file"):
            load.load_command("http://helloworld.sample:5000/hello", 10, 2, 1, bad)


def test_stop_tells_every_source_in_its_pod_and_returns_what_was_sent(serve: Any) -> None:
    """A 60 s load stopped after a second: one more exec per source (``touch`` of that source's stop file,
    each its own), and the result comes at once with every request counted."""
    srv = serve(lambda n: hello("v1", V1))
    cores = {"cluster1": FakeCore(["sleep-aaa"], [V1]), "cluster2": FakeCore(["sleep-bbb"], [V1])}
    stream = LocalStream()
    began = time.monotonic()
    running = load.start(
        [load.Cluster(n, c) for n, c in cores.items()], rate=10, duration=60, url=srv.url, max_time=1, stream_fn=stream
    )
    time.sleep(1)
    result = running.stop(timeout=20)
    assert time.monotonic() - began < 1 + 5
    touches = sorted(kw["command"] for _, _, kw in stream.calls if kw["command"][0] == "touch")
    assert touches == sorted(["touch", running.stop_files[n]] for n in cores)
    assert len(set(running.stop_files.values())) == 2
    for name in cores:
        run = result.runs[name]
        assert run.error is None and run.output.finished and run.output.stopped_ms is not None
        assert 5 <= result.stats(name).sent <= 20 and result.stats(name).failed == 0
        assert not Path(running.stop_files[name]).exists()


def test_no_sleep_pod_or_a_refused_exec_is_said_per_cluster_and_nothing_runs_there() -> None:
    def refuse(fn: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Handshake status 403 Forbidden")

    clusters = [load.Cluster("cluster1", FakeCore([], [V1])), load.Cluster("cluster2", FakeCore(["sleep-b"], [V2]))]
    result = load.start(clusters, 1, 1, url="http://127.0.0.1:9/hello", stream_fn=refuse).result(timeout=20)
    assert result.runs["cluster1"].error == "no running pod labelled app=sleep in namespace sample"
    assert result.runs["cluster2"].error == (
        "cannot exec in pod sample/sleep-b (container sleep): Handshake status 403 Forbidden"
    )
    assert "not run: no running pod" in load.render_table(load.rows("x", result))


class ScriptedExec:
    """An exec whose output arrives in ``chunks``, one per wait; an exception among them breaks the stream
    there. ``hangs``: it never ends."""

    def __init__(self, chunks: list[str | Exception], hangs: bool = False) -> None:
        self.chunks, self.hangs, self.buf, self.closed = list(chunks), hangs, "", False

    def run_forever(self, timeout: float | None = None) -> None:
        if not self.chunks:
            time.sleep(min(timeout or 0, 0.05))
            return
        chunk = self.chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        self.buf += chunk

    def is_open(self) -> bool:
        return not self.closed and (self.hangs or bool(self.chunks))

    def read_channel(self, channel: int, timeout: float = 0) -> str:
        if channel == 3:
            return json.dumps({"status": "Success"})
        out, self.buf = (self.buf, "") if channel == 1 else ("", self.buf)
        return out

    def close(self) -> None:
        self.closed = True


def loop_lines(t: int, n: int, done: bool) -> str:
    lines = [f"bench-load clock date\nbench-load start {t} {t + 1000}\n"]
    lines += [
        f"bench-load req {i} {t + 100 * i} 0 200 0.001\t\tHello version: v1, instance: {V1}\n" for i in range(1, n + 1)
    ]
    return "".join(lines) + (f"bench-load done {n}\n" if done else "")


def test_what_arrived_before_a_broken_or_hung_exec_still_counts_and_the_result_says_its_end_was_not_seen() -> None:
    t = 1_700_000_000_000
    whole = loop_lines(t, 4, done=True)
    already = ScriptedExec([])  # ended before the first wait, its output buffered
    already.buf = whole
    assert load.drain(already, 5)[0] == whole
    ended = ScriptedExec([whole])
    assert load.drain(ended, 5) == (whole, "", json.dumps({"status": "Success"}), None) and ended.closed
    first, second = whole[:150], whole[150:]
    broken = load.drain(ScriptedExec([first, RuntimeError("connection reset by peer"), second]), 5)
    assert broken[0] == first and broken[3] == "the exec stream broke (connection reset by peer)"
    hung = ScriptedExec([loop_lines(t, 2, done=False)], hangs=True)
    began = time.monotonic()
    assert load.drain(hung, 1)[3] == "the exec did not end within 1s" and hung.closed
    assert time.monotonic() - began < 3

    def stream(fn: Any, *args: Any, **kwargs: Any) -> ScriptedExec:
        return ScriptedExec([loop_lines(t, 3, done=False)[:-10]])

    clusters = [load.Cluster("cluster1", FakeCore(["sleep-a"], [V1]))]
    result = load.start(clusters, 10, 1, url="http://127.0.0.1:9/hello", stream_fn=stream).result(timeout=20)
    run = result.runs["cluster1"]
    assert run.error is None and run.note == "the loop's output ended before its last line"
    assert (run.output.sent, run.output.unparsed, result.stats("cluster1").answered) == (2, 1, 2)
    assert "| load | cluster1 | 2 (end not seen) | 0 |" in load.render_table(load.rows("load", result))


def test_rate_duration_and_url_are_bounded() -> None:
    for rate, duration, max_time in ((0, 10, 2), (51, 10, 2), (10, 601, 2), (10, 0, 2), (10, 10, 11)):
        with pytest.raises(ValueError, match="out of range"):
            load.load_command("http://helloworld.sample:5000/hello", rate, duration, max_time)
    with pytest.raises(ValueError, match="not an http"):
        load.load_command("http://x/'; rm -rf /'", 10, 10)
    with pytest.raises(ValueError, match="senders: cluster9"):
        load.start([load.Cluster("cluster1", FakeCore([], []))], senders=["cluster9"], url="http://x/hello")
    with pytest.raises(SystemExit):
        load.build_parser().parse_args(["--duration", "601"])
    assert load.build_parser().parse_args([]).duration == load.DEFAULT_DURATION == 60
    # 15 requests/s is at most 15 a second: 67 ms apart, not 66.
    assert "due=$((t + 67))" in load.load_command("http://x/hello", 15, 1)[2]
