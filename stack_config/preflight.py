"""Before anything is registered: can every cluster's API server be reached, within a bound?

A mesh spans clusters, and one unreachable API server must not turn an ``up`` into a half-applied
change (the other clusters updated, that one not) or a wait of minutes. The program asks each
cluster's API server for ``/version`` first, with a timeout; any that does not answer stops the run,
naming it, before any resource is registered. A cluster marked ``unreachable: true`` must NOT answer:
that setting drops the cluster's objects from the state without touching them, so using it on a live
cluster would be a mistake worth stopping.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Any

from .settings import ClusterSettings

#: Seconds each API server gets to answer ``GET /version``.
PREFLIGHT_TIMEOUT_SECONDS = 10.0


def api_server_error(cluster: ClusterSettings, timeout: float = PREFLIGHT_TIMEOUT_SECONDS) -> str | None:
    """None when the cluster's API server (from its kubeconfig) answers ``/version`` within ``timeout``
    seconds; otherwise what went wrong."""
    from kubernetes import client

    from istio_mesh.kube_client import api_client

    try:
        api: Any = api_client(cluster.kubeconfig, cluster.context)
        try:
            client.VersionApi(api).get_code(_request_timeout=timeout)
        finally:
            api.close()
    except Exception as exc:  # unreachable, timeout, TLS, unauthorised: each is an answer to report
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}{': ' + text[:300] if text else ''}"
    return None


def preflight_problems(
    clusters: Sequence[ClusterSettings],
    probe: Callable[[ClusterSettings, float], str | None] | None = None,
    timeout: float = PREFLIGHT_TIMEOUT_SECONDS,
) -> list[str]:
    """Every cluster's reachability checked at once (in parallel, so N clusters cost one timeout at most);
    one problem per cluster that is not as its settings say. ``probe`` defaults to ``api_server_error``."""
    ask = probe or api_server_error
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(clusters))) as pool:
        errors = list(pool.map(lambda c: ask(c, timeout), clusters))
    problems = []
    for i, (c, error) in enumerate(zip(clusters, errors, strict=True)):
        where = f"clusters[{i}] ({c.name}, {c.kubeconfig_server})"
        if c.unreachable and error is None:
            problems.append(
                f"{where}: unreachable is true, but its API server answers. `unreachable: true` forgets the "
                "cluster's objects without deleting them; to remove Istio from a live cluster, delete its entry "
                "instead (its objects are then deleted), or set unreachable to false."
            )
        elif not c.unreachable and error is not None:
            problems.append(
                f"{where}: the API server did not answer GET /version within {timeout:.0f}s ({error}). Nothing "
                "was changed in any cluster. When it is back, run again; if the cluster is gone for good, set "
                f"clusters[{i}].unreachable: true to remove it from the mesh."
            )
    return problems
