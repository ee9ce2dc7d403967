"""What the tests of the mesh's components share: the type tokens they look for, the root key the mocks give
the mesh, and ``build`` (the stack's program for hand-written settings, under the recording mocks)."""

from __future__ import annotations

import base64
from typing import Any

from .mocks import Recorded, mock_private_key_pem, run_program
from .program import mesh_program

SECRET = "kubernetes:core/v1:Secret"
CHART = "kubernetes:helm.sh/v4:Chart"
NAMESPACE = "kubernetes:core/v1:Namespace"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
CLUSTER_ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
GATEWAY_CR = "kubernetes:networking.istio.io/v1:Gateway"
ROOT_KEY = mock_private_key_pem("mesh-root-ca-key", 4096)
INTERMEDIATE = "pulumi-python:dynamic/istiomesh:IntermediateCertificate"
CA_USAGES = ["digital_signature", "content_commitment", "key_encipherment", "cert_signing"]
WEBHOOK = "kubernetes:admissionregistration.k8s.io/v1:ValidatingWebhookConfiguration"
CRD = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"


def b64d(value: str) -> str:
    """``value`` (base64) decoded, as text."""
    return base64.b64decode(value).decode()


def build(settings: Any) -> Recorded:
    """What the stack's program registers for ``settings``, under the recording mocks."""
    return run_program(mesh_program(settings))
