"""Whether a lab stack's state belongs to the lab that is running now.

    pulumi stack export --show-secrets --stack STACK | python scripts/lab_stack.py stale LAB_CA_CRT

The lab is disposable: after ``python -m lab down --purge`` it comes back with a new CA and empty
clusters. A stack deployed to the old lab describes objects that no longer exist, and its Kubernetes
providers hold kubeconfigs that trust the old CA, so Pulumi would replace every object and then fail
to delete the originals through providers that can no longer reach anything. The state itself says
which lab it was deployed to: each provider's kubeconfig carries the CA it trusts
(``certificate-authority-data``), including the old providers a failed run left pending deletion.
``stale`` prints the providers that trust another CA and exits 0
when there is at least one; it exits 1 when the state belongs to this lab (or holds no provider yet).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import yaml

PROVIDER_TYPE = "pulumi:providers:kubernetes"


def _plaintext(value: Any) -> Any:
    """A state input as the program gave it: ``--show-secrets`` keeps a secret as ``{sig, plaintext}``."""
    if isinstance(value, dict) and "plaintext" in value:
        return json.loads(value["plaintext"])
    return value


def trusted_cas(kubeconfig: str) -> list[bytes]:
    """The PEM CA certificates a kubeconfig's clusters trust (inline data only)."""
    config = yaml.safe_load(kubeconfig) or {}
    cas = []
    for entry in config.get("clusters") or []:
        data = (entry.get("cluster") or {}).get("certificate-authority-data")
        if data:
            cas.append(base64.b64decode(data).strip())
    return cas


def stale_providers(deployment: dict[str, Any], lab_ca: bytes) -> list[str]:
    """The URNs of the state's Kubernetes providers whose kubeconfig trusts a CA other than ``lab_ca``."""
    stale = []
    for resource in deployment.get("resources") or []:
        if resource.get("type") != PROVIDER_TYPE:
            continue
        kubeconfig = _plaintext((resource.get("inputs") or {}).get("kubeconfig"))
        if not isinstance(kubeconfig, str):
            continue
        cas = trusted_cas(kubeconfig)
        if cas and lab_ca.strip() not in cas:
            stale.append(resource["urn"])
    return stale


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "stale":
        print(__doc__, file=sys.stderr)
        return 2
    exported = json.load(sys.stdin)
    deployment = exported.get("deployment") or {}
    stale = stale_providers(deployment, Path(argv[1]).read_bytes())
    for urn in stale:
        print(f"{urn}: its kubeconfig trusts another CA than this lab's {argv[1]}")
    return 0 if stale else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
