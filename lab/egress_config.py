"""The API server's side of the egress proxy: the file for kube-apiserver's ``--egress-selector-config-file``.

It lists one egress, ``cluster``, over ``transport.uds`` with ``proxyProtocol: HTTPConnect``, so the API
server opens every dial of its "cluster" network context (Service-backed admission webhooks, kubelet
traffic, the ``pods``/``services`` proxy) as a CONNECT on the lab's proxy socket (``lab/egress.py``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: The egress selector's config API (k8s.io/apiserver pkg/apis/apiserver/v1beta1; v1 has no such kind).
EGRESS_SELECTOR_API_VERSION = "apiserver.k8s.io/v1beta1"
#: The network context of webhooks that name a Service, kubelet APIs and the pod/service proxy.
CLUSTER_EGRESS = "cluster"


def egress_selector_config(socket_path: Path) -> dict[str, object]:
    """The EgressSelectorConfiguration that sends the API server's "cluster" traffic to ``socket_path``.

    Only ``cluster`` is listed: ``controlplane`` and ``etcd`` then keep the direct dialer
    (``EgressSelector.Lookup`` returns no dialer for an unlisted selection).
    """
    return {
        "apiVersion": EGRESS_SELECTOR_API_VERSION,
        "kind": "EgressSelectorConfiguration",
        "egressSelections": [
            {
                "name": CLUSTER_EGRESS,
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    # udsName is used as given: a relative path would follow the API server's cwd.
                    "transport": {"uds": {"udsName": str(Path(socket_path).absolute())}},
                },
            }
        ],
    }


def write_egress_selector_config(path: Path, socket_path: Path) -> None:
    """Write the file for kube-apiserver's ``--egress-selector-config-file``."""
    path.write_text(yaml.safe_dump(egress_selector_config(socket_path), sort_keys=False))
