"""Root CA rotation: what each phase writes into every cluster's ``cacerts``, and the names it uses.

Istio (1.30) rotates a plugged-in root without breaking mTLS only in three steps, each of which must
hold in every cluster before the next starts (tests/integration/security/cacert_rotation; mTLS checks a
peer's certificate against the proxy's ``ROOTCA`` only):

``trust-both``
    ``root-cert.pem`` = current root + next root; the current intermediate still signs. istiod reloads
    the bundle and pushes it to every proxy over PCDS (``ISTIO_MULTIROOT_MESH`` on istiod,
    ``PROXY_CONFIG_XDS_AGENT`` on the proxy: ``MULTI_ROOT_VALUES``); each proxy then trusts both roots.
``sign-with-next``
    A new intermediate (new key) signed by the next root signs. ``root-cert.pem`` = next + current: the
    same two roots in other bytes, so istiod pushes the bundle again and every proxy re-requests its
    certificate at once, now chaining to the next root.
``drop-old``
    ``root-cert.pem`` = next root only.

The rotation is finished by raising ``CASettings.generation`` by one, making the next root the root and
removing the rotation: that writes exactly what ``drop-old`` wrote, and the old root leaves the state.
``trust_gate`` checks, before a phase changes anything, that the clusters allow it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .options import ROTATION_PHASES, CASettings

#: istiod and proxy settings a rotation needs: istiod accepts a changed root bundle and pushes it as the
#: proxies' trust bundle (``ISTIO_MULTIROOT_MESH``); each proxy's agent takes that push and requests a new
#: certificate at once (``PROXY_CONFIG_XDS_AGENT``; injected into pods created after it is set).
MULTIROOT_ENV = "ISTIO_MULTIROOT_MESH"
XDS_AGENT_ENV = "PROXY_CONFIG_XDS_AGENT"
MULTI_ROOT_VALUES: dict[str, Any] = {
    "pilot": {"env": {MULTIROOT_ENV: "true"}},
    "meshConfig": {"defaultConfig": {"proxyMetadata": {XDS_AGENT_ENV: "true"}}},
}


def multi_root(ca: CASettings) -> bool:
    """Whether istiod and the proxies are set up for a root rotation: during one, and ever after the first
    (so the next needs no proxy restarts and finishing one changes nothing but the state)."""
    return ca.rotation is not None or ca.generation > 0


def root_ca_name(mesh: str, generation: int) -> str:
    """The logical name of the root of ``generation``: generation 0 keeps the name roots always had."""
    return f"{mesh}-root-ca" if generation == 0 else f"{mesh}-root-ca-g{generation}"


def intermediate_name(cluster_ca: str, generation: int, key_generation: int = 0) -> str:
    """The prefix of the names of a cluster's intermediate key and certificate signed by the root of
    ``generation``, with a key of ``key_generation`` (``CASettings.intermediate_generation``; both 0: the
    names intermediates always had)."""
    name = cluster_ca if generation == 0 else f"{cluster_ca}-g{generation}"
    return name if key_generation == 0 else f"{name}-k{key_generation}"


def bundle(pems: Sequence[str]) -> str:
    """``root-cert.pem`` holding ``pems`` in order, one PEM block each (trailing blank lines dropped)."""
    return "".join(p.strip() + "\n" for p in pems)


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def split_pems(text: str) -> list[str]:
    """The certificates of a PEM bundle, each as ``bundle`` writes it."""
    return [m.group(0) + "\n" for m in _PEM_CERT.finditer(text)]


@dataclass(frozen=True)
class PhasePlan:
    """What a phase writes: ``root-cert.pem``'s roots in order, and whether the next root's intermediate
    signs (otherwise the current one does)."""

    phase: str
    trust: tuple[str, ...]
    next_signs: bool

    @property
    def root_cert_pem(self) -> str:
        return bundle(self.trust)

    @property
    def signing_root(self) -> str:
        """Which root the signing intermediate chains to: ``current`` or ``next``."""
        return "next" if self.next_signs else "current"


def phase_plan(phase: str, current: str, next_root: str) -> PhasePlan:
    """The plan of ``phase`` (one of ``ROTATION_PHASES``) for the roots ``current`` and ``next_root`` (PEM)."""
    if phase == "trust-both":
        return PhasePlan(phase, (current, next_root), next_signs=False)
    if phase == "sign-with-next":
        return PhasePlan(phase, (next_root, current), next_signs=True)
    if phase == "drop-old":
        return PhasePlan(phase, (next_root,), next_signs=True)
    raise ValueError(f"{phase!r} is not a rotation phase; phases: {', '.join(ROTATION_PHASES)}")


PHASE_SUMMARIES = {
    "trust-both": "every cluster's cacerts trusts the current root and the next; the current intermediates still sign",
    "sign-with-next": "every cluster signs with a new intermediate of the next root; both roots are still trusted",
    "drop-old": "every cluster trusts only the next root",
}
