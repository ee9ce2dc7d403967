"""The resource transforms: fields istiod owns at runtime, Istio's CRDs on destroy, and one callback per
object however many transforms a component and its ancestors want.

Every transform in a resource's ancestry is a separate callback from the engine to this program,
each carrying the object's full properties there and back (an Istio CRD is ~100 KB), and the engine
applies all of them to every object a Helm chart renders. Profiled on the 2-cluster lab (no-op
preview, py-spy): transform callbacks were ~30% of the program's CPU, and most objects went through
two or three of them (the create guard, the webhook drift rule, the CRD delete rule) although at most
one changes any given kind. ``single_transform`` folds a component's own transforms and the ones it
inherits into one callback, run in the engine's order (the nearest first).

Fields istiod owns (``ignore_istiod_managed_fields``): istiod patches its admission webhooks after
start-up: it writes its CA bundle into ``webhooks[*].clientConfig.caBundle`` and flips the validating
webhook's ``failurePolicy`` from ``Ignore`` to ``Fail`` once its webhook answers. Those are not drift; a
refresh must not report them, and an ``up`` must not fight istiod over them. Every other field of these
objects is still compared, so a real out-of-band change (a webhook deleted, a selector edited) is still
reported. Istio's CRDs (``delete_crds_on_destroy``): kept on destroy unless the stack opts out.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import pulumi

from .constants import PATCH_FORCE_ANNOTATION

#: A synchronous resource transform (all of this project's are).
Transform = Callable[[pulumi.ResourceTransformArgs], pulumi.ResourceTransformResult | None]


def compose(*transforms: Transform) -> Transform:
    """A transform applying each of ``transforms`` in turn, each to the previous one's result."""

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        current = args
        changed = False
        for each in transforms:
            result = each(current)
            if inspect.isawaitable(result):
                raise TypeError(f"compose() takes synchronous transforms; {each!r} returned an awaitable")
            if result is None:
                continue
            changed = True
            current = pulumi.ResourceTransformArgs(
                custom=current.custom, type_=current.type_, name=current.name, props=result.props, opts=result.opts
            )
        return pulumi.ResourceTransformResult(props=current.props, opts=current.opts) if changed else None

    return transform


def single_transform(opts: pulumi.ResourceOptions | None, *own: Transform) -> pulumi.ResourceOptions:
    """A copy of ``opts`` whose transforms are one: ``own`` (applied first) then the ones ``opts`` has.

    For a component's ``super().__init__``: its children then cost one engine callback each. The
    component must register no other transforms below itself for that to hold.
    """
    result = copy.copy(opts) if opts is not None else pulumi.ResourceOptions()
    inherited: list[Transform] = list(result.transforms or [])  # type: ignore[arg-type]
    chain = [*own, *inherited]
    result.transforms = [chain[0] if len(chain) == 1 else compose(*chain)] if chain else None
    return result


#: Kinds whose runtime-mutated fields are ignored.
VALIDATING_WEBHOOK_TYPE = "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"
WEBHOOK_TYPES = (
    VALIDATING_WEBHOOK_TYPE,
    "kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration",
)
#: Property paths istiod rewrites (Pulumi property-path syntax; ``[*]`` matches every webhook). The charts
#: render no ``caBundle``; they render the validators' ``failurePolicy: Ignore`` (the install value).
ISTIOD_MANAGED_FIELDS = ("webhooks[*].clientConfig.caBundle",)
VALIDATOR_MANAGED_FIELDS = (*ISTIOD_MANAGED_FIELDS, "webhooks[*].failurePolicy")


def ignore_istiod_managed_fields(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Adds ``ignore_changes`` for the istiod-managed webhook fields to webhook configurations.

    The validators are created with the chart's ``failurePolicy: Ignore``, as Istio installs them: until
    istiod has patched in its CA bundle and checked that the API server reaches its webhook, a call
    would fail, and with ``Fail`` that would reject the program's own Istio resources (the cross-network
    Gateway right after istiod starts) and every Istio resource on clusters whose API server cannot reach
    istiod at all (a firewalled private control plane). istiod then switches it to ``Fail`` (field
    manager ``pilot-discovery``), which ``ignore_changes`` keeps from being reported. An update of the
    validator for another reason still sends the value recorded at creation (the engine copies an ignored
    field's old input into the apply, and the provider's server-side apply cannot leave out fields inside
    arrays, pulumi-kubernetes ``handleSSAIgnoreFields``), which would be a field conflict with
    pilot-discovery; ``pulumi.com/patchForce`` makes it an override instead, and istiod sets ``Fail``
    again once it sees the change (its webhook controller watches the object).
    """
    if args.type_ not in WEBHOOK_TYPES:
        return None
    fields = VALIDATOR_MANAGED_FIELDS if args.type_ == VALIDATING_WEBHOOK_TYPE else ISTIOD_MANAGED_FIELDS
    existing = list(args.opts.ignore_changes or [])
    merged = existing + [f for f in fields if f not in existing]
    props = args.props
    raw_metadata = props.get("metadata")
    if args.type_ == VALIDATING_WEBHOOK_TYPE and isinstance(raw_metadata, dict):  # charts render plain values
        metadata: dict[str, Any] = dict(raw_metadata)
        metadata["annotations"] = {**(metadata.get("annotations") or {}), PATCH_FORCE_ANNOTATION: "true"}
        props = {**props, "metadata": metadata}
    return pulumi.ResourceTransformResult(
        props=props, opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(ignore_changes=merged))
    )


CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


#: Helm's "never delete this" annotation; Istio's charts put it on every CRD.
KEEP_POLICY_ANNOTATION = "helm.sh/resource-policy"


def delete_crds_on_destroy(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Lets ``pulumi destroy`` delete the CRDs Istio's ``base`` chart renders.

    The chart marks its CRDs ``helm.sh/resource-policy: keep``; Pulumi's Chart honours it (the CRD is
    retained on delete), as ``helm uninstall`` would: deleting a CRD deletes every resource of its kind
    cluster-wide, including users' VirtualServices. For stacks that opt in (``istio.keepCRDs: false``,
    e.g. the disposable lab) the annotation is dropped and ``retainOnDelete`` turned off.
    """
    if args.type_ != CRD_TYPE:
        return None
    props: dict[str, Any] = dict(args.props)
    metadata = dict(props.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != KEEP_POLICY_ANNOTATION}
    # An empty map would differ from the live object (which has none) on every preview.
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    props["metadata"] = metadata
    return pulumi.ResourceTransformResult(
        props=props, opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(retain_on_delete=False))
    )
