"""Checks on the traffic test (pure): the requests from each cluster's ``sleep`` ran, were all answered, and
reached every cluster on another network that runs the service.

A cluster that is never reached is explained by the findings the other checks already made (they carry
the cluster and, for a pair, the peer they are ``about``): the target's east-west gateway (no Service, no
address, no ready pod, no AUTO_PASSTHROUGH listener), the network labels, the source's remote secret for
the target and what its istiod synced, knows and sends the sidecar, the roots and CAs. When none of them
shows, the finding lists what was ruled out and what could not be.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from istio_mesh.constants import EASTWEST_SELECTOR, ISTIO_NAMESPACE, NETWORK_LABEL

from .facts import ClusterFacts, Finding, IstiodFacts, TrafficFacts, network_of
from .traffic import NO_SLEEP_POD, SLEEP_APP, Tally, instance_clusters, tally

#: A cluster that never answered counts as unreached only when a healthy mesh, spreading the requests over
#: the service's pods (istiod weighs another network's gateway by its endpoints), would almost surely have
#: sent it one: the chance of missing it by luck is below this.
MISS_CHANCE = 1e-3


@dataclass(frozen=True)
class Explanation:
    """One known cause of "X never reaches Y": the findings that show it, or why it could not be looked at."""

    #: What holds when this cause is ruled out ("cluster2's east-west gateway has an address (10.0.0.5)").
    healthy: str
    shows: Callable[[Finding], bool]
    #: Why the facts it needs are missing (a read that failed, an istiod not reached); None if they were read.
    unknown: str | None = None


def check_traffic(
    traffic: Sequence[TrafficFacts],
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    findings: Sequence[Finding],
    required: bool = True,
) -> list[Finding]:
    """The traffic test's findings for every source cluster; ``findings``: what ``diagnose`` found.
    ``required=False``: a cluster without a sleep pod is not a finding (the test was not asked for)."""
    by_name = {c.name: c for c in clusters}
    owners = instance_clusters(clusters)
    out: list[Finding] = []
    for t in traffic:
        source = by_name.get(t.cluster)
        if source is not None and source.api_error:
            continue  # the cluster cannot be read: its api finding says so
        if t.error:
            if required or not t.error.startswith(NO_SLEEP_POD):
                out += check_traffic_ran(t)
            continue
        counted = tally(t, owners)
        out += check_traffic_failures(t, counted)
        if source is not None:
            out += check_traffic_reach(t, counted, source, clusters, istiods, findings)
    return out


def check_traffic_ran(t: TrafficFacts) -> list[Finding]:
    """The test could run: a running sleep pod, an exec the API server allows."""
    if not t.error:
        return []
    if t.error.startswith(NO_SLEEP_POD):
        fix = (
            f"deploy the samples (stack config samples.enabled, then pulumi up), or see why the sleep Deployment "
            f"has no running pod (kubectl -n {t.namespace} get pods -l app={SLEEP_APP}); --no-traffic skips the test"
        )
    elif "HTTP 403" in t.error:
        verb = "list on pods" if t.pod is None else "create on pods/exec"
        fix = f"give the kubeconfig's user {verb} in {t.namespace}, or run verify with --no-traffic"
    else:
        fix = (
            "check that kubectl exec works in this cluster (the API server must reach the pod's kubelet), or run "
            "verify with --no-traffic"
        )
    return [Finding(t.cluster, "traffic", f"the traffic test cannot run from {t.cluster}: {t.error}", fix)]


def check_traffic_failures(t: TrafficFacts, counted: Tally) -> list[Finding]:
    """Every request was answered by the service."""
    if not counted.failed:
        return []
    reasons = "; ".join(f"{n}x {reason}" for reason, n in sorted(counted.failures.items(), key=lambda kv: -kv[1]))
    return [
        Finding(
            t.cluster,
            "traffic-failed",
            f"{counted.failed} of {len(t.replies)} request(s) from {t.namespace}/{t.pod} in {t.cluster} to {t.url} "
            f"failed: {reasons}",
            "see the other findings for the cause (traffic-reach names the clusters never reached); 'no healthy "
            "upstream' or a reset means the sidecar had no usable endpoint, a timeout that a hop dropped the request",
        )
    ]


def check_traffic_reach(
    t: TrafficFacts,
    counted: Tally,
    source: ClusterFacts,
    clusters: Sequence[ClusterFacts],
    istiods: Sequence[IstiodFacts],
    findings: Sequence[Finding],
) -> list[Finding]:
    """Every cluster on another network that runs the service answered at least once, unless that could
    be luck (``MISS_CHANCE``); a cluster never reached is named with the findings that explain it."""
    running = {c.name: len(c.service_pods) for c in clusters if c.service_pods}
    total = sum(running.values())
    here = network_of(source) or source.name
    istiod_of = {i.cluster: i for i in istiods}
    if any(cluster is None for _, cluster in counted.answers):
        # A pod that answered is in no cluster's list (it started after the clusters were read): it may be
        # the "missing" cluster's. The report shows it; nothing is concluded.
        return []
    out: list[Finding] = []
    for target in clusters:
        if target.name not in running or target.name in counted.reached or (network_of(target) or target.name) == here:
            continue
        if (1 - running[target.name] / total) ** len(t.replies) > MISS_CHANCE:
            continue  # too few requests to tell a missing cluster from luck
        where = (
            f"none of the {len(t.replies)} request(s) from {t.namespace}/{t.pod} in {source.name} "
            f"({counted.answered} answered) reached {target.name} (network {network_of(target) or '?'}), "
            f"which runs {running[target.name]} pod(s) of the service"
        )
        explanations = pair_explanations(source, target, istiod_of.get(source.name), istiod_of.get(target.name))
        shown = [f for f in findings if any(e.shows(f) for e in explanations)]
        if shown:
            causes = "; ".join(f"[{f.cluster}] {f.check}: {f.cause}" for f in shown)
            fixes = list(dict.fromkeys(f.fix for f in shown))
            out.append(
                Finding(
                    source.name,
                    "traffic-reach",
                    f"{where}. Likely cause: {causes}",
                    " / ".join(fixes),
                    about=(target.name,),
                )
            )
            continue
        ruled_out = [e.healthy for e in explanations if e.unknown is None]
        unknown = [f"{e.healthy} ({e.unknown})" for e in explanations if e.unknown is not None]
        out.append(
            Finding(
                source.name,
                "traffic-reach",
                f"{where}, and no known cause shows. Ruled out: {'; '.join(ruled_out) or 'nothing'}"
                + (f". Not ruled out: {'; '.join(unknown)}" if unknown else ""),
                f"look at the sidecar of {t.pod} (istioctl proxy-config endpoints {t.pod}.{t.namespace}) and at the "
                f"logs of {target.name}'s east-west gateway (kubectl -n {ISTIO_NAMESPACE} logs -l "
                f"{','.join(f'{k}={v}' for k, v in EASTWEST_SELECTOR.items())})",
                about=(target.name,),
            )
        )
    return out


def pair_explanations(
    x: ClusterFacts, y: ClusterFacts, ix: IstiodFacts | None, iy: IstiodFacts | None
) -> list[Explanation]:
    """The known causes of requests from ``x`` never reaching ``y`` on another network, each with the
    findings (of ``verify.checks``, ``verify.istiod_checks``, ``verify.proxy_checks``) that show it."""

    def read_error(c: ClusterFacts, *topics: str) -> str | None:
        if c.api_error:
            return f"{c.name} cannot be read: {c.api_error}"
        return next((f"{c.name}: cannot read {c.read_errors[t]}" for t in topics if t in c.read_errors), None)

    def about_y(f: Finding) -> bool:
        return f.cluster == x.name and y.name in f.about

    def own(f: Finding, cluster: ClusterFacts, *checks: str) -> bool:
        return f.cluster == cluster.name and not f.about and f.check in checks

    def no_proxy_view(i: IstiodFacts | None, name: str) -> str | None:
        if i is None or i.error:
            return f"istiod of {name} was not reached" + (f": {i.error}" if i and i.error else "")
        if i.proxy is None:
            return "the proxy view was not asked for (--no-proxy-view)"
        return f"no proxy view of {name}: {i.proxy.error}" if i.proxy.error else None

    istiod_down = no_proxy_view(ix, x.name) if ix is None or ix.error else None
    addresses = ", ".join(y.gateway_addresses) or "none"
    return [
        Explanation(
            f"{y.name}'s east-west gateway exists and has an address ({addresses})",
            lambda f: own(f, y, "gateway", "install"),
            read_error(y, "gateway"),
        ),
        Explanation(
            f"{y.name}'s east-west gateway has a ready pod",
            lambda f: own(f, y, "gateway-pod"),
            read_error(y, "gateway-pods") or (None if y.gateway_pods is not None else "its pods were not read"),
        ),
        Explanation(
            f"the {NETWORK_LABEL} label on {ISTIO_NAMESPACE} is as configured in {x.name} ({network_of(x)}) and "
            f"{y.name} ({network_of(y)})",
            lambda f: own(f, x, "network-label") or own(f, y, "network-label"),
            read_error(x) or read_error(y),
        ),
        Explanation(
            f"{y.name}'s pods of the service carry its network",
            lambda f: own(f, y, "pod-network"),
            read_error(y, "service"),
        ),
        Explanation(
            f"{x.name} has a remote secret for {y.name} whose credentials work there",
            lambda f: about_y(f) and f.check in ("remote-secret", "remote-access"),
            read_error(x, "remote-secrets"),
        ),
        Explanation(
            f"istiod of {x.name} has synced {y.name} and knows its network's gateway and its endpoints",
            lambda f: about_y(f) and f.check in ("sync", "gateway", "endpoints"),
            istiod_down,
        ),
        Explanation(
            f"a sidecar in {x.name} is sent {y.name}'s network through its gateway, and that gateway passes the "
            "service on (proxy view)",
            lambda f: (about_y(f) and f.check == "proxy-endpoints") or own(f, y, "proxy-listener"),
            no_proxy_view(ix, x.name) or no_proxy_view(iy, y.name),
        ),
        Explanation(
            f"{x.name} and {y.name} share the mesh root and their istiods sign with their intermediates",
            lambda f: f.check in ("root", "ca") and f.cluster in (x.name, y.name, "mesh"),
            read_error(x, "cacerts") or read_error(y, "cacerts"),
        ),
    ]
