"""The walkthrough's traffic test (``--traffic``): from the ``sleep`` pod of each cluster, N requests to
helloworld, as Istio's multi-primary, multi-network guide ends::

    kubectl exec -n sample -c sleep <sleep pod> -- curl -sS helloworld.sample:5000/hello

each answered ``Hello version: v1, instance: helloworld-v1-...``. The instance is a pod's name: the cluster
whose namespace holds that pod answered.

One exec per cluster through the API server (``kubernetes.stream``, what ``kubectl exec`` does): a shell
loop of curl calls, each bounded by ``--max-time`` and framed by marker lines, so that every request's curl
exit code, HTTP status and body are told apart; the exec as a whole has a deadline too. Nothing here
concludes anything: ``verify.traffic_checks`` does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .access import bounded
from .facts import DEFAULT_CLIENT, ClusterFacts, Reply, Target, TrafficFacts
from .kube import REQUEST_TIMEOUT, client_for, error_text, is_ready, read, status_of

#: The pods the requests are sent from: label app=sleep, container ``sleep`` (the ``sleep`` Deployment of
#: components/istio_mesh/sample_apps.py).
SLEEP_APP = DEFAULT_CLIENT
SLEEP_CONTAINER = "sleep"
#: helloworld's path that answers with its version and instance (the guide's ``/hello``).
HELLO_PATH = "/hello"
#: Requests per cluster (the guide repeats the curl about 20 times: enough to see every cluster answer).
DEFAULT_REQUESTS = 20
#: Seconds each request may take (curl ``--max-time``).
PER_REQUEST_TIMEOUT = 3
#: Seconds the exec may take beyond ``requests * PER_REQUEST_TIMEOUT`` (starting the shell, the stream).
EXEC_MARGIN = 15.0
#: The marker lines that frame each request's output.
MARK = "verify-traffic"
#: How a test that found no sleep pod to run in begins its error.
NO_SLEEP_POD = "no running pod labelled"
#: The exec's status channel (the Kubernetes remote-command protocol: 1 stdout, 2 stderr, 3 status).
STDOUT, STDERR, STATUS = 1, 2, 3

_HELLO = re.compile(r"Hello version: (?P<version>[^,\s]+), instance: (?P<instance>\S+)")
_CURL_ERROR = re.compile(r"^curl: \(\d+\)")
_HANDSHAKE = re.compile(r"^Handshake status (?P<code>\d+) (?P<text>.*?) -\+-\+- .*? -\+-\+- (?P<body>.*)$", re.S)


class ExecStream(Protocol):
    """What verify uses of ``kubernetes.stream.ws_client.WSClient`` (``stream(..., _preload_content=False)``)."""

    def run_forever(self, timeout: float | None = None) -> None: ...
    def is_open(self) -> bool: ...
    def read_channel(self, channel: int, timeout: float = 0) -> str: ...
    def close(self) -> None: ...


#: ``kubernetes.stream.stream``, or a fake of it in tests.
StreamFn = Callable[..., ExecStream]


def service_url(name: str, namespace: str, port: int) -> str:
    """``http://helloworld.sample:5000/hello``: the name the guide uses (the Service exists in every cluster,
    so it resolves everywhere)."""
    return f"http://{name}.{namespace}:{port}{HELLO_PATH}"


def traffic_command(url: str, requests: int, per_request_timeout: int = PER_REQUEST_TIMEOUT) -> list[str]:
    """The command run in the sleep container: ``requests`` curls, each framed by marker lines
    (``<MARK> request i``, curl's output with its errors, ``<MARK> http CODE``, ``<MARK> exit N``)."""
    script = (
        f'i=0; while [ "$i" -lt {int(requests)} ]; do i=$((i+1)); echo "{MARK} request $i"; '
        f'curl -sS --max-time {int(per_request_timeout)} -w "\\n{MARK} http %{{http_code}}\\n" {url} 2>&1; '
        f'echo "{MARK} exit $?"; done'
    )
    return ["sh", "-c", script]


def parse_replies(stdout: str, requests: int, missing: str) -> list[Reply]:
    """One ``Reply`` per request from the command's output; requests the output does not finish (the exec
    ended or timed out first) get the error ``missing``."""
    replies: list[Reply] = []
    block: list[str] | None = None
    http: str | None = None
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith(f"{MARK} request "):
            if block is not None:  # the previous request's output never ended
                replies.append(Reply(error=missing))
            block, http = [], None
        elif block is None:
            continue  # nothing of a request (the shell's own messages come before the first marker)
        elif line.startswith(f"{MARK} http "):
            http = line.rsplit(" ", 1)[-1]
        elif line.startswith(f"{MARK} exit "):
            code = line.rsplit(" ", 1)[-1]
            replies.append(reply_of(block, http, int(code) if code.isdigit() else -1))
            block = None
        elif line:
            block.append(line)
    if block is not None:
        replies.append(Reply(error=missing))
    replies += [Reply(error=missing)] * max(0, requests - len(replies))
    return replies


def reply_of(lines: list[str], http: str | None, exit_code: int) -> Reply:
    """One request from curl's output lines (its ``curl: (N) ...`` error among them), the HTTP status (``000``
    when there was no response) and curl's exit code: who answered, or why it failed."""
    body = [line for line in lines if not _CURL_ERROR.match(line)]
    text = " ".join(body)[:200]
    if exit_code != 0:
        curl = next((line for line in lines if _CURL_ERROR.match(line)), None)
        # Timings vary from request to request; without them equal failures count together.
        return Reply(error=re.sub(r"\d+ milliseconds", "N milliseconds", curl) if curl else f"curl exit {exit_code}")
    if http not in (None, "200"):
        return Reply(error=f"HTTP {http}: {text or 'empty body'}")
    m = _HELLO.search(text)
    if not m:
        return Reply(error=f"unexpected answer: {text or 'empty body'}")
    return Reply(version=m["version"], instance=m["instance"])


def exec_error_text(e: BaseException) -> str:
    """Why an exec was refused, in one line. The client reports a refused websocket handshake as
    ``ApiException(status=0, reason="Handshake status 403 Forbidden -+-+- {headers} -+-+- {body}")``: the
    status and the server's message are taken out of it."""
    reason = getattr(e, "reason", None)
    if status_of(e) or not isinstance(reason, str) or not reason:
        return error_text(e)
    m = _HANDSHAKE.match(reason.strip())
    if not m:
        return reason.strip().splitlines()[0][:300]
    try:
        message = json.loads(m["body"]).get("message")
    except (ValueError, AttributeError):
        message = None
    return f"HTTP {m['code']}: {message or m['text'] or m['body'][:200]}"


def find_sleep_pod(core: Any, namespace: str) -> str | None:
    """A running ``app=sleep`` pod in ``namespace`` (a ready one first, then by name), None if none runs."""
    pods = read(core.list_namespaced_pod, namespace, label_selector=f"app={SLEEP_APP}")
    running = [
        p
        for p in (pods or {}).get("items") or []
        if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    running.sort(key=lambda p: (not is_ready(p), str(p["metadata"]["name"])))
    return str(running[0]["metadata"]["name"]) if running else None


def locate_sleep_pod(core: Any, namespace: str) -> tuple[str | None, str | None]:
    """(``find_sleep_pod``, None), or (None, why there is no pod to send from)."""
    try:
        pod = find_sleep_pod(core, namespace)
    except Exception as e:  # API and connection errors alike: the finding quotes them
        return None, f"cannot list the pods labelled app={SLEEP_APP} in namespace {namespace}: {error_text(e)}"
    if pod is None:
        return None, f"{NO_SLEEP_POD} app={SLEEP_APP} in namespace {namespace}"
    return pod, None


def exec_place(namespace: str, pod: str) -> str:
    """Where the command runs, as errors name it."""
    return f"exec in pod {namespace}/{pod} (container {SLEEP_CONTAINER})"


def own_client(core: Any) -> Any:
    """A ``CoreV1Api`` on an ApiClient of its own, same configuration. ``kubernetes.stream.stream`` opens
    the websocket by swapping ``api_client.request`` for as long as the call lasts: any other request made
    meanwhile on the same ApiClient, from another thread (the load listing pods while it opens execs),
    goes out as a websocket and fails with status 0. (Fakes without a real ApiClient are kept as they are.)"""
    from kubernetes import client

    api_client = getattr(core, "api_client", None)
    if not isinstance(api_client, client.ApiClient):
        return core
    return client.CoreV1Api(client.ApiClient(api_client.configuration))


def open_exec(core: Any, namespace: str, pod: str, command: list[str], stream_fn: StreamFn | None = None) -> ExecStream:
    """Starts ``command`` in the ``sleep`` container of ``pod`` through the API server's pod exec (``stream_fn``:
    ``kubernetes.stream.stream`` by default) and returns the open stream. The client opens the websocket
    without a timeout: bounded here by REQUEST_TIMEOUT (as the port-forwards are); raises what the exec raised."""
    if stream_fn is None:
        from kubernetes.stream import stream

        stream_fn = stream
    exec_fn: StreamFn = stream_fn
    core = own_client(core)
    return bounded(
        lambda: exec_fn(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=command,
            container=SLEEP_CONTAINER,
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        ),
        REQUEST_TIMEOUT,
        exec_place(namespace, pod),
    )


def run_traffic(
    cluster: str,
    core: Any,
    namespace: str,
    url: str,
    requests: int = DEFAULT_REQUESTS,
    per_request_timeout: int = PER_REQUEST_TIMEOUT,
    stream_fn: StreamFn | None = None,
) -> TrafficFacts:
    """The traffic test from one cluster: finds its sleep pod in ``namespace`` (``core``: a ``CoreV1Api``
    for the cluster) and sends ``requests`` requests to ``url`` from its ``sleep`` container in one exec.
    Problems are recorded in the result (``error``, each reply's ``error``), never raised."""
    t = TrafficFacts(cluster=cluster, namespace=namespace, url=url, requests=requests)
    t.pod, t.error = locate_sleep_pod(core, namespace)
    if t.pod is None:
        return t
    where = exec_place(namespace, t.pod)
    try:
        ws = open_exec(core, namespace, t.pod, traffic_command(url, requests, per_request_timeout), stream_fn)
    except Exception as e:  # refused (403, no such container), unreachable: the finding quotes it
        t.error = f"cannot {where}: {exec_error_text(e)}"
        return t
    limit = requests * per_request_timeout + EXEC_MARGIN
    stdout = stderr = status = ""
    missing = "no answer: the command ended before this request"
    try:
        ws.run_forever(timeout=limit)
        if ws.is_open():
            missing = f"no answer: the exec did not end within {limit:.0f}s"
        stdout, stderr = ws.read_channel(STDOUT, timeout=0), ws.read_channel(STDERR, timeout=0)
        if not ws.is_open():
            status = ws.read_channel(STATUS, timeout=0)
    except Exception as e:  # the stream broke half-way: what arrived still counts
        missing = f"no answer: the exec stream broke ({exec_error_text(e)})"
    finally:
        ws.close()
    if f"{MARK} request " not in stdout:
        t.error = f"the requests did not run ({where}): {status_message(status) or stderr.strip() or missing}"
        return t
    t.replies = parse_replies(stdout, requests, missing)
    return t


def status_message(status: str) -> str | None:
    """The message of the exec's final status (``{"status": "Failure", "message": ...}``), None on success."""
    try:
        doc = json.loads(status) if status.strip() else {}
    except ValueError:
        return status.strip()[:300]
    if not isinstance(doc, dict) or doc.get("status") in (None, "Success"):
        return None
    return str(doc.get("message") or doc.get("reason") or doc)


def traffic_from(target: Target, namespace: str, url: str, requests: int = DEFAULT_REQUESTS) -> TrafficFacts:
    """``run_traffic`` for a mesh cluster, through its admin kubeconfig."""
    from kubernetes import client

    try:
        core = client.CoreV1Api(client_for(target.kubeconfig, target.context))
    except Exception as e:  # a malformed kubeconfig: the api finding names it too
        return TrafficFacts(target.name, namespace, url, requests, error=f"its kubeconfig is unusable: {e}")
    return run_traffic(target.name, core, namespace, url, requests)


# ---- who answered ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """The replies of one source cluster, counted: per (version, answering cluster) and per failure reason.
    The answering cluster is None when the instance is no pod of the service in any cluster (or in several)."""

    answered: int = 0
    failed: int = 0
    answers: dict[tuple[str, str | None], int] = field(default_factory=dict)
    instances: dict[tuple[str, str | None], set[str]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def reached(self) -> set[str]:
        """The clusters that answered at least once."""
        return {cluster for _, cluster in self.answers if cluster}


def instance_clusters(clusters: Sequence[ClusterFacts]) -> dict[str, list[str]]:
    """Every running pod of the service (``ClusterFacts.service_pods``), by name: the clusters holding it."""
    out: dict[str, list[str]] = {}
    for c in clusters:
        for p in c.service_pods:
            out.setdefault(str(p["name"]), []).append(c.name)
    return out


def tally(t: TrafficFacts, owners: Mapping[str, list[str]]) -> Tally:
    """Counts ``t``'s replies; ``owners`` from ``instance_clusters``."""
    out = Tally()
    for r in t.replies:
        if r.error or not r.version or not r.instance:
            out.failed += 1
            reason = r.error or "unexpected answer"
            out.failures[reason] = out.failures.get(reason, 0) + 1
            continue
        out.answered += 1
        holders = owners.get(r.instance, [])
        key = (r.version, holders[0] if len(holders) == 1 else None)
        out.answers[key] = out.answers.get(key, 0) + 1
        out.instances.setdefault(key, set()).add(r.instance)
    return out
