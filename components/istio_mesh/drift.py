"""Resource transforms that keep ``pulumi refresh`` quiet about fields istiod owns at runtime.

istiod patches its admission webhooks after start-up: it writes its CA bundle into
``webhooks[*].clientConfig.caBundle`` and flips the validating webhook's ``failurePolicy`` from
``Ignore`` to ``Fail`` once its webhook answers. Those are not drift; a refresh must not report them, and
an ``up`` must not fight istiod over them. Every other field of these objects is still compared, so a
real out-of-band change (a webhook deleted, a selector edited) is still reported.
"""

from __future__ import annotations

from typing import Any

import pulumi

from .constants import PATCH_FORCE_ANNOTATION

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
