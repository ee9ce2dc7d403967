"""Prove that a multi-primary, multi-network Istio mesh forms: see ``verify.mesh`` (``python -m verify``)."""

from .mesh import (
    ClusterFacts,
    DirectAccess,
    Finding,
    IstiodFacts,
    PortForwardAccess,
    RemoteSecretFacts,
    Target,
    diagnose,
    main,
    render_text,
    report_json,
    run_verify,
)

__all__ = [
    "ClusterFacts",
    "DirectAccess",
    "Finding",
    "IstiodFacts",
    "PortForwardAccess",
    "RemoteSecretFacts",
    "Target",
    "diagnose",
    "main",
    "render_text",
    "report_json",
    "run_verify",
]
