"""The lab's control-plane command lines and its own processes (egress proxy, follower), without starting them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import __main__ as cli
from lab import agents, cluster, layout, procs
from lab.binaries import Toolchain, locate_toolchain
from lab.control_plane import component
from lab.errors import LabError
from lab.layout import Cluster

TC = Toolchain(Path("/toolchain"))


def test_the_api_server_sends_cluster_traffic_through_the_egress_proxy_with_webhooks_on() -> None:
    c = Cluster(1)
    args = component("kube-apiserver").command_line(TC, c, True)
    assert f"--egress-selector-config-file={c.dir / 'egress-selector.yaml'}" in args
    assert not [a for a in args if a.startswith("--disable-admission-plugins")]
    off = component("kube-apiserver").command_line(TC, c, False)
    assert "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook" in off
    assert f"--egress-selector-config-file={c.dir / 'egress-selector.yaml'}" in off  # kubelet traffic too


def test_the_egress_selector_names_the_clusters_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    c = Cluster(2)
    c.dir.mkdir()
    agents.write_egress_selector(c)
    doc = yaml.safe_load(agents.egress_selector_file(c).read_text())
    assert doc["kind"] == "EgressSelectorConfiguration"
    [selection] = doc["egressSelections"]
    assert selection["name"] == "cluster"  # controlplane and etcd keep the direct dialer
    assert selection["connection"] == {
        "proxyProtocol": "HTTPConnect",
        "transport": {"uds": {"udsName": str(tmp_path / "cluster2" / "egress.sock")}},
    }


def test_the_egress_proxy_refuses_the_clusters_virtual_ranges_and_follows_the_routes_file() -> None:
    c = Cluster(3)
    args = agents.argv(c, "egress")
    assert args[:2] == ["-m", "lab.egress"]
    assert f"--socket={c.dir / 'egress.sock'}" in args
    assert f"--routes-file={c.dir / 'egress-routes.json'}" in args
    assert {a for a in args if a.startswith("--virtual-network=")} == {
        "--virtual-network=198.19.3.0/24",  # Service CIDR
        "--virtual-network=198.18.12.0/22",  # pod CIDR
    }
    assert "--refused-wait=6" in args  # istiod restarting: a webhook call waits, within the API server's 10 s
    follower = agents.argv(c, "follower", Path("/tc/bin/pilot-discovery"))
    assert follower == ["-m", "lab.follower", "--cluster=3", "--pilot-discovery=/tc/bin/pilot-discovery"]


def test_webhooks_are_on_unless_no_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(cluster, "up", lambda n, webhooks, timeout, nodes, data_plane: seen.append(webhooks))
    for argv, want in ((["up"], True), (["up", "--webhooks"], True), (["up", "--no-webhooks"], False)):
        assert cli.main(argv) == 0
        assert seen.pop() is want


def test_a_python_process_is_recognised_by_its_arguments(tmp_path: Path) -> None:
    """A recycled pid, or another lab's agent, runs `python` too: the arguments tell them apart."""
    pidfile = tmp_path / "agent.pid"
    marker = f"--cluster-marker={tmp_path}"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        pidfile.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + 10
        while procs.running_pid(pidfile, None, [marker]) is None and time.monotonic() < deadline:
            time.sleep(0.05)  # until execve is done
        assert procs.running_pid(pidfile, None, [marker]) == proc.pid
        assert procs.running_pid(pidfile, None, [marker + "x"]) is None
        assert procs.running_pid(pidfile, "kube-apiserver", [marker]) is None
        assert procs.stop(pidfile, None, argv=[marker + "x"]) is False  # not ours: left running
        assert proc.poll() is None and not pidfile.exists()  # (the stale pid file is dropped)
        pidfile.write_text(f"{proc.pid}\n")
        assert procs.stop(pidfile, None, argv=[marker]) is True
        assert proc.wait(5) is not None
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(ValueError):
        procs.running_pid(pidfile, None)


def test_a_process_still_in_execve_is_running_not_exited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A live process reads an empty /proc/<pid>/cmdline while execve sets up its new image (CI saw a
    just-started istiod taken for one that had exited). Only a process that is gone is not running."""
    pidfile = tmp_path / "sleep.pid"
    proc = subprocess.Popen(["sleep", "30"])
    real = procs._read_cmdline
    empty_reads = iter(range(5))  # the first five reads: execve not done yet

    def in_exec(pid: int) -> bytes:
        return b"" if next(empty_reads, None) is not None else real(pid)

    monkeypatch.setattr(procs, "_read_cmdline", in_exec)
    try:
        pidfile.write_text(f"{proc.pid}\n")
        assert procs.running_pid(pidfile, "sleep") == proc.pid
    finally:
        proc.kill()
        proc.wait()
    t0 = time.monotonic()
    assert procs.running_pid(pidfile, "sleep") is None  # gone (reaped): no waiting for its arguments
    assert time.monotonic() - t0 < procs.EXEC_SETTLE


def test_a_toolchain_without_a_component_binary_says_what_to_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ISTIO_MESH_TOOLCHAIN", str(tmp_path))
    (tmp_path / "bin").mkdir()
    for name in ("etcd", "kube-scheduler"):
        (tmp_path / "bin" / name).write_text("")
        (tmp_path / "bin" / name).chmod(0o755)
    with pytest.raises(LabError, match=r"lacks kube-apiserver, kube-controller-manager, kwok, .*default-stages\.yaml"):
        locate_toolchain(required=True)
    assert locate_toolchain(required=False) == Toolchain(tmp_path)  # down/status make do with what is there


def test_a_component_that_dies_while_starting_is_started_again_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """KWOK 0.8 once died at start-up with a Go map race (about 1 start in 15): `up` starts such a
    component again, says so, and gives up after START_ATTEMPTS with its log."""
    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    c = layout.Cluster(1)
    starts: list[int] = []
    pids = iter(range(1000, 1100))

    def fake_start(tc: object, cl: layout.Cluster, comp: object, webhooks: bool) -> tuple[int, bool]:
        starts.append(1)
        return next(pids), True

    def run(dies: int) -> None:
        starts.clear()
        monkeypatch.setattr(cluster, "_start_component", fake_start)
        monkeypatch.setattr(procs, "exited", lambda pid: len(starts) <= dies)
        monkeypatch.setattr(cluster, "healthy", lambda probe: len(starts) > dies)
        monkeypatch.setattr(
            cluster, "component", lambda name: type("C", (), {"name": name, "probe": lambda self, c: None})()
        )
        cluster._bring_up(None, [c], ("kwok",), True, 5.0)  # type: ignore[arg-type]

    run(dies=1)
    assert len(starts) == 2
    assert "kwok (pid 1000) exited during start-up; starting it again (attempt 2 of 3)" in capsys.readouterr().out
    with pytest.raises(LabError, match=r"kwok .* exited during start-up"):
        run(dies=cluster.START_ATTEMPTS)
    assert len(starts) == cluster.START_ATTEMPTS


def test_a_lab_made_with_the_earlier_address_ranges_is_refused_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    c = layout.Cluster(1)
    (c.dir / "etcd").mkdir(parents=True)
    with pytest.raises(LabError, match=r"other address ranges .*down --purge"):
        cluster._check_layout(c)  # an etcd from before the 198.18.0.0/15 ranges (no layout.json)
    cluster._write_layout(c)
    cluster._check_layout(c)  # the same ranges: fine
    (c.dir / cluster.LAYOUT_FILE).write_text('{"serviceCIDR": "10.101.0.0/16"}')
    with pytest.raises(LabError, match=re.escape("10.101.0.0/16 for Services; now 198.19.1.0/24")):
        cluster._check_layout(c)


def test_the_data_plane_names_every_missing_requirement_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab import netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "iptables" else f"/usr/bin/{tool}")
    monkeypatch.setattr(cluster.shutil, "which", lambda tool: None)
    with pytest.raises(LabError) as e:
        cluster.dataplane_requirements(Toolchain(tmp_path))
    text = str(e.value)
    assert "root (network namespaces" in text
    assert "`iptables` (Debian package iptables: apt-get install -y iptables" in text
    assert "pilot-agent and" in text and "toolchain/build pilot-agent" in text
    assert "`socat`" in text and "--no-data-plane" in text
