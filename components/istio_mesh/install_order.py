"""Whether a cluster's Istio CRDs must be applied before its istiod: asked of the cluster, every run.

Istio's upgrade order is CRDs first: a new istiod may watch kinds or fields its old CRDs lack, so the
``base`` chart's CRDs go before the ``istiod`` chart whenever Istio is already in the cluster. In a
cluster without Istio there is nothing older to protect, and the CRDs first only cost time: about 1.5 MB
of schema per cluster on the critical path of ``up``, then in every state checkpoint of every later step.
There istiod (which waits for CRDs that appear after it) goes first and the CRDs are created while its
rollout is awaited: ``up`` from empty measured 0.54x (README, "Where the time goes", item 8).

The answer is the cluster's, not the state's: Istio is there when its ``VirtualService`` CRD or the
``istiod`` Deployment exists (a run that died half-way is an upgrade, which is the safe order). A
cluster that cannot be asked (no kubeconfig, an error) gets the safe order too. A dependency is not
a diff: the next run, which finds Istio, records the upgrade order in the state with no change shown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

import pulumi

from .constants import ISTIO_NAMESPACE, ISTIOD_DEPLOYMENT
from .create_guard import ClusterObjects, GuardLookupError, ObjectRef

#: A CRD every Istio release installs (the base chart's); its presence means Istio is in the cluster.
PROBE_CRD = "virtualservices.networking.istio.io"
#: What is looked up: that CRD, then istiod's Deployment.
PROBES = (
    ObjectRef("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, PROBE_CRD),
    ObjectRef("apps/v1", "Deployment", ISTIO_NAMESPACE, ISTIOD_DEPLOYMENT),
)
_PROBES = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="install-order")


def istio_present(lookup: ClusterObjects) -> bool:
    """True when any of ``PROBES`` exists in the cluster; raises ``GuardLookupError`` when it cannot say."""
    return any(lookup.get(ref) is not None for ref in PROBES)


def crds_first(lookup: ClusterObjects | None) -> pulumi.Output[bool]:
    """True (CRDs before istiod) unless the cluster answers that it has no Istio yet."""
    if lookup is None:
        return pulumi.Output.from_input(True)

    async def ask() -> bool:
        try:
            await lookup.resolve()
            # Off the event loop: a request may take up to the lookup's timeout.
            return await asyncio.get_running_loop().run_in_executor(_PROBES, istio_present, lookup)
        except GuardLookupError as err:
            pulumi.log.warn(
                f"cluster {lookup.cluster!r}: could not tell whether Istio is installed ({err}); "
                "its CRDs are applied before istiod (the upgrade order)"
            )
            return True

    return pulumi.Output.from_input(True).apply(lambda _: ask())
