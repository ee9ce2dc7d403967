"""Resource transforms that keep ``pulumi refresh`` quiet about fields istiod owns at runtime.

istiod patches its admission webhooks after start-up: it writes its CA bundle into
``webhooks[*].clientConfig.caBundle`` and flips the validating webhook's ``failurePolicy`` from
``Ignore`` to ``Fail`` once it is ready. Those are not drift; a refresh must not report them, and an
``up`` must not fight istiod over them (the first is ignored, the second not sent). Every other
field of these objects is still compared, so a real out-of-band change (a webhook deleted, a selector
edited) is still reported.
"""

from __future__ import annotations

from typing import Any

import pulumi

#: Kinds whose runtime-mutated fields are ignored.
VALIDATING_WEBHOOK_TYPE = "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"
WEBHOOK_TYPES = (
    VALIDATING_WEBHOOK_TYPE,
    "kubernetes:admissionregistration.k8s.io/v1:MutatingWebhookConfiguration",
)
#: Property paths istiod rewrites and the program keeps sending (Pulumi property-path syntax; ``[*]``
#: matches every webhook): the charts render no ``caBundle`` here, istiod patches it in.
ISTIOD_MANAGED_FIELDS = ("webhooks[*].clientConfig.caBundle",)


def ignore_istiod_managed_fields(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """Adds ``ignore_changes`` for the istiod-managed webhook fields to webhook configurations, and leaves
    the validating webhooks' ``failurePolicy`` to istiod.

    istiod switches that ``failurePolicy`` from ``Ignore`` to ``Fail`` once its webhook answers (field
    manager ``pilot-discovery``). A program that keeps sending ``Ignore`` makes every later update of the
    object a server-side-apply conflict on that field, and ``ignore_changes`` cannot prevent it: the
    engine copies the old input back into the apply, and the provider's handling of ignored fields under
    server-side apply does not reach into arrays (pulumi-kubernetes ``handleSSAIgnoreFields``). Istio's
    chart renders the value only on install (``not .Release.IsUpgrade``); a Pulumi program renders on
    every run, so it is not sent at all: a new object takes the API's default, ``Fail`` (what istiod
    sets; the program creates Istio resources only after istiod is ready), and an existing stack's next
    ``up`` updates the object once, handing the field to istiod.
    """
    if args.type_ not in WEBHOOK_TYPES:
        return None
    existing = list(args.opts.ignore_changes or [])
    merged = existing + [f for f in ISTIOD_MANAGED_FIELDS if f not in existing]
    props = args.props
    webhooks = props.get("webhooks")
    if args.type_ == VALIDATING_WEBHOOK_TYPE and isinstance(webhooks, list):
        props = {
            **props,
            "webhooks": [
                {k: v for k, v in w.items() if k != "failurePolicy"} if isinstance(w, dict) else w for w in webhooks
            ],
        }
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
