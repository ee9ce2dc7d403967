"""A pod's volumes as files under its directory, the way the kubelet mounts them.

Each process of a pod runs with the pod's directory as its working directory, and Istio's agent reads
and writes everything through paths relative to it (``./var/run/secrets/tokens/istio-token``,
``./var/run/secrets/istio/root-cert.pem``, ``./etc/istio/proxy``, ...: pilot-agent's constants, which the
container image's working directory ``/`` turns into the mount paths). So a volume mounted at
``/var/run/secrets/istio`` is written to ``<pod dir>/var/run/secrets/istio``.

Supported sources: ``emptyDir``, ``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (service
account tokens from the TokenRequest API, bound to the pod, with the audience and lifetime the pod asks
for; ConfigMaps; the downward API). Files are replaced atomically (a new file renamed over the old), so
a reader sees the old content or the new, never a half; a changed ConfigMap or Secret is written
again by ``refresh`` (the kubelet's sync), not by restarting anything.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Get = Callable[[str], Any]
Post = Callable[[str, dict[str, Any]], Any]

#: The kubelet refreshes a projected token once 80% of its lifetime has passed.
TOKEN_REFRESH_FRACTION = 0.8


@dataclasses.dataclass
class Volumes:
    """What was written for a pod, and when its tokens need refreshing (monotonic seconds)."""

    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    token_refresh_at: float = float("inf")


def _write(root: Path, rel: str, data: bytes, uid: int, mode: int = 0o644) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.chown(tmp, uid, uid)
    tmp.replace(path)


def _mkdir(root: Path, rel: str, uid: int) -> None:
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)


def _downward(pod: Mapping[str, Any], items: list[Mapping[str, Any]]) -> dict[str, bytes]:
    out = {}
    for item in items:
        field = item.get("fieldRef", {}).get("fieldPath", "")
        meta = pod["metadata"]
        if field in ("metadata.labels", "metadata.annotations"):
            values = meta.get(field.split(".")[1], {})
            # The kubelet's format: key="value" per line, sorted, values quoted.
            text = "\n".join(f'{k}="{_quote(v)}"' for k, v in sorted(values.items()))
        elif field == "metadata.name":
            text = meta["name"]
        elif field == "metadata.namespace":
            text = meta["namespace"]
        else:
            continue
        out[item["path"]] = text.encode()
    return out


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _keyed(data: Mapping[str, str], items: list[Mapping[str, Any]] | None, b64: bool) -> dict[str, bytes]:
    decode = (lambda v: base64.b64decode(v)) if b64 else (lambda v: v.encode())
    if items:
        return {i["path"]: decode(data[i["key"]]) for i in items if i["key"] in data}
    return {k: decode(v) for k, v in data.items()}


def volume_files(
    pod: Mapping[str, Any], volume: Mapping[str, Any], get: Get, post: Post, now: float, tokens: bool = True
) -> tuple[dict[str, bytes] | None, float]:
    """The files of one volume (None: an emptyDir, a directory) and when its tokens need refreshing
    (``tokens=False``: no token is requested, and the volume's token files are left out)."""
    ns = pod["metadata"]["namespace"]
    expires = float("inf")
    if "emptyDir" in volume:
        return None, expires
    if "configMap" in volume:
        cm = get(f"/api/v1/namespaces/{ns}/configmaps/{volume['configMap']['name']}") or {}
        return _keyed(cm.get("data") or {}, volume["configMap"].get("items"), False), expires
    if "secret" in volume:
        s = get(f"/api/v1/namespaces/{ns}/secrets/{volume['secret']['secretName']}") or {}
        return _keyed(s.get("data") or {}, volume["secret"].get("items"), True), expires
    if "downwardAPI" in volume:
        return _downward(pod, volume["downwardAPI"].get("items", [])), expires
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for src in volume["projected"].get("sources", []):
            if "serviceAccountToken" in src:
                if not tokens:
                    continue
                t = src["serviceAccountToken"]
                ttl = int(t.get("expirationSeconds", 3607))
                token = request_token(pod, t.get("audience"), ttl, post)
                files[t["path"]] = token.encode()
                expires = min(expires, now + ttl * TOKEN_REFRESH_FRACTION)
            elif "configMap" in src:
                cm = get(f"/api/v1/namespaces/{ns}/configmaps/{src['configMap']['name']}") or {}
                files.update(_keyed(cm.get("data") or {}, src["configMap"].get("items"), False))
            elif "downwardAPI" in src:
                files.update(_downward(pod, src["downwardAPI"].get("items", [])))
            elif "secret" in src:
                s = get(f"/api/v1/namespaces/{ns}/secrets/{src['secret']['name']}") or {}
                files.update(_keyed(s.get("data") or {}, src["secret"].get("items"), True))
        return files, expires
    raise ValueError(f"volume {volume.get('name')}: the lab cannot mount {sorted(set(volume) - {'name'})}")


def request_token(pod: Mapping[str, Any], audience: str | None, ttl: int, post: Post) -> str:
    """A TokenRequest for the pod's service account, bound to the pod (as a projected token is)."""
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName") or "default"
    spec: dict[str, Any] = {
        "expirationSeconds": ttl,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
    }
    if audience:
        spec["audiences"] = [audience]
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    out = post(f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token", body)
    return str(out["status"]["token"])


def mount(pod: Mapping[str, Any], root: Path, uid: int, get: Get, post: Post, tokens: bool = True) -> Volumes:
    """Write every volume a container of the pod mounts under ``root`` (owned by ``uid``: the proxy's
    user writes its bootstrap and sockets there). ``tokens=False`` (a refresh before the tokens are due)
    keeps the token files as they are and asks the TokenRequest API nothing."""
    now = time.monotonic()
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    result = Volumes()
    containers = [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]
    _mkdir(root, ".", uid)
    for c in containers:
        for m in c.get("volumeMounts", []):
            vol = volumes.get(m["name"])
            if vol is None:
                continue
            rel = m["mountPath"].lstrip("/")
            files, expires = volume_files(pod, vol, get, post, now, tokens)
            result.token_refresh_at = min(result.token_refresh_at, expires)
            _mkdir(root, rel, uid)
            for name, data in (files or {}).items():
                _write(root, f"{rel}/{name}", data, uid)
                result.files[f"{rel}/{name}"] = data
    return result
