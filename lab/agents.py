"""The lab's own processes per cluster, beside the control plane: the egress proxy, the istiod follower and
the data plane.

* ``egress`` (``python -m lab.egress``, ``lab/egress.py``): the HTTP CONNECT proxy on
  ``.lab/<cluster>/egress.sock`` that kube-apiserver's egress selector sends every "cluster" dial to
  (Service webhooks, kubelet traffic). Started before kube-apiserver: the API server starts without it,
  but each such dial fails while it is down. Targets in the cluster's Service and pod CIDRs without a
  route are refused at once (502): dialled as asked, they would leave through the host's default route
  (on this machine a network interceptor answers them, so a webhook would hang until its timeout).
* ``follower`` (``python -m lab.follower``, ``lab/follower.py``): starts/restarts/stops the local istiod
  as the Deployment comes, rolls and goes, and keeps the egress route to istiod's webhooks.
* ``dataplane`` (``python -m lab.dataplane``, ``lab/dataplane.py``): runs the Istio-injected pods for
  real (network namespaces, pilot-agent and Envoy, the sample apps) and the cluster's load balancer.

Both are Python, so ``python`` on their command line identifies nothing: they are recognised by the
module and the cluster-specific argument on their command line (``/proc/<pid>/cmdline``).
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from pathlib import Path

import yaml

from . import egress, procs
from .follower import routes_file
from .layout import REPO, Cluster

AGENTS = ("egress", "follower", "dataplane")
#: Seconds the egress proxy retries a routed destination that refuses (see ``argv``).
EGRESS_REFUSED_WAIT = 6.0


def egress_socket(c: Cluster) -> Path:
    return c.dir / "egress.sock"


def egress_selector_file(c: Cluster) -> Path:
    """kube-apiserver's ``--egress-selector-config-file``."""
    return c.dir / "egress-selector.yaml"


def write_egress_selector(c: Cluster) -> None:
    path = egress_selector_file(c)
    text = yaml.safe_dump(egress.egress_selector_config(egress_socket(c)), sort_keys=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def identifying_argv(c: Cluster, agent: str) -> list[str]:
    """The arguments that tell this cluster's agent apart from any other process."""
    if agent == "egress":
        return ["lab.egress", f"--socket={egress_socket(c)}"]
    if agent == "follower":
        return ["lab.follower", f"--cluster={c.index}"]
    if agent == "dataplane":
        return ["lab.dataplane", f"--cluster={c.index}"]
    raise ValueError(agent)


def argv(c: Cluster, agent: str, binary: Path | None = None) -> list[str]:
    """The agent's arguments; ``binary``: pilot-discovery for the follower, pilot-agent for the data plane."""
    if agent == "egress":
        return [
            "-m",
            *identifying_argv(c, agent),
            f"--routes-file={routes_file(c)}",
            f"--virtual-network={c.service_cidr}",
            f"--virtual-network={c.pod_cidr}",
            # When the follower restarts istiod on a rollout, its webhooks are down for a second or two,
            # where a cluster's rolling update keeps the old pod serving: a webhook call then waits for
            # the new istiod instead of failing (failurePolicy Fail would reject the request). Within
            # the API server's 10 s webhook timeout; a stopped istiod costs a call this long.
            f"--refused-wait={EGRESS_REFUSED_WAIT:g}",
        ]
    if agent == "follower":
        assert binary is not None
        return ["-m", *identifying_argv(c, agent), f"--pilot-discovery={binary}"]
    if agent == "dataplane":
        assert binary is not None
        return ["-m", *identifying_argv(c, agent), f"--pilot-agent={binary}"]
    raise ValueError(agent)


def running(c: Cluster, agent: str) -> int | None:
    return procs.running_pid(c.pidfile(agent), None, identifying_argv(c, agent))


def start(c: Cluster, agent: str, binary: Path | None = None) -> tuple[int, bool]:
    """(pid, whether it was started now): an agent already running is kept."""
    pid = running(c, agent)
    if pid is not None:
        return pid, False
    if agent == "egress":
        if len(os.fsencode(egress_socket(c).absolute())) > 107:
            raise ValueError(
                f"{egress_socket(c)} is longer than 107 bytes (the AF_UNIX limit): set LAB_DIR to a shorter path"
            )
        _remove_stale_socket(egress_socket(c))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    pid = procs.start(Path(sys.executable), argv(c, agent, binary), c.pidfile(agent), c.log(agent), c.dir, env)
    return pid, True


def _remove_stale_socket(path: Path) -> None:
    """A socket file left by a proxy that died (nobody running the egress agent of this cluster)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            path.unlink()
    except FileNotFoundError:
        pass


def egress_listening(c: Cluster) -> bool:
    """The proxy accepts connections on its socket (a connect only: it logs one unanswered CONNECT)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(egress_socket(c)))
        return True
    except OSError:
        return False
    finally:
        s.close()


def stop(c: Cluster, agent: str) -> bool:
    return procs.stop(c.pidfile(agent), None, argv=identifying_argv(c, agent))
