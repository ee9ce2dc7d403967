"""Before anything is registered, every cluster's API server must answer within a bound (and a cluster
marked unreachable must not): checked against real sockets and through the program."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pulumi
import pytest
from support.mocks import RecordingMocks, RecordingMonitor
from support.program import run_main, write_kubeconfig

from stack_config import parse_settings
from stack_config.preflight import api_server_error, preflight_problems


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (a frozen API server)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for s in held:
        s.close()
    srv.close()


def _cluster(tmp_path: Any, server: str, **extra: Any) -> Any:
    path = write_kubeconfig(str(tmp_path), "cluster1", server)
    first: dict[str, Any] = {"name": "cluster1", "network": "n1", "kubeconfig": path, **extra}
    second = {**first, "name": "cluster2", "apiServer": "https://10.9.9.9:6443"}
    raw: dict[str, Any] = {"meshId": "m", "clusters": [first, second]}
    return parse_settings(raw).clusters[0]


def test_a_frozen_api_server_is_reported_within_the_timeout(tmp_path: Any, silent_server: int) -> None:
    cluster = _cluster(tmp_path, f"https://127.0.0.1:{silent_server}")
    t0 = time.monotonic()
    error = api_server_error(cluster, timeout=1.0)
    took = time.monotonic() - t0
    assert error is not None and "timed out" in error.lower(), error
    assert took < 30, f"the probe hung for {took:.0f}s"  # a hang guard, not a performance assertion


def test_a_closed_port_is_reported(tmp_path: Any) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    error = api_server_error(_cluster(tmp_path, f"https://127.0.0.1:{port}"), timeout=2.0)
    assert error is not None and ("refused" in error.lower() or "max retries" in error.lower()), error


def test_problems_name_the_cluster_and_the_way_out(tmp_path: Any) -> None:
    live = _cluster(tmp_path, "https://10.0.1.1:6443")
    gone = dataclasses.replace(live, name="cluster2", unreachable=True)
    down = dataclasses.replace(live, name="cluster3")

    def probe(c: Any, timeout: float) -> str | None:
        return None if c.name in ("cluster1", "cluster2") else "ConnectTimeoutError: timed out"

    problems = preflight_problems([live, gone, down], probe=probe, timeout=7)
    assert len(problems) == 2
    assert problems[0].startswith("clusters[1] (cluster2, https://10.0.1.1:6443): unreachable is true, but its API")
    assert "delete its entry instead" in problems[0]
    assert problems[1].startswith("clusters[2] (cluster3, https://10.0.1.1:6443): the API server did not answer")
    assert "within 7s (ConnectTimeoutError: timed out)" in problems[1]
    assert "set clusters[2].unreachable: true" in problems[1]
    assert preflight_problems([live], probe=probe) == []


def test_the_program_registers_nothing_when_a_cluster_does_not_answer(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stack_config.preflight

    monkeypatch.setattr(
        stack_config.preflight,
        "api_server_error",
        lambda c, timeout: "ReadTimeoutError: read timed out" if c.name == "cluster2" else None,
    )
    clusters = [
        {
            "name": f"cluster{i}",
            "network": f"network{i}",
            "kubeconfig": write_kubeconfig(str(tmp_path), f"cluster{i}", f"https://10.0.{i}.1:6443"),
        }
        for i in (1, 2)
    ]
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="istio-mesh", stack="test", preview=False, monitor=monitor)
    with pytest.raises(Exception) as err:
        pulumi.runtime.test(run_main({"meshId": "mesh1", "clusters": clusters}, str(tmp_path)))()
    assert "cannot reach every cluster (nothing was changed)" in str(err.value)
    assert "clusters[1] (cluster2, https://10.0.2.1:6443): the API server did not answer" in str(err.value)
    assert monitor.registrations == []
