"""End-to-end harness: the real Pulumi engine (built by toolchain/build) against the local lab.

Nothing here is mocked. A missing toolchain or a lab that does not start FAILS the tier with the
reason (it is never skipped). Live objects are read through the Kubernetes API with the official
Python client, never from Pulumi's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = Path(os.environ.get("LAB_DIR", ROOT / ".lab"))
PASSPHRASE = "cluster-lab"  # the lab's state is local and disposable; this is not a secret
REQUIRED_BINARIES = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-language-python-exec",
    "pulumi-resource-kubernetes",
    "pulumi-resource-tls",
    "pulumi-resource-random",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kwok",
)


def toolchain_env() -> dict[str, str]:
    """The environment ``toolchain/build --env`` describes; fails the tier if anything is missing."""
    out = subprocess.run([str(ROOT / "toolchain" / "build"), "--env"], capture_output=True, text=True, check=True)
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        if not line.startswith("export "):
            continue
        key, _, value = line[len("export ") :].partition("=")
        value = value.strip('"').replace("$PATH", env.get("PATH", ""))
        env[key] = value
    # The program runs in the project's virtualenv (Pulumi.yaml names it; put first so the language
    # host's exec script finds the pinned SDKs whatever python is on PATH).
    env["VIRTUAL_ENV"] = str(ROOT / ".venv")
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env['PATH']}"
    bin_dir = Path(env["ISTIO_MESH_TOOLCHAIN"]) / "bin"
    # With a working `pulumi` already installed (online machines) the toolchain builds only the rest.
    required = [b for b in REQUIRED_BINARIES if not (env.get("ISTIO_MESH_SYSTEM_PULUMI") and b.startswith("pulumi"))]
    missing = [b for b in required if not (bin_dir / b).exists()]
    if missing:
        pytest.fail(
            f"the toolchain is not built ({', '.join(missing)} missing in {bin_dir}): run `toolchain/build` "
            "(the e2e tier needs the real Pulumi engine and Kubernetes binaries)",
            pytrace=False,
        )
    return env


def run(
    cmd: list[str],
    env: dict[str, str],
    cwd: Path = ROOT,
    timeout: float = 900,
    check: bool = True,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command, echoing it and (on failure) its output."""
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=input_text)
    took = time.monotonic() - t0
    print(f"$ {' '.join(cmd)}  [{took:.1f}s, exit {proc.returncode}]", file=sys.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


@dataclass
class Lab:
    """The lab's clusters, started fresh for a test module."""

    env: dict[str, str]
    clusters: int

    def kubeconfig(self, cluster: str) -> Path:
        return LAB_DIR / cluster / "kubeconfig"

    def up(self) -> None:
        run(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "lab", "up", "--clusters", str(self.clusters)],
            self.env,
            timeout=600,
        )

    def down(self, purge: bool = False) -> None:
        run(
            [str(ROOT / ".venv" / "bin" / "python"), "-m", "lab", "down", *(["--purge"] if purge else [])],
            self.env,
            timeout=300,
        )

    def istiod(self, action: str, only: str | None = None) -> subprocess.CompletedProcess[str]:
        """``python -m lab istiod start|restart|stop``: the real istiod of every cluster (or of ``only``)."""
        return run(
            [
                str(ROOT / ".venv" / "bin" / "python"),
                "-m",
                "lab",
                "istiod",
                action,
                *(["--only", only] if only else []),
            ],
            self.env,
            timeout=400,
        )


class Stack:
    """A Pulumi stack of this project on a local file backend, driven through the CLI.

    With ``checkpoints=False`` (what the suite uses, except where a run is killed) the engine writes the
    state once per command instead of after every step (``PULUMI_SKIP_CHECKPOINTS``): the file backend
    rewrites the whole state (~4.4 MB) twice per step, about half of an ``up`` from empty and two thirds
    of a ``destroy`` on this machine (``bench/checkpoints``). Failed and Ctrl-C'd runs still save what they
    did; only a run killed outright loses it, which is what ``checkpoints=True`` is for.
    """

    def __init__(
        self, name: str, env: dict[str, str], backend: Path, project: Path = ROOT, *, checkpoints: bool = False
    ) -> None:
        self.name = name
        #: The project directory the CLI runs in (its Pulumi.yaml, program and stack config files).
        self.project = project
        backend.mkdir(parents=True, exist_ok=True)
        self.env = {
            **env,
            "PULUMI_BACKEND_URL": f"file://{backend}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
        }
        if checkpoints:
            self.env.pop("PULUMI_SKIP_CHECKPOINTS", None)
        else:
            self.env["PULUMI_SKIP_CHECKPOINTS"] = "true"
        self.backend = backend

    def with_checkpoints(self) -> Stack:
        """The same stack, driven as users drive it: the state saved after every step (crash tests)."""
        return Stack(self.name, self.env, self.backend, self.project, checkpoints=True)

    def cli(self, *args: str, check: bool = True, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
        return run(
            ["pulumi", *args, "--stack", self.name, "--non-interactive"],
            self.env,
            cwd=self.project,
            check=check,
            timeout=timeout,
        )

    def start_up(self, *args: str) -> subprocess.Popen[str]:
        """``pulumi up`` in a session of its own, so its plugins and language host (each in a process group of
        its own) can be found and killed with it (``kill_session``, ``reap_session``)."""
        return subprocess.Popen(
            ["pulumi", "up", "--yes", "--skip-preview", *args, "--stack", self.name, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def init(self) -> None:
        listed = run(["pulumi", "stack", "ls", "--json"], self.env, cwd=self.project, check=False)
        if listed.returncode == 0 and any(s.get("name") == self.name for s in json.loads(listed.stdout or "[]")):
            return
        run(
            ["pulumi", "stack", "init", self.name, "--secrets-provider", "passphrase", "--non-interactive"],
            self.env,
            cwd=self.project,
        )

    def up(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("up", "--yes", "--skip-preview", *extra)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.cli("stack", "output", "--json").stdout)

    def export(self) -> dict[str, Any]:
        return json.loads(self.cli("stack", "export").stdout)

    def state_files(self) -> list[Path]:
        return [p for p in self.backend.rglob("*") if p.is_file()]

    def remove(self) -> None:
        run(
            ["pulumi", "stack", "rm", self.name, "--yes", "--force", "--preserve-config", "--non-interactive"],
            self.env,
            cwd=self.project,
            check=False,
        )

    def preview_steps(self, *extra: str) -> list[dict[str, Any]]:
        """The steps of ``pulumi preview --json``: one per resource, with its ``op`` and ``urn``."""
        doc = json.loads(self.cli("preview", "--json", *extra).stdout)
        steps: list[dict[str, Any]] = doc.get("steps") or []
        return steps


def started_lab(env: dict[str, str], clusters: int, *, purge_after: bool = True) -> Iterator[Lab]:
    """A module's lab (``yield from`` it in a module-scoped fixture): started from nothing (what an earlier
    module left is purged first); afterwards its istiods are stopped and it is purged (``purge_after``), or
    left for the module's last test to take down."""
    lab = Lab(env=env, clusters=clusters)
    lab.down(purge=True)
    lab.up()
    yield lab
    if purge_after:
        lab.istiod("stop")
        lab.down(purge=True)
    else:
        lab.down()


def api_client(cluster: str) -> Any:
    """An ApiClient for the lab cluster ``cluster`` (its admin kubeconfig)."""
    return k8s_api(LAB_DIR / cluster / "kubeconfig")


def core(cluster: str) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client(cluster))


def apps(cluster: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client(cluster))


def run_verify(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """``scripts/verify ARGS --json``: its report; fails unless verify ran (exit 0 or 1) and its exit says
    what the report says (0 exactly when ok)."""
    proc = run([str(ROOT / "scripts" / "verify"), *args, "--json"], env, check=False, timeout=300)
    assert proc.returncode in (0, 1), f"verify failed to run (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(proc.stdout)
    assert doc["ok"] == (proc.returncode == 0), (proc.returncode, doc["findings"])
    return doc


def k8s_api(kubeconfig: Path | dict[str, Any]) -> Any:
    """An ApiClient of the official Kubernetes Python client, from a kubeconfig file or document."""
    from kubernetes import config

    doc = yaml.safe_load(kubeconfig.read_text()) if isinstance(kubeconfig, Path) else kubeconfig
    return config.new_client_from_config_dict(doc)


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``: the engine started with ``start_new_session`` and
    everything it started, although each plugin runs in a process group of its own."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp session ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return members


def reap_session(sid: int) -> None:
    """Leaves nothing of a stopped ``pulumi up`` running: its plugins and language host get 10 s to exit
    after the engine, then whatever is left of its session is killed; fails if anything survives that."""
    try:
        wait_for(f"session {sid} to exit", lambda: not session_members(sid), timeout=10, interval=0.5)
    except AssertionError:
        left = session_members(sid)
        print(f"session {sid} outlived its engine ({left}): killing it", file=sys.stderr)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_for(f"session {sid} to be gone", lambda: not session_members(sid), timeout=30, interval=0.5)


def kill_session(sid: int) -> None:
    """The machine died: the engine started by ``start_up``, its language host and every plugin at once."""
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(what: str, check: Any, timeout: float = 60, interval: float = 1.0) -> Any:
    """Polls ``check`` until it returns something truthy; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
