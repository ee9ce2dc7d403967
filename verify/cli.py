"""``scripts/verify`` (``python -m verify``): which clusters to check, where their istiods are, and the
exit code (0 all good, 1 findings, 2 bad input: nothing was checked).

Where each cluster's istiod is reached: by port-forward through its API server (the default, what
``kubectl port-forward`` does), or directly at addresses given with ``--istiod`` or ``--istiod-addresses``
(a JSON file; the local lab writes one, and ``scripts/verify --lab`` passes it).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .access import DirectAccess, IstiodAccess, PortForwardAccess, hostport
from .certs import pem_fingerprint
from .checks import diagnose
from .collect import collect_cluster, collect_istiod
from .edit_checks import check_edits
from .facts import DEFAULT_CLIENT, DEFAULT_SERVICE, IstiodFacts, ProxyFacts, Target, TrafficFacts
from .kube import error_text
from .proxy import collect_proxy
from .report import render_text, report_json
from .roots import check_roots, collect_roots, roots_json
from .traffic import DEFAULT_REQUESTS, service_url, traffic_from
from .traffic_checks import check_traffic
from .xds import envoy_protos

#: Seconds allowed for each `pulumi` command verify runs (stack config and outputs).
PULUMI_TIMEOUT = 180.0
#: Clusters read at the same time (each read has its own timeouts; the order of the report is the targets').
MAX_PARALLEL_CLUSTERS = 8
#: The most requests ``--requests`` allows per cluster (each may take PER_REQUEST_TIMEOUT seconds).
MAX_REQUESTS = 500


class VerifyUsageError(Exception):
    """Bad command-line input or mesh description (exit 2, nothing was checked)."""


def targets_from_config(raw: Mapping[str, Any], base_dir: str) -> tuple[str | None, list[Target]]:
    """The mesh's clusters from the stack's ``istio-mesh`` settings (only meshId, clusters and lab are read;
    entries marked ``unreachable`` have left the mesh and are not checked)."""
    import yaml

    from stack_config.settings import ConfigError, parse_settings

    subset = {k: raw[k] for k in ("meshId", "clusters", "lab") if k in raw}
    try:
        s = parse_settings(subset, base_dir)
    except ConfigError as e:
        raise VerifyUsageError(str(e)) from None
    return s.mesh_id, [Target(c.name, c.network, yaml.safe_load(c.kubeconfig), c.context) for c in s.members]


def _pulumi_json(args: list[str], cwd: str) -> Any:
    command = f"pulumi {' '.join(args)}"
    try:
        proc = subprocess.run(
            ["pulumi", *args, "--json"], cwd=cwd, capture_output=True, text=True, timeout=PULUMI_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise VerifyUsageError(f"`{command}` did not finish within {PULUMI_TIMEOUT:.0f}s") from None
    except OSError as e:
        raise VerifyUsageError(f"`{command}` cannot run: {e}") from None
    if proc.returncode != 0:
        raise VerifyUsageError(f"`{command}` failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout or "null")


def stack_inputs(stack: str | None, cwd: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the stack's istio-mesh settings, its outputs) through the Pulumi CLI."""
    sel = ["--stack", stack] if stack else []
    config = _pulumi_json(["config", *sel], cwd)  # secrets stay hidden: none is needed here
    outputs = _pulumi_json(["stack", "output", *sel], cwd)
    raw: dict[str, Any] = {}
    for key, entry in (config or {}).items():
        if key.startswith("istio-mesh:"):
            value = entry.get("objectValue", entry.get("value")) if isinstance(entry, dict) else entry
            raw[key.split(":", 1)[1]] = value
    return raw, outputs or {}


def istiod_addresses(path: str) -> dict[str, tuple[str, str, str | None]]:
    """``--istiod-addresses FILE``: a JSON list of ``{"name": CLUSTER, "istiod": {"http": HOST:PORT,
    "tls": HOST:PORT, "xds": HOST:PORT}}`` (istiod's 8080, 15012 and, optional, 15010; other keys are
    ignored) -> {cluster: (http, tls, xds or None)}."""
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as e:
        raise VerifyUsageError(f"--istiod-addresses {path}: {e}") from None
    out: dict[str, tuple[str, str, str | None]] = {}
    for n, entry in enumerate(doc if isinstance(doc, list) else []):
        where = f"--istiod-addresses {path}: entry {n}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise VerifyUsageError(f"{where} has no cluster name (expected {{'name': CLUSTER, 'istiod': {{...}}}})")
        ist = entry.get("istiod")
        if not isinstance(ist, dict) or not all(isinstance(ist.get(k), str) for k in ("http", "tls")):
            raise VerifyUsageError(
                f"{where} ({entry['name']}): 'istiod' must hold 'http' and 'tls' as HOST:PORT, got {ist!r}"
            )
        xds = ist.get("xds")
        try:
            hostport(ist["http"]), hostport(ist["tls"])
            if xds is not None:
                hostport(str(xds))
        except ValueError as e:
            raise VerifyUsageError(f"{where} ({entry['name']}): {e}") from None
        out[entry["name"]] = (ist["http"], ist["tls"], None if xds is None else str(xds))
    if not isinstance(doc, list) or not out:
        raise VerifyUsageError(f"--istiod-addresses {path}: expected a non-empty JSON list of clusters")
    return out


def run_verify(
    targets: Sequence[Target],
    access: Mapping[str, Callable[[], IstiodAccess]],
    root_pem: str | None,
    service: str,
    mesh_id: str | None,
    proxy_view: bool = False,
    client_app: str = DEFAULT_CLIENT,
    traffic: bool | None = False,
    requests: int = DEFAULT_REQUESTS,
    edits: bool = False,
    read_roots: bool = False,
) -> dict[str, Any]:
    """Collects everything and returns the JSON report (``ok`` false when any finding). With ``proxy_view``
    each istiod is also asked over xDS what it sends a sidecar of ``client_app`` and the east-west gateway;
    with ``traffic`` each cluster's sleep pod sends ``requests`` requests to the service (``verify.traffic``)
    while the istiods are read. ``traffic=None`` (the command line's default) runs the test where a sleep
    pod runs and says where none does, without a finding; ``True`` makes a missing sleep pod a finding.
    With ``edits`` the program's objects are read with their field managers, and those changed by others are
    warnings (``verify.edit_checks``), which leave ``ok`` as it is. With ``read_roots`` every proxy's trusted roots
    and certificate are read, and a proxy that would reject another's certificate is a finding
    (``verify.roots``)."""
    required = traffic is True
    traffic = traffic is not False
    svc_name, _, svc_ns = service.partition(".")
    svc_ns = svc_ns or "default"
    host = f"{svc_name}.{svc_ns}.svc.cluster.local"
    parallel = max(1, min(len(targets), MAX_PARALLEL_CLUSTERS))
    workers = ThreadPoolExecutor(max_workers=parallel * (2 if traffic else 1), thread_name_prefix="verify")
    with workers:
        if proxy_view:  # Envoy's message classes take about a second to import: meanwhile the clusters are read
            protos = workers.submit(envoy_protos)
        # Every cluster is read at once (each through its own API client), then every istiod at once.
        clusters = list(
            workers.map(
                lambda t: collect_cluster(
                    t.name,
                    t.kubeconfig,
                    t.context,
                    t.network,
                    (svc_name, svc_ns),
                    client_app=client_app if proxy_view else None,
                    gateway_pods=traffic,
                    edits=edits,
                ),
                targets,
            )
        )
        ports = sorted({port for c in clusters for port in c.service_ports})
        by_name = {c.name: c for c in clusters}
        # Without a given root (a mesh Pulumi did not build, no --root-cert), istiod's certificates are
        # checked against the root every cluster's cacerts agrees on; the root check reports roots that differ.
        tls_root = root_pem
        if tls_root is None:
            roots = {pem_fingerprint(c.root_pem): c.root_pem for c in clusters if c.root_pem}
            if len(roots) == 1:
                tls_root = next(iter(roots.values()))
        sending = []
        if traffic:
            from istio_mesh.sample_apps import HELLOWORLD_PORT

            url = service_url(svc_name, svc_ns, ports[0] if ports else HELLOWORLD_PORT)

            def send(t: Target) -> TrafficFacts:
                if by_name[t.name].api_error:  # its api finding says why; no exec would get through either
                    return TrafficFacts(t.name, svc_ns, url, requests, error="not run: the cluster cannot be read")
                try:
                    return traffic_from(t, svc_ns, url, requests)
                except Exception as e:  # a bug here must not hide every other finding: it is one, named
                    traceback.print_exc(file=sys.stderr)
                    failed = f"the traffic test failed unexpectedly: {type(e).__name__}: {e}"
                    return TrafficFacts(t.name, svc_ns, url, requests, error=failed)

            sending = [workers.submit(send, t) for t in targets]
        if proxy_view:
            protos.result()

        def istiod_of(t: Target) -> IstiodFacts:
            try:
                a = access[t.name]()
            except Exception as e:  # no istiod to reach is itself the finding
                return IstiodFacts(cluster=t.name, address="-", error=f"cannot reach istiod: {error_text(e)}")
            facts = collect_istiod(t.name, a, host, tls_root)
            if proxy_view and not facts.error:
                try:
                    facts.proxy = collect_proxy(by_name[t.name], a, host, svc_ns, ports, client_app, mesh_id)
                except Exception as e:  # a bug here must not hide every other finding: it is one, named
                    traceback.print_exc(file=sys.stderr)
                    facts.proxy = ProxyFacts(
                        cluster=t.name, error=f"the proxy view failed unexpectedly: {type(e).__name__}: {e}"
                    )
            return facts

        reading = [workers.submit(collect_roots, t) for t in targets] if read_roots else None
        istiods = list(workers.map(istiod_of, targets))
        trust = [r.result() for r in reading] if reading is not None else None
        sent = [s.result() for s in sending] if traffic else None
    findings = diagnose(clusters, istiods, root_pem, host)
    if sent is not None:
        findings += check_traffic(sent, clusters, istiods, findings, required=required)
    warnings = check_edits(clusters) if edits else []
    if trust is not None:
        root_findings, root_warnings = check_roots(trust)
        findings += root_findings
        warnings += root_warnings
    doc = report_json(mesh_id, clusters, istiods, findings, host, tls_root, sent, warnings)
    doc["roots"] = roots_json(trust, root_pem) if trust is not None else None
    return doc


def _request_count(value: str) -> int:
    """``--requests``: a whole number from 1 to MAX_REQUESTS."""
    if not value.isdigit() or not 1 <= int(value) <= MAX_REQUESTS:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_REQUESTS}, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``scripts/verify`` / ``python -m verify``."""
    ap = argparse.ArgumentParser(
        prog="scripts/verify",
        description="Prove the clusters form one mesh: every istiod's synced clusters, CA, gateways and the "
        "endpoints of a service; exits 1 naming each cause when something is wrong.",
    )
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--stack", help="Pulumi stack whose config names the clusters (default: the selected stack)")
    src.add_argument(
        "--config",
        metavar="FILE",
        help="YAML with the stack's istio-mesh settings (meshId, clusters: name, network, kubeconfig, context) "
        "for a mesh that Pulumi did not build",
    )
    ap.add_argument("--root-cert", metavar="PEM", help="the mesh root certificate (default: the stack's output)")
    ap.add_argument(
        "--service", default=DEFAULT_SERVICE, help="NAME.NAMESPACE whose endpoints to report (default %(default)s)"
    )
    ap.add_argument(
        "--istiod",
        action="append",
        default=[],
        metavar="CLUSTER=HTTP_HOST:PORT,TLS_HOST:PORT[,XDS_HOST:PORT]",
        help="reach this cluster's istiod directly (its 8080 and 15012, and 15010 for --proxy-view); default: "
        "port-forward through the API server",
    )
    ap.add_argument(
        "--istiod-addresses",
        metavar="FILE",
        help="JSON list of {name, istiod: {http, tls, xds}}: reach these clusters' istiods directly (the local "
        "lab writes .lab/clusters.json in this form; scripts/verify --lab passes it)",
    )
    ap.add_argument(
        "--proxy-view",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask each istiod over xDS (its 15010) what it sends a sidecar of the client and the east-west "
        "gateway: the service's endpoints per network, the gateway's AUTO_PASSTHROUGH listener on 15443 "
        "(on by default; --no-proxy-view checks the control plane only)",
    )
    ap.add_argument(
        "--client",
        default=DEFAULT_CLIENT,
        metavar="APP",
        help="the proxy view poses as the sidecar of a running pod labelled app=APP in the service's namespace "
        "(default %(default)s; a stand-in node when none runs)",
    )
    ap.add_argument(
        "--traffic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the guide's last step: from the sleep pod of every cluster (kubectl exec through the API server) "
        "send --requests requests to the service (http://NAME.NAMESPACE:PORT/hello) and check that every cluster "
        "on another network that runs it answers. By default it runs where a sleep pod runs and says where none "
        "does; --traffic makes a missing sleep pod a finding; --no-traffic skips it",
    )
    ap.add_argument(
        "--requests",
        type=_request_count,
        default=DEFAULT_REQUESTS,
        metavar="N",
        help="requests per cluster for --traffic (default %(default)s, at most " + str(MAX_REQUESTS) + ")",
    )
    ap.add_argument(
        "--edits",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="name the program's objects (Deployments, Services, ConfigMaps, Secrets, webhooks, ...) whose fields "
        "someone other than the program, istiod or Kubernetes has changed, from their managedFields: warnings, "
        "verify does not fail on them (on by default; --no-edits skips the reads)",
    )
    ap.add_argument(
        "--roots",
        action="store_true",
        help="read every proxy's trusted roots and certificate (one exec per proxy): during a root rotation, "
        "which roots each proxy trusts and presents, and any proxy that would reject another",
    )
    ap.add_argument("--json", action="store_true", help="print the JSON report instead of text")
    ap.add_argument("--project-dir", default=os.getcwd(), help=argparse.SUPPRESS)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    import yaml

    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        root_pem = None
        if args.config:
            try:
                with open(args.config) as fh:
                    raw = yaml.safe_load(fh) or {}
            except (OSError, yaml.YAMLError) as e:
                raise VerifyUsageError(f"--config {args.config}: {e}") from None
            mesh_id, targets = targets_from_config(raw, os.path.dirname(os.path.abspath(args.config)))
        else:
            raw, outputs = stack_inputs(args.stack, args.project_dir)
            mesh_id, targets = targets_from_config(raw, args.project_dir)
            # During a root rotation the clusters trust both roots (the program's trustedRootsPem).
            root_pem = outputs.get("trustedRootsPem") or outputs.get("rootCertificatePem")
        if args.root_cert:
            try:
                with open(args.root_cert) as fh:
                    root_pem = fh.read()
            except OSError as e:
                raise VerifyUsageError(f"--root-cert: {e}") from None
        names = {t.name for t in targets}
        access: dict[str, Callable[[], IstiodAccess]] = {
            t.name: functools.partial(PortForwardAccess, t.kubeconfig, t.context) for t in targets
        }
        direct: dict[str, tuple[str, str, str | None]] = {}
        if args.istiod_addresses:
            listed = istiod_addresses(args.istiod_addresses)
            missing = sorted(names - set(listed))
            if missing:
                raise VerifyUsageError(
                    f"--istiod-addresses {args.istiod_addresses} has no address for {', '.join(missing)} "
                    f"(it lists {', '.join(sorted(listed))})"
                )
            direct.update({n: listed[n] for n in names})
        for spec in args.istiod:
            name, _, rest = spec.partition("=")
            http_hp, _, tail = rest.partition(",")
            tls_hp, _, xds_hp = tail.partition(",")
            if name not in names or not http_hp or not tls_hp:
                raise VerifyUsageError(
                    f"--istiod {spec!r}: expected CLUSTER=HTTP_HOST:PORT,TLS_HOST:PORT[,XDS_HOST:PORT] with CLUSTER "
                    f"one of {sorted(names)}"
                )
            hostport(http_hp), hostport(tls_hp)
            if xds_hp:
                hostport(xds_hp)
            direct[name] = (http_hp, tls_hp, xds_hp or None)
        for name, (http_hp, tls_hp, xds_hp) in direct.items():
            access[name] = functools.partial(DirectAccess, http_hp, tls_hp, xds_hp)
        doc = run_verify(
            targets,
            access,
            root_pem,
            args.service,
            mesh_id,
            args.proxy_view,
            args.client,
            traffic=args.traffic,
            requests=args.requests,
            edits=args.edits,
            read_roots=args.roots,
        )
    except (VerifyUsageError, ValueError) as e:
        print(f"verify: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug in verify: never mistaken for findings (1) or bad input (2)
        traceback.print_exc(file=sys.stderr)
        print(f"verify: internal error ({type(e).__name__}: {e}); nothing was concluded", file=sys.stderr)
        return 3
    print(json.dumps(doc, indent=2) if args.json else render_text(doc))
    return 0 if doc["ok"] else 1
