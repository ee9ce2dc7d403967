"""The lab starts every time, and `lab down` leaves nothing of its data plane behind.

KWOK 0.8 once died at start-up with a Go map race (`fatal error: concurrent map read and map write`, in
its stage initialisation: about one start in fifteen); `lab up` starts a component that dies during
start-up again, a bounded number of times, naming it (unit-tested in tests/test_lab_cluster.py). Here the
whole lab, data plane included, is started and stopped several times in a row.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Lab, run

#: From nothing, then on existing data (the mesh, day-2 and packages modules each start it from nothing too).
STARTS = 2


@pytest.fixture(scope="module")
def lab(tc_env: dict[str, str]) -> Any:
    lab = Lab(env=tc_env, clusters=2)
    lab.down(purge=True)
    yield lab
    lab.down()


def test_the_lab_starts_repeatedly_and_down_leaves_no_namespace_or_process(lab: Lab) -> None:
    from lab import netns

    for i in range(STARTS):
        t0 = time.monotonic()
        lab.up()
        print(f"lab up #{i + 1}: {time.monotonic() - t0:.1f}s", file=sys.stderr)
        status = run([str(lab_python()), "-m", "lab", "status"], lab.env).stdout
        assert status.count("dataplane=up") == 2, status
        assert set(netns.lab_namespaces()) == {"imlab-net1", "imlab-net2", "imlab-wan"}
        lab.down(purge=i == 0)  # the first start is from nothing, the others on existing data
        assert netns.lab_namespaces() == []
        leftovers = [p for p in os.listdir("/proc") if p.isdigit() and _is_lab_agent(p)]
        assert leftovers == []


def lab_python() -> str:
    from harness import ROOT

    return str(ROOT / ".venv" / "bin" / "python")


def _is_lab_agent(pid: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return any(m in cmd for m in ("lab.dataplane", "lab.relay", "lab.follower", "lab.egress", "pilot-agent"))
