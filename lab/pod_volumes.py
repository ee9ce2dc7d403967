"""A pod's volumes as files under its directory, the way the kubelet mounts them.

Each process of a pod runs with the pod's directory as its working directory, and Istio's agent reads
and writes everything through paths relative to it (``./var/run/secrets/tokens/istio-token``,
``./var/run/secrets/istio/root-cert.pem``, ``./etc/istio/proxy``, ...: pilot-agent's constants, which the
container image's working directory ``/`` turns into the mount paths). So a volume mounted at
``/var/run/secrets/istio`` is written to ``<pod dir>/var/run/secrets/istio``.

Supported sources: ``emptyDir`` (a plain directory: the proxy writes its bootstrap and sockets there),
``configMap``, ``secret``, ``downwardAPI`` and ``projected`` (service account tokens from the
TokenRequest API, bound to the pod, with the audience and lifetime the pod asks for; ConfigMaps,
Secrets; the downward API). The others are written as the kubelet writes them (``lab/atomic_writer.py``):
the whole set in a fresh hidden directory, one rename of ``..data`` swaps it in, each file is a link
``<key> -> ..data/<key>``; so a reader sees the old set or the new one, never a mix, and a watcher
sees one change. A refresh (``mount`` again: the kubelet's sync) writes a changed ConfigMap or Secret
that way, restarting nothing; an unchanged volume is not touched. Directories written file by file by
an older lab are taken over (their files become links, each in one rename).

A volume's keys (``items[].path``) are file names: a sub-path (``a/b``, which Kubernetes allows) is
refused with a ``ValueError`` naming the volume (the pod does not start); the pods the lab runs (Istio's
injected sidecars and gateways, the samples' ``kube-api-access`` volumes) use none. A volume mounted
inside another's mount path (the injector's ``/var/run/secrets/istio/crl`` in ``/var/run/secrets/istio``)
keeps its directory there across the outer volume's swaps.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import posixpath
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from . import atomic_writer

Get = Callable[[str], Any]
Post = Callable[[str, dict[str, Any]], Any]
#: The bytes a volume holds now for a key (None: no such file).
Held = Callable[[str], bytes | None]

#: The kubelet refreshes a projected token once 80% of its lifetime has passed.
TOKEN_REFRESH_FRACTION = 0.8


@dataclasses.dataclass
class Volumes:
    """What the pod's volumes hold once written (``files``: every configMap, secret, downwardAPI and
    projected volume's files, keyed ``<mount path relative to the pod's directory>/<key>``; tokens a
    refresh carried over included), and when its tokens need refreshing (monotonic seconds)."""

    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    token_refresh_at: float = float("inf")


def _mkdir(root: Path, rel: str, uid: int) -> None:
    path = root / rel
    path.mkdir(parents=True, exist_ok=True)
    st = path.stat()
    if (st.st_uid, st.st_gid) != (uid, uid):  # a refresh changes nothing (a chown is an event to watchers)
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
    pod: Mapping[str, Any],
    volume: Mapping[str, Any],
    get: Get,
    post: Post,
    now: float,
    tokens: bool = True,
    held: Held | None = None,
) -> tuple[dict[str, bytes] | None, float]:
    """The files of one volume (None: an emptyDir, a directory) and when its tokens need refreshing.
    ``tokens=False``: no token is requested; each token file keeps the bytes the volume holds now
    (``held``), so the set is complete; a token it does not hold (or no ``held``) is left out."""
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
                t = src["serviceAccountToken"]
                if not tokens:
                    kept = held(t["path"]) if held is not None else None
                    if kept is not None:
                        files[t["path"]] = kept
                    continue
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


def _held(target: Path) -> Held:
    """What ``target`` shows for a key now: through its link, the current ``..data`` set's bytes (or a
    plain file an older lab wrote)."""

    def read(key: str) -> bytes | None:
        try:
            return (target / key).read_bytes()
        except OSError:
            return None

    return read


def _mounts(pod: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Each mount path (relative to the pod's directory) and its volume, in the containers' order. One
    directory tree serves all the containers: two volumes at one path cannot be shown (``ValueError``);
    one volume mounted by several containers at one path is one mount."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    out: dict[str, Mapping[str, Any]] = {}
    for c in [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]:
        for m in c.get("volumeMounts", []):
            vol = volumes.get(m["name"])
            if vol is None:
                continue
            rel = posixpath.normpath("/" + m["mountPath"]).lstrip("/")
            if not rel:
                raise ValueError(f"volume {m['name']}: the lab cannot mount a volume at /")
            other = out.setdefault(rel, vol)
            if other["name"] != vol["name"]:
                raise ValueError(f"volumes {other['name']} and {vol['name']} are both mounted at /{rel}")
    return out


def _inside(rel: str, rels: Iterable[str]) -> set[str]:
    """The entries of the directory ``rel`` that are (or lead to) other volumes' mount points."""
    base = PurePosixPath(rel)
    return {
        PurePosixPath(r).relative_to(base).parts[0] for r in rels if r != rel and PurePosixPath(r).is_relative_to(base)
    }


def mount(pod: Mapping[str, Any], root: Path, uid: int, get: Get, post: Post, tokens: bool = True) -> Volumes:
    """Write every volume a container of the pod mounts under ``root`` (owned by ``uid``: the proxy's
    user writes its bootstrap and sockets there, and reads the rest). Each volume other than an emptyDir
    is written as a set (``atomic_writer.write``), and only when it changed; a volume mounted inside
    another's directory keeps its directory. ``tokens=False`` (a refresh before the tokens are due) asks
    the TokenRequest API nothing: the token files keep their bytes, carried over into the new set."""
    now = time.monotonic()
    mounts = _mounts(pod)
    result = Volumes()
    contents: dict[str, dict[str, bytes] | None] = {}
    _mkdir(root, ".", uid)
    for rel, vol in mounts.items():
        name = vol["name"]
        if name not in contents:  # one volume, one content, wherever it is mounted (one token request)
            files, expires = volume_files(pod, vol, get, post, now, tokens, _held(root / rel))
            contents[name] = files
            result.token_refresh_at = min(result.token_refresh_at, expires)
        files = contents[name]
        _mkdir(root, rel, uid)
        if files is None:
            continue
        try:
            atomic_writer.write(root / rel, files, uid=uid, keep=_inside(rel, mounts))
        except ValueError as e:
            raise ValueError(f"volume {name} at /{rel}: {e}") from None
        result.files.update({f"{rel}/{key}": data for key, data in files.items()})
    return result
