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

    Secrets keep the provider's default: one whose data changes is deleted and created again, never
    updated in place. An in-place update is a server-side apply, which fails on a value someone else
    changed (a field-manager conflict) and keeps any key someone else added, where no later preview
    sees it; a recreated Secret holds exactly what the program says. (The price, for a remote secret:
    istiod drops that peer between the delete and the create; see README "Credentials".)
    """
    return k8s.Provider(
        f"k8s-{cluster.name}",
        kubeconfig=pulumi.Output.secret(cluster.kubeconfig),
        context=cluster.context,
        delete_unreachable=True if cluster.unreachable else None,
        skip_update_unreachable=True if cluster.unreachable else None,
        opts=opts,
    )
