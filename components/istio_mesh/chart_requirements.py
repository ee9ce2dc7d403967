"""What the mesh requires of the values of Istio's ``istiod`` and ``gateway`` charts, rule by rule.

Each ``Required`` names a path in a chart's values, the value the mesh needs there, what decides it (a
setting, or the chart's default the mesh relies on) and why. The rules the mesh ``sets`` are exactly the
values the program has always given the charts; the others are chart defaults a user value must not
change (the plugged-in CA above all). ``chart_values`` merges users' values under them and refuses the
ones that contradict them. The charts read here are Istio's own, from its Go module
(``manifests/charts/istio-control/istio-discovery``, ``manifests/charts/gateway``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .constants import (
    CROSS_NETWORK_PORT,
    EASTWEST_RELEASE,
    EASTWEST_SELECTOR,
    ISTIO_NAMESPACE,
    ISTIOD_SERVER_NAME,
    ISTIOD_XDS_TLS_PORT,
    NETWORK_LABEL,
    SKIP_AWAIT_ANNOTATION,
    TIMEOUT_ANNOTATION,
)
from .options import GatewaySettings

#: The istiod chart copies everything under ``pilot`` over the top level after its profiles
#: (``templates/zzy_descope_legacy.yaml``: ``mustMergeOverwrite $.Values (index $.Values "pilot")``), so
#: ``pilot.global.meshID`` would set ``global.meshID``: every istiod rule is checked under it too.
ISTIOD_LEGACY_PREFIX = "pilot"


@dataclass(frozen=True)
class Required:
    """One value the mesh requires at ``path`` of a chart's values.

    ``sets``: the mesh writes ``value`` there itself (over the user's values). Otherwise it relies on the
    chart leaving it at its default, ``value``, and only refuses another one. ``accepted`` lists other
    values that mean the same (e.g. ``""``, the chart's "not set").
    """

    path: tuple[str, ...]
    value: Any
    #: What decides the value, for the message: a setting and its value, or "the chart's default".
    source: str
    #: Why the mesh needs it, for the message (a clause: "which ..." or "without which ...").
    why: str
    accepted: tuple[Any, ...] = ()
    sets: bool = True

    def accepts(self, value: Any) -> bool:
        """True when ``value`` is the required one or means the same (booleans are not numbers here)."""
        return any(_same(value, v) for v in (self.value, *self.accepted))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@dataclass(frozen=True)
class SettingNames:
    """How one interface spells the settings a message names; ``[]`` stands for the cluster's index."""

    mesh_id: str
    hub: str
    tag: str
    cluster_name: str
    network: str
    service_type: str
    external_ips: str
    #: Where the user's values are: mesh-wide and per cluster, for each chart.
    istio_values: str
    cluster_istio_values: str
    gateway_values: str
    cluster_gateway_values: str

    def at(self, name: str, index: int | None) -> str:
        """``name`` for the cluster at ``index`` (``clusters[1].network``); unchanged when ``index`` is None."""
        return name if index is None else name.replace("[]", f"[{index}]", 1)


#: The plugin schema's spelling, which is the stack config's.
SCHEMA_NAMES = SettingNames(
    mesh_id="meshId",
    hub="istio.hub",
    tag="istio.tag",
    cluster_name="clusters[].name",
    network="clusters[].network",
    service_type="clusters[].eastWestGateway.serviceType",
    external_ips="clusters[].eastWestGateway.externalIPs",
    istio_values="istio.values",
    cluster_istio_values="clusters[].istio.values",
    gateway_values="eastWestGateway.values",
    cluster_gateway_values="clusters[].eastWestGateway.values",
)
#: ``MultiPrimaryMeshArgs``' spelling (Python field names).
ARGS_NAMES = SettingNames(
    mesh_id="mesh_id",
    hub="istio.hub",
    tag="istio.tag",
    cluster_name="clusters[].name",
    network="clusters[].network",
    service_type="clusters[].gateway.service_type",
    external_ips="clusters[].gateway.external_ips",
    istio_values="istio.values",
    cluster_istio_values="clusters[].istio.values",
    gateway_values="east_west_gateway.values",
    cluster_gateway_values="clusters[].gateway.values",
)


def show_value(value: Any) -> str:
    """A value as the user wrote it (JSON: ``"x"``, ``null``, ``["a"]``)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def istiod_requirements(
    *,
    mesh_id: str,
    cluster_name: str,
    network: str,
    hub: str,
    tag: str,
    names: SettingNames = ARGS_NAMES,
    index: int | None = None,
) -> tuple[Required, ...]:
    """What the mesh requires of one cluster's ``istiod`` chart values (the chart in Istio's module:
    ``manifests/charts/istio-control/istio-discovery``). The ``sets`` ones, in order, are exactly the
    values the program has always given the chart."""
    cluster = names.at(names.cluster_name, index)
    net = names.at(names.network, index)
    default = "(the chart's default)"
    cacerts = "istiod would not sign with the plugged-in CA (cacerts), and trust across clusters breaks"
    rules = [
        # The values the mesh writes (ISTIO_FACTS: "Network and control plane").
        Required(("global", "hub"), hub, f"{names.hub} {show_value(hub)}", "which sets the registry of Istio's images"),
        Required(("global", "tag"), tag, f"{names.tag} {show_value(tag)}", "which sets the tag of Istio's images"),
        Required(
            ("global", "meshID"),
            mesh_id,
            f"{names.mesh_id} {show_value(mesh_id)}",
            "which the mesh sets in every cluster",
        ),
        Required(
            ("global", "multiCluster", "clusterName"),
            cluster_name,
            f"{cluster} {show_value(cluster_name)}",
            "which is istiod's cluster ID and the key its peers' remote secrets are read by",
        ),
        Required(
            ("global", "network"),
            network,
            f"{net} {show_value(network)}",
            "which is this cluster's network (topology.istio.io/network)",
        ),
        Required(
            ("global", "istioNamespace"),
            ISTIO_NAMESPACE,
            f"the mesh's namespace {show_value(ISTIO_NAMESPACE)}",
            "which holds cacerts and the remote secrets istiod reads",
        ),
        # What the mesh relies on the chart's defaults for.
        # templates/deployment.yaml names the Deployment istiod-<revision>: the cacerts rollout patches
        # `istiod`, and the default revision's injector is what injects the east-west gateway and samples.
        Required(
            ("revision",),
            "",
            f'"" {default}',
            "which installs the default revision: Deployment istiod, whose injector serves the mesh's gateways",
            sets=False,
        ),
        # templates/deployment.yaml: image `{{ .Values.hub | default .Values.global.hub }}/...:{{ .Values.tag
        # | default .Values.global.tag }}`: a top-level hub or tag overrides istio.hub/istio.tag for istiod.
        Required(
            ("hub",),
            hub,
            f"{names.hub} {show_value(hub)}",
            "which sets istiod's image registry (set it there)",
            accepted=("",),
            sets=False,
        ),
        Required(
            ("tag",),
            tag,
            f"{names.tag} {show_value(tag)}",
            "which sets istiod's image tag (set it there)",
            accepted=("",),
            sets=False,
        ),
        # templates/deployment.yaml renders no istiod Deployment with istiodRemote.enabled (a remote cluster).
        Required(
            ("istiodRemote", "enabled"),
            False,
            f"false {default}",
            "which makes this cluster a primary: with true the chart renders no istiod",
            sets=False,
        ),
        # The plugged-in CA. templates/deployment.yaml sets istiod's PILOT_CERT_PROVIDER from
        # global.pilotCertProvider and then renders every `env` entry; istiod signs its serving certificate
        # with its CA only when it is `istiod` (pilot/pkg/bootstrap/server.go), and the injector mounts the
        # CA's root into proxies only then (files/injection-template.yaml).
        Required(
            ("global", "pilotCertProvider"),
            "istiod",
            f'"istiod" {default}',
            f"without which {cacerts}",
            sets=False,
        ),
        Required(("env", "PILOT_CERT_PROVIDER"), "istiod", '"istiod"', f"without which {cacerts}", sets=False),
        # pilot/pkg/bootstrap/istio_ca.go: EXTERNAL_CA=ISTIOD_RA_KUBERNETES_API makes istiod a registration
        # authority for a Kubernetes signer instead of a CA signing with cacerts.
        Required(("env", "EXTERNAL_CA"), "", '"" (no external CA)', f"without which {cacerts}", sets=False),
        # pilot/pkg/features/pilot.go ENABLE_CA_SERVER=false: no CA in istiod at all (server.go maybeCreateCA).
        Required(
            ("env", "ENABLE_CA_SERVER"),
            "true",
            '"true" (istiod\'s default)',
            f"without which {cacerts}",
            accepted=(True, "True", "TRUE", "1", "t", "T"),
            sets=False,
        ),
        # istio_ca.go ROOT_CA_DIR (default ./etc/cacerts): where istiod reads the CA the chart mounts from the
        # cacerts Secret at /etc/cacerts (templates/deployment.yaml).
        Required(
            ("env", "ROOT_CA_DIR"),
            "/etc/cacerts",
            '"/etc/cacerts" (where the chart mounts cacerts)',
            f"without which {cacerts}",
            accepted=("./etc/cacerts",),
            sets=False,
        ),
        # files/injection-template.yaml: proxies' CA_ADDR is global.caAddress, else istiod's own 15012.
        Required(
            ("global", "caAddress"),
            "",
            f'"" {default}: istiod at {ISTIOD_SERVER_NAME}:{ISTIOD_XDS_TLS_PORT}',
            "which gives workloads certificates signed with the plugged-in CA (cacerts)",
            accepted=(f"{ISTIOD_SERVER_NAME}:{ISTIOD_XDS_TLS_PORT}",),
            sets=False,
        ),
        # files/injection-template.yaml: caName GkeWorkloadCertificate gives proxies certificates from GKE.
        Required(
            ("global", "caName"),
            "",
            f'"" {default}',
            "which gives workloads certificates signed with the plugged-in CA (cacerts)",
            sets=False,
        ),
        # istiod takes CLUSTER_ID from global.multiCluster.clusterName (templates/deployment.yaml).
        Required(
            ("env", "CLUSTER_ID"),
            cluster_name,
            f"{cluster} {show_value(cluster_name)}",
            "which is istiod's cluster ID (set through global.multiCluster.clusterName)",
            sets=False,
        ),
    ]
    mirrored = [
        Required((ISTIOD_LEGACY_PREFIX, *r.path), r.value, r.source, r.why, (*r.accepted,), sets=False) for r in rules
    ]
    return (*rules, *mirrored)


def gateway_service_annotations(gateway: GatewaySettings) -> dict[str, str]:
    """How Pulumi waits for the gateway's Service (annotations on it, through the chart's values)."""
    if gateway.service_type == "LoadBalancer":
        if gateway.external_ips:
            # The address comes from spec.externalIPs (set by a transform), not from a load-balancer
            # controller: Pulumi's Service await would otherwise wait for status.loadBalancer.ingress forever.
            return {SKIP_AWAIT_ANNOTATION: "true"}
        # Pulumi's Service await: the load balancer's address (the stack exports it), at most this long.
        return {TIMEOUT_ANNOTATION: str(gateway.load_balancer_timeout_seconds)}
    # The address is the cluster IP or the nodes'; the Deployment's await covers the pods.
    return {SKIP_AWAIT_ANNOTATION: "true"}


def gateway_requirements(
    *, network: str, gateway: GatewaySettings, names: SettingNames = ARGS_NAMES, index: int | None = None
) -> tuple[Required, ...]:
    """What the mesh requires of one cluster's east-west ``gateway`` chart values (Istio's
    ``manifests/charts/gateway``). The ``sets`` ones, in order, are exactly what the program has always
    given the chart."""
    net = f"{names.at(names.network, index)} {show_value(network)}"
    selects = "which gives the pods the labels the cross-network Gateway selects (istio: eastwestgateway)"
    rules = [
        # networkGateway renders the network label on pods and Service, ISTIO_META_REQUESTED_NETWORK_VIEW and
        # the ports 15021/15443/15012/15017 (templates/deployment.yaml, service.yaml).
        Required(
            ("networkGateway",), network, net, "which makes this the network's gateway (label, network view, 15443)"
        ),
        Required(
            ("service", "type"),
            gateway.service_type,
            f"{names.at(names.service_type, index)} {show_value(gateway.service_type)}",
            "which sets the gateway Service's type",
        ),
        *(
            Required(
                ("service", "annotations", key),
                value,
                f"the mesh's {show_value(value)}",
                "which tells Pulumi how to wait for the gateway's address",
            )
            for key, value in gateway_service_annotations(gateway).items()
        ),
        # The chart has service.externalIPs; the mesh puts its own on the rendered Service (and exports the
        # first as the gateway's address).
        Required(
            ("service", "externalIPs"),
            list(gateway.external_ips),
            f"{names.at(names.external_ips, index)} {show_value(list(gateway.external_ips))}",
            "which the mesh puts on the gateway's Service and exports as its address (set them there)",
            sets=False,
        ),
        # templates/_helpers.tpl: the app/istio labels come from labels.app/labels.istio, else the name
        # (values `name`, else the release name istio-eastwestgateway).
        Required(("name",), EASTWEST_RELEASE, f"{show_value(EASTWEST_RELEASE)}", selects, accepted=("",), sets=False),
        Required(
            ("labels", "istio"),
            EASTWEST_SELECTOR["istio"],
            f"{show_value(EASTWEST_SELECTOR['istio'])}",
            selects,
            sets=False,
        ),
        Required(("labels", "app"), EASTWEST_RELEASE, f"{show_value(EASTWEST_RELEASE)}", selects, sets=False),
        Required(("labels", NETWORK_LABEL), network, net, "which is this gateway's network", sets=False),
        Required(
            ("env", "ISTIO_META_REQUESTED_NETWORK_VIEW"), network, net, "which is this gateway's network", sets=False
        ),
        # templates/_helpers.tpl: a revision labels the pods istio.io/rev=<revision>, injected only by that
        # revision's istiod; the mesh installs the default revision.
        Required(
            ("revision",),
            "",
            '"" (the chart\'s default)',
            "which has the mesh's istiod (the default revision) inject the gateway",
            sets=False,
        ),
        # istiod sends a remote network's traffic to its gateway's port 15443, where the cross-network
        # Gateway's AUTO_PASSTHROUGH server listens (ISTIO_FACTS: "East-west gateway").
        Required(
            ("networkGatewayPorts", "tls", "port"),
            CROSS_NETWORK_PORT,
            str(CROSS_NETWORK_PORT),
            "which is where other networks' istiods send this network's traffic",
            sets=False,
        ),
    ]
    return tuple(rules)
