"""One Kubernetes provider per cluster, built from the cluster's settings."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .settings import ClusterSettings


def cluster_provider(cluster: ClusterSettings, opts: pulumi.ResourceOptions | None = None) -> k8s.Provider:
    """A provider bound to ``cluster``'s kubeconfig and context.

    The kubeconfig's content (not its path) is passed, as a secret, so the state never depends on a
    machine's file layout and credentials never appear in plain text. For a cluster marked
    ``unreachable`` the provider drops objects it cannot reach from the state instead of failing
    (``deleteUnreachable``, ``skipUpdateUnreachable``), with a warning naming each: that is how a cluster
    that is gone for good leaves the mesh.
    """
    return k8s.Provider(
        f"k8s-{cluster.name}",
        kubeconfig=pulumi.Output.secret(cluster.kubeconfig),
        context=cluster.context,
        delete_unreachable=True if cluster.unreachable else None,
        skip_update_unreachable=True if cluster.unreachable else None,
        opts=opts,
    )
