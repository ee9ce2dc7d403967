"""The lab's one bounded wait: poll a check until it holds, or fail after a timeout saying what was awaited.

Every polling loop of the lab goes through ``wait_until`` (``wait_for_each`` is the same wait over
several items): start-up phases (``lab/cluster.py``), istiod's lock and readiness (``lab/istiod.py``,
``lab/follower.py``), the egress proxy's retry of a refusing destination (``lab/egress.py``), a
process's exit after SIGTERM (``lab/procs.py``) and ``lab verify``. A check's exceptions are not
swallowed here: one that means "not yet" is caught by the check itself, anything else ends the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from .errors import LabError

T = TypeVar("T")


class WaitTimeoutError(LabError):
    """``wait_until`` ran out of time and the caller named no error of its own."""


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    interval: float,
    on_timeout: Callable[[], BaseException] | None = None,
    *,
    sleep: Callable[[float], object] = time.sleep,
) -> T:
    """Call ``check`` until it returns something true, and return that.

    ``check`` runs at once, then every ``interval`` seconds; once ``timeout`` seconds have passed and
    it still does not hold, the error ``on_timeout()`` returns is raised (default: ``WaitTimeoutError``,
    a LabError naming ``what`` and the timeout). An exception ``check`` raises propagates at once.
    ``sleep`` replaces ``time.sleep``, e.g. ``threading.Event.wait`` to wake up early (the check then
    decides whether that ends the wait).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            if on_timeout is not None:
                raise on_timeout()
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        sleep(interval)


def wait_for_each(
    what: str,
    items: Iterable[T],
    ready: Callable[[T], bool],
    timeout: float,
    interval: float,
    on_timeout: Callable[[list[T]], BaseException] | None = None,
) -> None:
    """``wait_until`` every item is ``ready`` (each is checked, in order, until it once was).

    ``on_timeout(pending)`` makes the error from the items still not ready (default:
    ``WaitTimeoutError`` naming them).
    """
    pending = list(items)

    def all_ready() -> bool:
        for item in list(pending):
            if ready(item):
                pending.remove(item)
        return not pending

    def timed_out() -> BaseException:
        if on_timeout is not None:
            return on_timeout(pending)
        names = ", ".join(map(str, pending))
        return WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what}: not yet {names}")

    wait_until(what, all_ready, timeout, interval, timed_out)
