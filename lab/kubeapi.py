"""Kubeconfig files and a tiny Kubernetes API client (stdlib ``urllib`` + ``ssl``)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .layout import LAB_DIR, Cluster
from .pki import CA_CERT


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _kubeconfig_entries(c: Cluster, stem: str, user: str) -> tuple[dict, dict, dict]:
    cluster = {"name": c.name, "cluster": {"server": c.server, "certificate-authority-data": _b64(CA_CERT)}}
    usr = {
        "name": user,
        "user": {
            "client-certificate-data": _b64(c.pki / f"{stem}.crt"),
            "client-key-data": _b64(c.pki / f"{stem}.key"),
        },
    }
    ctx = {"name": c.name if stem == "admin" else f"{c.name}-{stem}", "context": {"cluster": c.name, "user": user}}
    return cluster, usr, ctx


def _dump(path: Path, clusters: list, users: list, contexts: list, current: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": users,
        "contexts": contexts,
        "current-context": current,
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)


def write_kubeconfigs(c: Cluster) -> None:
    """``<cluster>/kubeconfig`` (admin, context ``<cluster>``) and one per control-plane component."""
    cl, usr, ctx = _kubeconfig_entries(c, "admin", f"{c.name}-admin")
    _dump(c.kubeconfig, [cl], [usr], [ctx], ctx["name"])
    for comp in ("kube-controller-manager", "kube-scheduler", "kwok"):
        cl, usr, ctx = _kubeconfig_entries(c, comp, f"{c.name}-{comp}")
        _dump(c.component_kubeconfig(comp), [cl], [usr], [ctx], ctx["name"])


def write_merged_kubeconfig(clusters: list[Cluster]) -> Path:
    """``.lab/kubeconfig``: every cluster's admin context, the first one current."""
    entries = [_kubeconfig_entries(c, "admin", f"{c.name}-admin") for c in clusters]
    path = LAB_DIR / "kubeconfig"
    _dump(path, [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries], entries[0][2]["name"])
    return path


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Client:
    """Admin client of one lab cluster."""

    def __init__(self, c: Cluster, timeout: float = 5.0):
        self.base = c.server
        self.timeout = timeout
        self.ctx = ssl.create_default_context(cafile=str(CA_CERT))
        self.ctx.load_cert_chain(str(c.pki / "admin.crt"), str(c.pki / "admin.key"))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("message", raw.decode(errors="replace"))
            except ValueError:
                msg = raw.decode(errors="replace")
            raise ApiError(e.code, msg) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def create(self, path: str, obj: dict[str, Any]) -> Any:
        """POST, treating 409 AlreadyExists as success (returns None then)."""
        try:
            return self.request("POST", path, obj)
        except ApiError as e:
            if e.status == 409:
                return None
            raise

    def delete(self, path: str) -> None:
        try:
            self.request("DELETE", path)
        except ApiError as e:
            if e.status != 404:
                raise
