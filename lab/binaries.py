"""Where the lab's binaries come from: the toolchain cache that ``toolchain/build`` fills.

The control-plane binaries (``lab/control_plane.py``), ``pilot-discovery`` for istiod, and KWOK's default
stages; nothing is downloaded at run time. The cache is ``$ISTIO_MESH_TOOLCHAIN`` when set, else the
directory ``toolchain/build --dir`` names.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

from .control_plane import COMPONENTS
from .errors import LabError
from .layout import REPO


@dataclasses.dataclass(frozen=True)
class Toolchain:
    dir: Path

    def bin(self, name: str) -> Path:
        return self.dir / "bin" / name

    @property
    def kwok_stages(self) -> Path:
        return self.dir / "share" / "kwok" / "default-stages.yaml"

    @property
    def envoy_bootstrap(self) -> Path:
        """pilot-agent's template of Envoy's bootstrap (a file of Istio's proxy image)."""
        return self.dir / "share" / "istio" / "envoy_bootstrap_tmpl.json"

    @property
    def kwok_crds(self) -> Path:
        """KWOK's Exec and PortForward CRDs (the data plane's ``kubectl exec``/``port-forward``)."""
        return self.dir / "share" / "kwok" / "crds.yaml"


def find_toolchain() -> Toolchain:
    """The toolchain cache, complete (or a LabError saying how to build it)."""
    tc = locate_toolchain(required=True)
    assert tc is not None
    return tc


def locate_toolchain(required: bool) -> Toolchain | None:
    """The toolchain cache: $ISTIO_MESH_TOOLCHAIN, else what `toolchain/build --dir` names.

    ``required``: a LabError if it cannot be located or lacks a control-plane binary or KWOK's stages;
    otherwise None when it cannot be located (``down`` and ``status`` then go by process names).
    """
    d = os.environ.get("ISTIO_MESH_TOOLCHAIN")
    if not d:
        try:
            d = subprocess.run(
                [str(REPO / "toolchain" / "build"), "--dir"], check=True, capture_output=True, text=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            if required:
                raise LabError(f"cannot locate the toolchain (toolchain/build --dir): {e}") from None
            return None
    tc = Toolchain(Path(d))
    missing = [comp.name for comp in COMPONENTS if not os.access(tc.bin(comp.name), os.X_OK)]
    for f in (tc.kwok_stages, tc.kwok_crds):
        if not f.is_file():
            missing.append(str(f))
    if missing and required:
        raise LabError(
            f"the toolchain in {tc.dir} lacks {', '.join(missing)}; build it with:\n"
            "  toolchain/build kube-apiserver kube-controller-manager kube-scheduler etcd kwok"
        )
    return tc


def binary_name(tc: Toolchain | None, name: str) -> Path | str:
    """The binary a lab process runs, to recognise it by: its path in the toolchain, or its bare name
    when the toolchain cannot be located."""
    return tc.bin(name) if tc else name
