"""Background processes with pid files and logs under ``.lab/<cluster>/``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .wait import WaitTimeoutError, wait_until


def _read_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# How long an empty command line of a live process is taken for an exec still in progress.
EXEC_SETTLE = 2.0


def _cmdline(pid: int) -> list[str]:
    """The process's arguments; [] once it is gone.

    A process in the middle of execve reads an empty ``/proc/<pid>/cmdline`` for a moment (the kernel
    has swapped in the new memory map but not yet put the arguments on it), even after ``Popen``
    returned: the parent learns of the exec when close-on-exec descriptors close, which comes first.
    CI once saw istiod "exit during start-up" 0.3 s after its start, with nothing in its log, from
    this. A live process with an empty command line is read again until it has one.
    """
    deadline = time.monotonic() + EXEC_SETTLE
    while True:
        raw = _read_cmdline(pid)
        if raw or not Path(f"/proc/{pid}").exists() or _is_zombie(pid) or time.monotonic() >= deadline:
            return [a.decode(errors="replace") for a in raw.split(b"\0") if a]
        time.sleep(0.01)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def running_pid(pidfile: Path, binary: Path | str | None, argv: Sequence[str] = ()) -> int | None:
    """The pid recorded in ``pidfile`` if that process is alive and still runs ``binary``.

    ``argv``: arguments its command line must also contain (each one as a whole argument). Needed for
    the lab's Python processes: their binary is ``python``, which says nothing about what they run
    (``binary=None``: any interpreter, identified by ``argv`` alone).
    """
    if binary is None and not argv:
        raise ValueError("running_pid: name the binary or the arguments that identify the process")
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    args = _cmdline(pid)
    if not args or _is_zombie(pid):
        return None
    # A recycled pid running something else is not ours.
    if binary is not None and os.path.basename(args[0]) != os.path.basename(str(binary)):
        return None
    if any(a not in args[1:] for a in argv):
        return None
    return pid


def start(binary: Path, args: list[str], pidfile: Path, log: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start ``binary args...`` detached (own session), stdout+stderr appended to ``log``.

    ``env``: the whole environment of the process (default: this process's).
    """
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {binary} {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def exited(pid: int) -> bool:
    """True once ``pid`` is gone (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        # Our child: waitpid is the truth. (/proc/<pid>/cmdline can read empty while the child is
        # still in execve on a loaded machine, which once made a starting etcd look dead.)
        return done == pid
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return _is_zombie(pid)


def stop(pidfile: Path, binary: Path | str | None, grace: float = 15.0, argv: Sequence[str] = ()) -> bool:
    """SIGTERM the recorded process, SIGKILL it after ``grace`` seconds. True if one was running.

    ``argv``: as for ``running_pid`` (a recorded pid that runs something else is not stopped).
    """
    pid = running_pid(pidfile, binary, argv)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_until(f"pid {pid} to exit after SIGTERM", lambda: exited(pid), grace, 0.1)
    except WaitTimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not exited(pid):  # SIGKILL cannot be caught or ignored: no deadline here (as before)
            time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return True


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines the latest run wrote (the log is appended to across restarts)."""
    try:
        data = path.read_bytes()[-40000:].decode(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    starts = [i for i, line in enumerate(data) if line.startswith("===== ")]
    if starts:
        data = data[starts[-1] + 1 :]
    return "\n".join("    " + line[:400] for line in data[-lines:])
