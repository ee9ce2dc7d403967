"""Kept so that ``istio_mesh.drift`` still imports: the webhook and CRD transforms live in ``transforms``,
with the other transform callbacks."""

from .transforms import (
    CRD_TYPE,
    ISTIOD_MANAGED_FIELDS,
    KEEP_POLICY_ANNOTATION,
    VALIDATING_WEBHOOK_TYPE,
    VALIDATOR_MANAGED_FIELDS,
    WEBHOOK_TYPES,
    delete_crds_on_destroy,
    ignore_istiod_managed_fields,
)

__all__ = [
    "CRD_TYPE",
    "ISTIOD_MANAGED_FIELDS",
    "KEEP_POLICY_ANNOTATION",
    "VALIDATING_WEBHOOK_TYPE",
    "VALIDATOR_MANAGED_FIELDS",
    "WEBHOOK_TYPES",
    "delete_crds_on_destroy",
    "ignore_istiod_managed_fields",
]
