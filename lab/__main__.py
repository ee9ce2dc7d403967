"""``python -m lab up [--clusters N] | down [--purge] | status | verify``."""

from __future__ import annotations

import argparse
import sys

from . import cluster
from .layout import NODES_PER_CLUSTER, existing_clusters


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
        action="store_true",
        help="keep the MutatingAdmissionWebhook/ValidatingAdmissionWebhook admission plugins "
        "(off by default: no pod network reaches an in-cluster webhook in this lab)",
    )
    p_up.add_argument("--timeout", type=float, default=120, help="seconds allowed for each start-up phase")
    p_down = sub.add_parser("down", help="stop every lab cluster")
    p_down.add_argument("--purge", action="store_true", help="also delete .lab/<cluster> (data, certificates, logs)")
    sub.add_parser("status", help="processes, API server version, node readiness, kubeconfig paths")
    sub.add_parser(
        "verify",
        help="in every running cluster: a 2-replica Deployment becomes Available, a service-account "
        "token Secret is filled and its token lists pods, a LoadBalancer Service gets the cluster's IP",
    )
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            if not 1 <= args.nodes <= 20:
                raise cluster.LabError("--nodes must be between 1 and 20")
            cluster.up(args.clusters, args.webhooks, args.timeout, args.nodes)
            return 0
        if args.cmd == "down":
            cluster.down(existing_clusters(), args.purge)
            return 0
        if args.cmd == "verify":
            from .verify import verify

            verify(existing_clusters())
            return 0
        return 1 if cluster.status(existing_clusters()) else 0
    except (cluster.LabError, ValueError) as e:
        print(f"[lab] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
