"""A Kubernetes API client for the program's own checks (preflight, create guard), built from a
cluster's kubeconfig content."""

from __future__ import annotations

from typing import Any


def api_client(kubeconfig: str, context: str | None) -> Any:
    """An ``ApiClient`` of the official client for ``context`` of ``kubeconfig`` (the file's content).

    urllib3 retries a failed request three times by default, which turns a 10 s timeout into 40 s;
    here a request is tried once, so every wait is the timeout its caller gives.
    """
    import yaml
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config_from_dict(yaml.safe_load(kubeconfig), context=context, client_configuration=configuration)
    configuration.retries = False
    return client.ApiClient(configuration)
