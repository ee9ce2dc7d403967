"""The lab's one bounded wait (lab/wait.py) and how its callers keep their own errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import procs, selfcheck
from lab.errors import LabError
from lab.kubeapi import ApiError
from lab.wait import WaitTimeoutError, wait_for_each, wait_until


class Calls:
    """A check that holds from its ``holds_at``-th call on (returning ``value``), recording each call."""

    def __init__(self, holds_at: int, value: object = True) -> None:
        self.holds_at = holds_at
        self.value = value
        self.count = 0

    def __call__(self) -> object:
        self.count += 1
        return self.value if self.count >= self.holds_at else None


def test_it_returns_what_the_check_returned_as_soon_as_it_holds() -> None:
    slept: list[float] = []
    check = Calls(holds_at=3, value={"token": "x"})
    assert wait_until("a token", check, timeout=60, interval=0.25, sleep=slept.append) == {"token": "x"}
    assert check.count == 3 and slept == [0.25, 0.25]  # one sleep between checks, none after


def test_a_check_that_holds_at_once_does_not_sleep() -> None:
    slept: list[float] = []
    assert wait_until("x", lambda: True, 0, 1.0, sleep=slept.append) is True
    assert slept == []


def test_the_timeout_names_what_was_awaited_and_for_how_long() -> None:
    check = Calls(holds_at=10**9)
    t0 = time.monotonic()
    with pytest.raises(WaitTimeoutError, match=r"^timed out after 0\.3s waiting for the egress proxies to listen$"):
        wait_until("the egress proxies to listen", check, 0.3, 0.05)
    assert 0.3 <= time.monotonic() - t0 < 2
    assert check.count >= 2  # at once, then every interval until the deadline
    assert issubclass(WaitTimeoutError, LabError)  # `python -m lab` reports it like any lab failure


def test_the_check_runs_once_even_with_no_time_at_all() -> None:
    check = Calls(holds_at=1)
    assert wait_until("x", check, 0, 1.0) is True and check.count == 1
    check = Calls(holds_at=2)
    with pytest.raises(WaitTimeoutError):
        wait_until("x", check, 0, 1.0)
    assert check.count == 1


def test_the_callers_error_replaces_the_default() -> None:
    class MineError(Exception):
        pass

    with pytest.raises(MineError, match="istiod not ready"):
        wait_until("x", lambda: False, 0.05, 0.01, lambda: MineError("istiod not ready"))


def test_an_exception_from_the_check_ends_the_wait_at_once() -> None:
    """Not swallowed, not retried: e.g. a process that exited during start-up is reported then."""
    calls = 0

    def check() -> bool:
        nonlocal calls
        calls += 1
        raise LabError("etcd (pid 1) exited during start-up")

    with pytest.raises(LabError, match="exited during start-up"):
        wait_until("etcd health", check, 60, 0.01)
    assert calls == 1


def test_an_event_wait_as_sleep_wakes_the_check_early() -> None:
    stopping = threading.Event()
    threading.Timer(0.1, stopping.set).start()
    t0 = time.monotonic()
    assert wait_until("istiod /ready", stopping.is_set, 60, 30.0, sleep=stopping.wait) is True
    assert time.monotonic() - t0 < 5


def test_each_item_is_checked_until_it_once_was_ready() -> None:
    seen: list[str] = []
    ready_from = {"cluster1": 1, "cluster2": 3}

    def ready(name: str) -> bool:
        seen.append(name)
        return seen.count(name) >= ready_from[name]

    wait_for_each("API servers", ["cluster1", "cluster2"], ready, 60, 0.01)
    assert seen == ["cluster1", "cluster2", "cluster2", "cluster2"]


def test_the_items_not_ready_are_named_on_timeout() -> None:
    with pytest.raises(WaitTimeoutError, match=r"waiting for nodes Ready: not yet b, c$"):
        wait_for_each("nodes Ready", ["a", "b", "c"], lambda x: x == "a", 0.05, 0.01)
    with pytest.raises(LabError, match=r"^\['b', 'c'\]$"):
        wait_for_each("x", ["a", "b", "c"], lambda x: x == "a", 0.05, 0.01, lambda pending: LabError(str(pending)))


def test_lab_verify_treats_api_errors_as_not_yet_and_names_the_last_one() -> None:
    answers: list[object] = [OSError("connection refused"), ApiError(404, "not found"), None, {"ok": 1}]

    def fn() -> object:
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    assert selfcheck._poll("a thing", fn, timeout=10) == {"ok": 1}

    def failing() -> object:
        raise ApiError(503, "unavailable")

    with pytest.raises(LabError, match=r"^timed out after 0s: a thing \(last error: HTTP 503: unavailable\)$"):
        selfcheck._poll("a thing", failing, timeout=0.3)
    with pytest.raises(ValueError):  # anything else is not an API server that is not there yet
        selfcheck._poll("a thing", lambda: int("x"), timeout=10)


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, "--marker"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        pidfile = tmp_path / "p.pid"
        pidfile.write_text(f"{proc.pid}\n")
        t0 = time.monotonic()
        assert procs.stop(pidfile, None, grace=0.5, argv=["--marker"]) is True
        # It outlived the grace (SIGTERM ignored) and is gone well before its 60 s sleep: SIGKILL.
        assert 0.5 <= time.monotonic() - t0 < 10
        with pytest.raises(ProcessLookupError):
            os.kill(proc.pid, 0)  # (procs.stop reaped it: it was our child)
    finally:
        proc.kill()
        proc.wait()
