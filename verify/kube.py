"""The Kubernetes API as verify uses it: a client from a kubeconfig, reads as plain data with a timeout,
and API errors as one line of text (findings quote them)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from typing import Any

#: Seconds allowed for any one request to an API server.
REQUEST_TIMEOUT = 10.0


def client_for(kubeconfig: Mapping[str, Any], context: str | None = None, retries: int = 1) -> Any:
    """An ``ApiClient`` for the kubeconfig's context (``retries``: urllib3 retries per request)."""
    from kubernetes import config

    api = config.new_client_from_config_dict(dict(kubeconfig), context=context)
    api.configuration.retries = retries
    return api


def read(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Calls a kubernetes-client method and returns the JSON body as plain data (dicts and lists)."""
    resp = fn(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kw)
    return json.loads(resp.data or b"null")


def error_text(e: BaseException) -> str:
    """An API or connection error in one line: ``HTTP 403: <the server's message>`` or the socket error."""
    status = getattr(e, "status", None)
    if status:
        reason = getattr(e, "reason", "")
        with contextlib.suppress(ValueError):
            reason = json.loads(getattr(e, "body", "") or "{}").get("message", reason)
        return f"HTTP {status}: {reason}"
    # urllib3 wraps the socket error twice (MaxRetryError -> NewConnectionError): report the innermost.
    while isinstance(getattr(e, "reason", None), BaseException):
        e = e.reason  # type: ignore[attr-defined]
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "): " in text and text.startswith(("HTTPConnection(", "HTTPSConnection(", "<urllib3")):
        text = text.split("): ", 1)[1]
    return text[:300]


def status_of(e: BaseException) -> int | None:
    """The HTTP status of an ``ApiException`` (None for connection errors and everything else)."""
    status = getattr(e, "status", None)
    return status if isinstance(status, int) else None


def is_ready(pod: Mapping[str, Any]) -> bool:
    """A pod (as plain data) that serves: Running, condition Ready true, not being deleted."""
    status = pod.get("status") or {}
    return (
        status.get("phase") == "Running"
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    )
