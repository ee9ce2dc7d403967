"""Users' chart values (istiod and east-west gateway, mesh-wide and per cluster): deep-merged under the
values the mesh requires, refused where they contradict them, through the stack config, the package's
Args and the plugin alike, and exactly today's chart values when none are given."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest
from support.mocks import Recorded, run_program
from support.program import mesh_program

from istio_mesh import (
    CASettings,
    ClusterIstioSettings,
    GatewaySettings,
    IstioSettings,
    MeshCluster,
    MeshGatewaySettings,
    MultiPrimaryMesh,
    MultiPrimaryMeshArgs,
)
from istio_mesh.chart_requirements import SCHEMA_NAMES, gateway_requirements, istiod_requirements
from istio_mesh.chart_values import chart_values, conflicts, deep_merge
from istio_mesh.plugin import mesh_args as plugin_mesh_args
from istio_mesh.plugin import schema
from stack_config import ConfigError, parse_settings

CHART = "kubernetes:helm.sh/v4:Chart"

#: What the lab will set through ``istio.values`` (upstream Envoy as a data plane: ISTIO_FACTS, "Data plane
#: with upstream Envoy").
LAB_VALUES = {
    "pilot": {"env": {"PILOT_ENABLE_METADATA_EXCHANGE": "false", "PILOT_ENABLE_ALPN_FILTER": "false"}},
    "meshConfig": {"defaultProviders": {"metrics": []}},
}


def _raw(kubeconfigs: Any, n: int = 2, **extra: Any) -> dict[str, Any]:
    return {"meshId": "mesh1", "clusters": kubeconfigs(n), **extra}


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(raw)
    return err.value.problems


def _build(settings: Any) -> Recorded:
    return run_program(mesh_program(settings))


def _istiod(rec: Recorded, cluster: str) -> dict[str, Any]:
    return rec.one(CHART, name_contains=f"mesh-{cluster}-istiod").inputs["values"]


def _gateway(rec: Recorded, cluster: str) -> dict[str, Any]:
    return rec.one(CHART, name_contains=f"mesh-{cluster}-eastwest").inputs["values"]


def _nested(path: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for ``"a.b"`` (a key with a dot in it is written ``a|b.c``: ``|`` splits)."""
    keys = path.split("|") if "|" in path else path.split(".")
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


# ---- merging ------------------------------------------------------------------------------------------


def test_deep_merge_merges_mappings_and_replaces_lists_and_scalars() -> None:
    base = {"a": {"b": 1, "c": [1, 2], "d": {"e": "x"}}, "f": 1, "g": {"h": 1}}
    override: dict[str, Any] = {"a": {"c": [3], "d": {"i": "y"}}, "f": {"j": 2}, "g": "scalar"}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 1, "c": [3], "d": {"e": "x", "i": "y"}}, "f": {"j": 2}, "g": "scalar"}
    # Neither input is changed, and the result shares nothing with them.
    assert base == {"a": {"b": 1, "c": [1, 2], "d": {"e": "x"}}, "f": 1, "g": {"h": 1}}
    assert override == {"a": {"c": [3], "d": {"i": "y"}}, "f": {"j": 2}, "g": "scalar"}
    merged["a"]["c"].append(4)
    assert override["a"]["c"] == [3]


def test_the_mesh_values_go_over_the_users() -> None:
    requirements = istiod_requirements(mesh_id="m", cluster_name="c1", network="n1", hub="h", tag="t")
    user: list[dict[str, Any]] = [
        {"global": {"logAsJson": True, "network": "other"}, "replicaCount": 2},
        {"replicaCount": 3},
    ]
    values = chart_values(user, requirements)
    assert values["replicaCount"] == 3
    assert values["global"] == {
        "logAsJson": True,
        "hub": "h",
        "tag": "t",
        "meshID": "m",
        "multiCluster": {"clusterName": "c1"},
        "network": "n1",
        "istioNamespace": "istio-system",
    }


# ---- no values: today's chart values, exactly ---------------------------------------------------------

#: The chart values the program gave before user values existed (commit 4cddd4a), written out: a stack
#: deployed then must preview with no change.
TODAY_ISTIOD = {
    "global": {
        "hub": "docker.io/istio",
        "tag": "1.30.4",
        "meshID": "mesh1",
        "multiCluster": {"clusterName": "cluster1"},
        "network": "network1",
        "istioNamespace": "istio-system",
    }
}
TODAY_GATEWAY_EXTERNAL_IPS = {
    "networkGateway": "network1",
    "service": {"type": "LoadBalancer", "annotations": {"pulumi.com/skipAwait": "true"}},
}


def test_without_values_the_charts_get_exactly_todays_values(mesh_settings: Any) -> None:
    rec = _build(mesh_settings())
    assert _istiod(rec, "cluster1") == TODAY_ISTIOD
    assert _gateway(rec, "cluster1") == TODAY_GATEWAY_EXTERNAL_IPS
    second = _istiod(rec, "cluster2")
    assert second["global"]["multiCluster"] == {"clusterName": "cluster2"} and second["global"]["network"] == "network2"
    assert set(second) == {"global"} and set(second["global"]) == set(TODAY_ISTIOD["global"])


@pytest.mark.parametrize(
    ("gateway", "today"),
    [
        (
            GatewaySettings(),
            {
                "networkGateway": "n1",
                "service": {"type": "LoadBalancer", "annotations": {"pulumi.com/timeoutSeconds": "600"}},
            },
        ),
        (
            GatewaySettings(service_type="NodePort"),
            {"networkGateway": "n1", "service": {"type": "NodePort", "annotations": {"pulumi.com/skipAwait": "true"}}},
        ),
        (
            GatewaySettings(load_balancer_timeout_seconds=90),
            {
                "networkGateway": "n1",
                "service": {"type": "LoadBalancer", "annotations": {"pulumi.com/timeoutSeconds": "90"}},
            },
        ),
    ],
)
def test_without_values_every_kind_of_gateway_gets_todays_values(gateway: GatewaySettings, today: Any) -> None:
    from istio_mesh.east_west_gateway import EastWestGatewayArgs, gateway_values

    assert gateway_values(EastWestGatewayArgs(network="n1", istio=IstioSettings(), gateway=gateway)) == today


# ---- what the mesh requires: refused when contradicted, accepted when equal --------------------------

#: Every istiod value the mesh requires, with a contradicting value and what the message must name.
ISTIOD_CONFLICTS = [
    ("global.meshID", "x", 'meshId "mesh1"'),
    ("global.multiCluster.clusterName", "other", 'clusters[0].name "cluster1"'),
    ("global.network", "network9", 'clusters[0].network "network1"'),
    ("global.hub", "registry.example/istio", 'istio.hub "docker.io/istio"'),
    ("global.tag", "1.29.0", 'istio.tag "1.30.4"'),
    ("global.istioNamespace", "istio-mesh", '"istio-system"'),
    ("revision", "canary", "default revision"),
    ("hub", "registry.example/istio", 'istio.hub "docker.io/istio"'),
    ("tag", "1.29.0", 'istio.tag "1.30.4"'),
    ("istiodRemote.enabled", True, "primary"),
    ("global.pilotCertProvider", "kubernetes", "cacerts"),
    ("env.PILOT_CERT_PROVIDER", "kubernetes", "cacerts"),
    ("env.EXTERNAL_CA", "ISTIOD_RA_KUBERNETES_API", "cacerts"),
    ("env.ENABLE_CA_SERVER", "false", "cacerts"),
    ("env.ROOT_CA_DIR", "/etc/other", "cacerts"),
    ("global.caAddress", "ca.example:443", "cacerts"),
    ("global.caName", "GkeWorkloadCertificate", "cacerts"),
    ("env.CLUSTER_ID", "other", 'clusters[0].name "cluster1"'),
    # The chart copies pilot.* over the top level (templates/zzy_descope_legacy.yaml).
    ("pilot.global.meshID", "x", 'meshId "mesh1"'),
    ("pilot.env.EXTERNAL_CA", "ISTIOD_RA_KUBERNETES_API", "cacerts"),
    ("pilot.revision", "canary", "default revision"),
]


@pytest.mark.parametrize(("path", "value", "names"), ISTIOD_CONFLICTS)
def test_each_contradicting_istiod_value_is_refused_naming_its_key(
    kubeconfigs: Any, path: str, value: Any, names: str
) -> None:
    problems = _problems(_raw(kubeconfigs, istio={"values": _nested(path, value)}))
    mine = [p for p in problems if p.startswith(f"istio.values.{path}: {json.dumps(value)} contradicts ")]
    assert mine, problems
    assert names in mine[0] and mine[0].endswith("; remove it"), mine


def test_the_message_says_what_the_mesh_sets_and_why(kubeconfigs: Any) -> None:
    problems = _problems(_raw(kubeconfigs, istio={"values": {"global": {"meshID": "x"}}}))
    # Once, although both clusters refuse it.
    assert problems == [
        'istio.values.global.meshID: "x" contradicts meshId "mesh1", which the mesh sets in every cluster; remove it'
    ]


#: Every gateway value the mesh requires (cluster1: network1, LoadBalancer with externalIPs 10.0.1.10).
GATEWAY_CONFLICTS = [
    ("networkGateway", "network9", 'clusters[0].network "network1"'),
    ("service.type", "NodePort", 'clusters[0].eastWestGateway.serviceType "LoadBalancer"'),
    ("service|annotations|pulumi.com/skipAwait", "false", "wait for the gateway's address"),
    ("service.externalIPs", ["10.9.9.9"], 'clusters[0].eastWestGateway.externalIPs ["10.0.1.10"]'),
    ("name", "istio-ingressgateway", "cross-network Gateway selects"),
    ("labels.istio", "ingressgateway", "cross-network Gateway selects"),
    ("labels.app", "gw", "cross-network Gateway selects"),
    ("labels|topology.istio.io/network", "network9", 'clusters[0].network "network1"'),
    ("env.ISTIO_META_REQUESTED_NETWORK_VIEW", "network9", 'clusters[0].network "network1"'),
    ("revision", "canary", "default revision"),
    ("networkGatewayPorts.tls.port", 15444, "15443"),
]


def _shown(path: str) -> str:
    keys = path.split("|") if "|" in path else path.split(".")
    return "".join(f".{k}" if k.replace("-", "").replace("_", "").isalnum() else f"[{json.dumps(k)}]" for k in keys)


@pytest.mark.parametrize(("path", "value", "names"), GATEWAY_CONFLICTS)
def test_each_contradicting_gateway_value_is_refused_naming_its_key(
    kubeconfigs: Any, path: str, value: Any, names: str
) -> None:
    raw = _raw(kubeconfigs)
    raw["clusters"][0]["eastWestGateway"]["values"] = _nested(path, value)
    problems = _problems(raw)
    where = f"clusters[0].eastWestGateway.values{_shown(path)}"
    mine = [p for p in problems if p.startswith(f"{where}: {json.dumps(value)} contradicts ")]
    assert mine, problems
    assert names in mine[0], mine


def test_every_rule_refuses_another_value_and_accepts_its_own() -> None:
    """Each requirement, whatever it is, is enforced: a value it does not accept is reported at its path."""
    rules = [
        *istiod_requirements(mesh_id="m", cluster_name="c", network="n", hub="h", tag="t"),
        *gateway_requirements(network="n", gateway=GatewaySettings(external_ips=("10.0.0.1",))),
    ]
    assert len(rules) > 40
    for rule in rules:
        wrong = _nested("|".join(rule.path), "a value nobody requires")
        assert [w for w, _ in conflicts([("v", wrong)], [rule])] == ["v" + _shown("|".join(rule.path))], rule
        right = _nested("|".join(rule.path), rule.value)
        assert conflicts([("v", right)], [rule]) == [], rule


def test_values_equal_to_the_required_ones_are_accepted(kubeconfigs: Any) -> None:
    raw = _raw(
        kubeconfigs,
        istio={
            "values": {
                "global": {
                    "meshID": "mesh1",
                    "hub": "docker.io/istio",
                    "tag": "1.30.4",
                    "istioNamespace": "istio-system",
                    "pilotCertProvider": "istiod",
                    "caAddress": "istiod.istio-system.svc:15012",
                    "caName": "",
                },
                "revision": "",
                "hub": "",
                "istiodRemote": {"enabled": False},
                "pilot": {"env": {"ENABLE_CA_SERVER": "true", "ROOT_CA_DIR": "./etc/cacerts"}},
            }
        },
    )
    raw["clusters"][0]["istio"] = {
        "values": {"global": {"network": "network1", "multiCluster": {"clusterName": "cluster1"}}}
    }
    raw["clusters"][1]["eastWestGateway"]["values"] = {
        "networkGateway": "network2",
        "service": {"type": "LoadBalancer", "externalIPs": ["10.0.2.10"]},
        "labels": {"istio": "eastwestgateway", "topology.istio.io/network": "network2"},
        "networkGatewayPorts": {"tls": {"port": 15443}},
    }
    rec = _build(parse_settings(raw))
    assert _istiod(rec, "cluster1")["global"]["caAddress"] == "istiod.istio-system.svc:15012"
    assert _gateway(rec, "cluster2")["labels"] == {"istio": "eastwestgateway", "topology.istio.io/network": "network2"}


def test_a_value_that_is_not_an_object_where_the_mesh_sets_one_is_refused(kubeconfigs: Any) -> None:
    problems = _problems(_raw(kubeconfigs, istio={"values": {"global": "x"}}))
    assert problems == [
        'istio.values.global: "x" is not an object, but the mesh needs hub in it: istio.hub "docker.io/istio", '
        "which sets the registry of Istio's images; remove it"
    ]


# ---- mesh-wide and per cluster ------------------------------------------------------------------------


def test_a_clusters_values_win_over_the_mesh_wide_ones(kubeconfigs: Any) -> None:
    raw = _raw(
        kubeconfigs,
        istio={"values": {"replicaCount": 2, "meshConfig": {"accessLogFile": "/dev/stdout", "x": [1, 2]}}},
        eastWestGateway={"values": {"replicaCount": 1, "resources": {"requests": {"cpu": "50m"}}}},
    )
    raw["clusters"][1]["istio"] = {"values": {"replicaCount": 3, "meshConfig": {"x": [3]}}}
    raw["clusters"][1]["eastWestGateway"]["values"] = {"resources": {"limits": {"cpu": "1"}}}
    rec = _build(parse_settings(raw))
    one, two = _istiod(rec, "cluster1"), _istiod(rec, "cluster2")
    assert (one["replicaCount"], one["meshConfig"]) == (2, {"accessLogFile": "/dev/stdout", "x": [1, 2]})
    assert (two["replicaCount"], two["meshConfig"]) == (3, {"accessLogFile": "/dev/stdout", "x": [3]})
    assert two["global"]["network"] == "network2"  # and the mesh's values over both
    assert _gateway(rec, "cluster1")["resources"] == {"requests": {"cpu": "50m"}}
    assert _gateway(rec, "cluster2")["resources"] == {"requests": {"cpu": "50m"}, "limits": {"cpu": "1"}}
    assert _gateway(rec, "cluster2")["replicaCount"] == 1 and _gateway(rec, "cluster2")["networkGateway"] == "network2"


def test_a_mesh_wide_value_is_refused_in_the_cluster_it_contradicts_unless_that_cluster_overrides_it(
    kubeconfigs: Any,
) -> None:
    raw = _raw(kubeconfigs, istio={"values": {"global": {"network": "network1"}}})
    assert _problems(raw) == [
        'istio.values.global.network: "network1" contradicts clusters[1].network "network2", which is this '
        "cluster's network (topology.istio.io/network); remove it"
    ]
    raw["clusters"][1]["istio"] = {"values": {"global": {"network": "network2"}}}
    assert parse_settings(raw).clusters[1].istio.values == {"global": {"network": "network2"}}
    raw["clusters"][1]["istio"] = {"values": {"global": {"network": "network7"}}}
    assert _problems(raw) == [
        'clusters[1].istio.values.global.network: "network7" contradicts clusters[1].network "network2", which is '
        "this cluster's network (topology.istio.io/network); remove it"
    ]


def test_the_labs_upstream_envoy_values_are_accepted_and_reach_every_istiod(kubeconfigs: Any) -> None:
    settings = parse_settings(_raw(kubeconfigs, istio={"values": LAB_VALUES}))
    rec = _build(settings)
    for cluster in ("cluster1", "cluster2"):
        values = _istiod(rec, cluster)
        assert values["pilot"]["env"] == {
            "PILOT_ENABLE_METADATA_EXCHANGE": "false",
            "PILOT_ENABLE_ALPN_FILTER": "false",
        }
        assert values["meshConfig"] == {"defaultProviders": {"metrics": []}}
        assert values["global"]["meshID"] == "mesh1"
        # Nothing else of the user's reaches the gateway.
        assert set(_gateway(rec, cluster)) == {"networkGateway", "service"}


# ---- the stack config's own errors --------------------------------------------------------------------


def test_stack_config_mistakes_in_values_name_their_path(kubeconfigs: Any) -> None:
    raw = _raw(kubeconfigs, istio={"values": "replicaCount=2"}, eastWestGateway={"values": [1], "serviceType": "X"})
    raw["clusters"][0]["istio"] = {"valuez": {}}
    raw["clusters"][1]["istio"] = {"values": 3}
    raw["clusters"][1]["eastWestGateway"]["values"] = "x"
    problems = _problems(raw)
    assert any(p.startswith("istio.values: expected an object of Helm values for the istiod chart") for p in problems)
    assert any(
        p.startswith("eastWestGateway.values: expected an object of Helm values for the gateway") for p in problems
    )
    assert any(
        p.startswith("eastWestGateway.serviceType: unknown setting; valid settings here: values") for p in problems
    )
    assert any(p.startswith("clusters[0].istio.valuez: unknown setting; valid settings here: values") for p in problems)
    assert any(p.startswith("clusters[1].istio.values: expected an object") for p in problems)
    assert any(p.startswith("clusters[1].eastWestGateway.values: expected an object") for p in problems)
    assert len(problems) == 6, problems


# ---- the package's Args and the plugin ----------------------------------------------------------------


def _mesh_clusters(mesh_settings: Any, **gateway: Any) -> list[MeshCluster]:
    return [
        MeshCluster(
            name=c.name,
            network=c.network,
            api_server=c.api_server,
            kubeconfig=c.kubeconfig,
            gateway=GatewaySettings(external_ips=(f"10.0.{i}.10",), **gateway),
        )
        for i, c in enumerate(mesh_settings(2).clusters, start=1)
    ]


def test_the_args_carry_the_values_to_the_charts(mesh_settings: Any) -> None:
    clusters = _mesh_clusters(mesh_settings, values={"podAnnotations": {"team": "mesh"}})
    clusters[1] = dataclasses.replace(clusters[1], istio=ClusterIstioSettings(values={"replicaCount": 3}))
    args = MultiPrimaryMeshArgs(
        mesh_id="mesh1",
        clusters=clusters,
        ca=CASettings(protect=False),
        istio=IstioSettings(values={"replicaCount": 2, **LAB_VALUES}),
        east_west_gateway=MeshGatewaySettings(values={"podAnnotations": {"owner": "platform"}}),
    )

    def build() -> Mapping[str, pulumi.Output[Any]]:
        return {"clusters": MultiPrimaryMesh("mesh", args).clusters}

    rec = run_program(build)
    assert _istiod(rec, "cluster1")["replicaCount"] == 2 and _istiod(rec, "cluster2")["replicaCount"] == 3
    assert _istiod(rec, "cluster2")["pilot"] == LAB_VALUES["pilot"]
    assert _gateway(rec, "cluster1")["podAnnotations"] == {"owner": "platform", "team": "mesh"}


def test_the_args_refuse_contradicting_values_in_their_own_spelling(mesh_settings: Any) -> None:
    clusters = _mesh_clusters(mesh_settings)
    clusters[1] = dataclasses.replace(
        clusters[1],
        gateway=GatewaySettings(values={"networkGateway": "elsewhere"}),
        istio=ClusterIstioSettings(values=["not", "a", "mapping"]),  # type: ignore[arg-type]
    )
    args = MultiPrimaryMeshArgs(
        mesh_id="mesh1",
        clusters=clusters,
        istio=IstioSettings(values={"global": {"meshID": "x"}}),
        east_west_gateway=MeshGatewaySettings(values={"revision": "canary"}),
    )
    registered: list[str] = []

    def build() -> Mapping[str, pulumi.Output[Any]]:
        with pytest.raises(ValueError) as err:
            MultiPrimaryMesh("mesh", args)
        registered.append(str(err.value))
        return {}

    rec = run_program(build)
    assert not rec.registrations  # nothing, not even the mesh component
    message = registered[0]
    assert "nothing was registered" in message
    assert 'istio.values.global.meshID: "x" contradicts mesh_id "mesh1"' in message
    assert (
        'clusters[1].gateway.values.networkGateway: "elsewhere" contradicts clusters[1].network "network2"' in message
    )
    assert 'east_west_gateway.values.revision: "canary" contradicts' in message
    assert "clusters[1].istio.values: is not a mapping of Helm values" in message


def _plugin_inputs(**extra: Any) -> dict[str, Any]:
    clusters = [
        {"name": f"cluster{i}", "network": f"network{i}", "apiServer": f"https://10.0.{i}.1:6443", "kubeconfig": "kc"}
        for i in (1, 2)
    ]
    return {"meshId": "mesh1", "clusters": clusters, **extra}


def test_the_schema_offers_the_same_values_settings_as_the_stack_config() -> None:
    spec = schema()
    types = spec["types"]
    mesh = spec["resources"]["istiomesh:index:MultiPrimaryMesh"]["inputProperties"]

    def values_of(type_name: str) -> Mapping[str, Any]:
        return types[f"istiomesh:index:{type_name}"]["properties"]["values"]

    def ref(prop: Mapping[str, Any]) -> str:
        return str(prop["$ref"]).rsplit(":", 1)[-1]

    # istio.values, clusters[].istio.values, eastWestGateway.values, clusters[].eastWestGateway.values.
    cluster = types["istiomesh:index:ClusterInputs"]["properties"]
    for prop in (
        values_of(ref(mesh["istio"])),
        values_of(ref(cluster["istio"])),
        values_of(ref(mesh["eastWestGateway"])),
        values_of(ref(cluster["eastWestGateway"])),
    ):
        assert prop["type"] == "object" and prop["additionalProperties"]["$ref"] == "pulumi.json#/Any", prop
    # The message paths the plugin uses are these properties.
    assert (SCHEMA_NAMES.istio_values, SCHEMA_NAMES.cluster_istio_values) == ("istio.values", "clusters[].istio.values")
    assert (SCHEMA_NAMES.gateway_values, SCHEMA_NAMES.cluster_gateway_values) == (
        "eastWestGateway.values",
        "clusters[].eastWestGateway.values",
    )


def test_the_plugin_maps_values_as_the_stack_config_does(kubeconfigs: Any) -> None:
    inputs = _plugin_inputs(istio={"values": LAB_VALUES}, eastWestGateway={"values": {"replicaCount": 2}})
    inputs["clusters"][1]["istio"] = {"values": {"replicaCount": 3}}
    inputs["clusters"][1]["eastWestGateway"] = {"values": {"podAnnotations": {"a": "b"}}}
    args = plugin_mesh_args(inputs)  # type: ignore[arg-type]
    raw = _raw(kubeconfigs, istio={"values": LAB_VALUES}, eastWestGateway={"values": {"replicaCount": 2}})
    raw["clusters"][1]["istio"] = {"values": {"replicaCount": 3}}
    raw["clusters"][1]["eastWestGateway"]["values"] = {"podAnnotations": {"a": "b"}}
    settings = parse_settings(raw)
    assert args.istio.values == settings.istio.values == LAB_VALUES
    assert args.east_west_gateway == settings.east_west_gateway
    assert [c.istio for c in args.clusters] == [c.istio for c in settings.clusters]
    assert [c.gateway.values for c in args.clusters] == [c.gateway.values for c in settings.clusters]


def test_the_plugin_refuses_contradicting_values_in_the_schemas_spelling() -> None:
    inputs = _plugin_inputs(istio={"values": {"pilot": {"env": {"EXTERNAL_CA": "ISTIOD_RA_KUBERNETES_API"}}}})
    inputs["clusters"][0]["eastWestGateway"] = {"values": {"service": {"type": "ClusterIP"}}}
    with pytest.raises(ValueError) as err:
        plugin_mesh_args(inputs)  # type: ignore[arg-type]
    message = str(err.value)
    assert 'istio.values.pilot.env.EXTERNAL_CA: "ISTIOD_RA_KUBERNETES_API" contradicts' in message
    gateway = "clusters[0].eastWestGateway"
    assert f'{gateway}.values.service.type: "ClusterIP" contradicts {gateway}.serviceType' in message
