"""The program ``__main__.py`` runs, for hand-written settings, and kubeconfigs of clusters that are not there."""

from __future__ import annotations

import base64
import functools
import json
import os
import runpy
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

import pulumi

from .mocks import mock_private_key_pem, self_signed_pem


@functools.cache
def _kubeconfig_ca_pem() -> str:
    """A real (throw-away) CA certificate, so an HTTPS client built from the kubeconfig loads it."""
    return self_signed_pem(
        {"privateKeyPem": mock_private_key_pem("kubeconfig-ca"), "subject": {"commonName": "placeholder CA"}}
    )


def write_kubeconfig(directory: str, cluster: str, server: str) -> str:
    """A real kubeconfig with placeholder credentials (no cluster behind it, a real CA certificate)."""
    path = os.path.join(directory, f"{cluster}.kubeconfig")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(
            textwrap.dedent(
                f"""\
                apiVersion: v1
                kind: Config
                clusters:
                - name: {cluster}
                  cluster:
                    server: {server}
                    certificate-authority-data: {base64.b64encode(_kubeconfig_ca_pem().encode()).decode()}
                contexts:
                - name: {cluster}
                  context: {{cluster: {cluster}, user: admin-{cluster}}}
                current-context: {cluster}
                users:
                - name: admin-{cluster}
                  user: {{token: placeholder-token}}
                """
            )
        )
    return path


def mesh_program(settings: Any) -> Callable[[], Mapping[str, pulumi.Output[Any]]]:
    """The program ``__main__.py`` runs, for hand-written settings: providers, mesh, outputs."""

    def build() -> Mapping[str, pulumi.Output[Any]]:
        from istio_mesh import MultiPrimaryMesh
        from stack_config import cluster_provider, mesh_args

        providers = {c.name: cluster_provider(c) for c in settings.clusters}
        mesh = MultiPrimaryMesh("mesh", mesh_args(settings, providers))
        return {
            "meshId": mesh.mesh_id,
            "rootCertificatePem": mesh.root_cert_pem,
            "rootCertificateFingerprint": mesh.root_fingerprint,
            "clusters": mesh.clusters,
        }

    return build


def run_main(config: dict[str, Any], cwd: str) -> Any:
    """Runs __main__.py under mocks with ``config`` as the stack's istio-mesh:* settings."""
    env = {f"istio-mesh:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    main = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "__main__.py")

    def build() -> dict[str, pulumi.Output[Any]]:
        pulumi.runtime.set_all_config(env)
        old = os.getcwd()
        os.chdir(cwd)
        try:
            runpy.run_path(main, run_name="__main__")
        finally:
            os.chdir(old)
        return {}

    return build
