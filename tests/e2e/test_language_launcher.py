"""The toolchain's Python language launcher (``toolchain/go/pulumi/language-python``), no lab.

The CLI ends a language host by interrupting its process group and kills it 5 s later; before every
preview and update it starts one host for the runtime metadata and ends it that way. A command started
by a shell in the background (a CI runner, ``nohup``) inherits SIGINT as ignored, and so did the host
behind the launcher: every preview and update then started 5 s late (measured: a one-resource program's
preview 5.6 s in the background, 0.65 s in the foreground; with the fix 0.65 s both ways). The launcher
now catches SIGINT before it execs the host, which gives the host the default.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

SIGINT_BIT = 1 << (signal.SIGINT - 1)


def _ignored_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"/proc/{pid}/status has no SigIgn line")


def test_the_python_host_ends_on_sigint_even_when_started_with_it_ignored(
    tc_env: dict[str, str], tmp_path: Path
) -> None:
    launcher = Path(tc_env["ISTIO_MESH_TOOLCHAIN"]) / "bin" / "pulumi-language-python"
    (tmp_path / "Pulumi.yaml").write_text("name: probe\nruntime: python\n")
    # As a background shell starts it: SIGINT ignored, in a process group of its own (as the CLI starts
    # plugins). The engine address is never dialled before the host is asked for something.
    proc = subprocess.Popen(
        [str(launcher), "127.0.0.1:1"],
        cwd=tmp_path,
        env=tc_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()  # the host prints its port once it serves
        assert port.isdigit(), (
            f"the host printed {port!r}, not its port; stderr: {proc.stderr.read() if proc.stderr else ''}"
        )
        # The launcher exec'd the host (same pid): it must not have inherited SIGINT as ignored.
        assert not _ignored_signals(proc.pid) & SIGINT_BIT, "the language host ignores SIGINT"
        # And the CLI's SIGINT to the group ends it (bounded wait: a host that ignored it would run on).
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
