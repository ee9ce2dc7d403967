"""The CPU-by-process helper of ``bench/scaling``: what it counts between two snapshots."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import procsnap

HZ = procsnap.HZ


def test_a_process_seen_twice_counts_only_its_growth_even_renamed() -> None:
    before = {"10": ("kube-apiserver", 5 * HZ), "11": ("kworker/0:1-events", 1 * HZ)}
    after = {"10": ("kube-apiserver", 7 * HZ), "11": ("kworker/0:1-mm_percpu", 1 * HZ)}
    spent = procsnap.diff(before, after)
    assert spent["kube-apiserver"] == pytest.approx(2.0)
    assert spent["kworker/0:1-mm_percpu"] == pytest.approx(0.0)


def test_a_new_process_and_a_reused_pid_count_from_zero() -> None:
    before = {"20": ("pilot-discovery", 9 * HZ)}
    after = {"20": ("etcd", 3 * HZ), "21": ("pilot-discovery", 4 * HZ)}
    spent = procsnap.diff(before, after)
    assert spent == {"etcd": pytest.approx(3.0), "pilot-discovery": pytest.approx(4.0)}


def test_a_snapshot_sees_this_process_spend_cpu() -> None:
    me = str(os.getpid())
    before = procsnap.snapshot()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    after = procsnap.snapshot()
    assert before[me][0] == after[me][0]
    assert (after[me][1] - before[me][1]) / HZ >= 0.2
