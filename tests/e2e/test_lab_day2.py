"""Day 2 on a live mesh, on a three-cluster lab: a stack deployed by the previous main upgrades with
nothing recreated; reordering clusters is no change; a new meshId updates istiod in place; a hand-made
``cacerts`` is refused, not taken over; a cluster's network, gateway address and Istio's image tag
change exactly their objects; a third cluster joins (its peers' running istiods sync it without a
restart) and leaves again (only its remote secrets leave the others); a frozen API server stops a run
before anything changes; a cluster gone for good leaves the mesh; every reader token is rotated; an
offline root replaces the generated one; the root is rotated in phases under load.

Tests run in file order and share one lab and one stack (``cluster-lab`` on its own backend). The stack
config is rewritten between steps in a scratch project directory (the program, components, stack_config
and virtualenv of this checkout; ``Pulumi.cluster-lab.yaml`` written by the test from the repository's).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import (
    LAB_DIR,
    ROOT,
    Lab,
    Stack,
    api_client,
    apps,
    core,
    kill_session,
    reap_session,
    run,
    run_verify,
    started_lab,
    wait_for,
)

from istio_mesh.fingerprint import pem_fingerprint

#: The last main before stable names (mesh named after meshId, pairs in list order): stacks it
#: deployed must upgrade with nothing created or deleted.
PREVIOUS_MAIN = "071d2715ba8d01d327a48ff68e88854f89a31ca3"
STACK = "cluster-lab"
CLUSTERS = ("cluster1", "cluster2", "cluster3")
NODE_IP = {"cluster1": "127.0.1.1", "cluster2": "127.0.2.1", "cluster3": "127.0.3.1"}
#: Preview operations that create or remove a resource (what a rename without aliases shows).
#: The narrow reader's objects per cluster (suffixes of ``mesh-<cluster>-reader``): the component, its
#: ServiceAccount, ClusterRole and binding, the mesh-config Role and binding.
PAIRS = (("cluster1", "cluster2"), ("cluster2", "cluster1"))
READER_PARTS = ("", "-account", "-role", "-binding", "-mesh-config-role", "-mesh-config-binding")
CREATE_OR_DELETE = {"create", "delete", "replace", "create-replacement", "delete-replaced", "discard"}


def _link_shared(project: Path) -> None:
    """The checkout's virtualenv and the lab's kubeconfigs, where the stack config expects them."""
    (project / ".venv").symlink_to(ROOT / ".venv")
    (project / ".lab").symlink_to(LAB_DIR)


@pytest.fixture(scope="module")
def lab(tc_env: dict[str, str]) -> Iterator[Lab]:
    yield from started_lab(tc_env, clusters=3)


@pytest.fixture(scope="module")
def old_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program as the previous main had it (``git archive`` of that commit)."""
    have = subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS_MAIN}^{{commit}}"], cwd=ROOT, capture_output=True)
    if have.returncode != 0:
        pytest.fail(
            f"commit {PREVIOUS_MAIN} (the previous main) is not in this clone: the upgrade test needs the "
            "repository's history (a full clone, not a shallow one)",
            pytrace=False,
        )
    project = tmp_path_factory.mktemp("previous-main")
    archive = subprocess.run(["git", "archive", PREVIOUS_MAIN], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(project)], input=archive.stdout, check=True)
    _link_shared(project)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's program in a directory whose stack config the tests rewrite."""
    project = tmp_path_factory.mktemp("day2")
    for name in ("Pulumi.yaml", "__main__.py"):
        (project / name).write_text((ROOT / name).read_text())
    # The package comes from the virtualenv (editable install); components/ is linked for the module path
    # the previous main's state names for its intermediates' dynamic provider (components/intermediate_cert.py).
    (project / "components").symlink_to(ROOT / "components")
    (project / "stack_config").symlink_to(ROOT / "stack_config")
    _link_shared(project)
    write_config(project, ("cluster1", "cluster2"))
    return project


def write_config(
    project: Path,
    clusters: tuple[str, ...],
    mesh_id: str = "mesh1",
    unreachable: tuple[str, ...] = (),
    changes: dict[str, dict[str, Any]] | None = None,
    istio: dict[str, Any] | None = None,
    remote_access: dict[str, Any] | None = None,
    ca: dict[str, Any] | None = None,
    lab_values: bool = True,
) -> None:
    """``Pulumi.cluster-lab.yaml`` with these lab clusters, in this order (entries from the repository's
    two- and three-cluster lab stacks; the encryption salt of cluster-lab's); ``changes`` are set on
    the named clusters' entries, ``istio`` on the ``istio`` settings, ``remote_access`` as the
    ``remoteAccess`` settings, ``ca`` on the ``ca`` settings. ``lab_values=False`` leaves out the lab
    stack's chart values (what upstream Envoy needs), which the previous main's config did not have."""
    two = yaml.safe_load((ROOT / "Pulumi.cluster-lab.yaml").read_text())
    three = yaml.safe_load((ROOT / "Pulumi.cluster-lab-3.yaml").read_text())
    entries = {c["name"]: c for c in three["config"]["istio-mesh:clusters"]}
    entries.update({c["name"]: c for c in two["config"]["istio-mesh:clusters"]})
    doc = dict(two)
    doc["config"] = {
        **two["config"],
        "istio-mesh:meshId": mesh_id,
        "istio-mesh:istio": {
            **{k: v for k, v in two["config"]["istio-mesh:istio"].items() if lab_values or k != "values"},
            **(istio or {}),
        },
        "istio-mesh:clusters": [
            {**entries[c], **(changes or {}).get(c, {}), **({"unreachable": True} if c in unreachable else {})}
            for c in clusters
        ],
        **({"istio-mesh:remoteAccess": remote_access} if remote_access else {}),
        **({"istio-mesh:ca": {**two["config"]["istio-mesh:ca"], **ca}} if ca else {}),
    }
    (project / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="module")
def stack(lab: Lab, project: Path, tc_env: dict[str, str], e2e_backend: Path) -> Iterator[Stack]:
    s = Stack(STACK, tc_env, e2e_backend / "day2", project=project)
    s.init()
    yield s
    # Destroy is tested on two clusters (test_lab_mesh); the disposable lab is purged instead.
    s.remove()


def _ops(steps: list[dict[str, Any]]) -> dict[str, list[str]]:
    """op -> resource names (the last URN part), leaving out unchanged resources."""
    out: dict[str, list[str]] = {}
    for step in steps:
        if step["op"] != "same":
            out.setdefault(step["op"], []).append(step["urn"].rsplit("::", 1)[1])
    return out


def _cluster_of(step: dict[str, Any]) -> str:
    """The lab cluster a step's resource lands in (its provider k8s-<cluster>), or '' for none."""
    state = step.get("newState") or step.get("oldState") or {}
    provider = state.get("provider", "")
    return provider.split("::")[-2].removeprefix("k8s-") if provider else ""


def _uids() -> dict[tuple[str, str], str]:
    """uid of the objects a recreate would replace: namespace, cacerts, remote secrets, istiod."""
    uids = {}
    for c in ("cluster1", "cluster2"):
        other = "cluster2" if c == "cluster1" else "cluster1"
        uids[(c, "ns")] = core(c).read_namespace("istio-system").metadata.uid
        for secret in ("cacerts", f"istio-remote-secret-{other}"):
            uids[(c, secret)] = core(c).read_namespaced_secret(secret, "istio-system").metadata.uid
        uids[(c, "istiod")] = apps(c).read_namespaced_deployment("istiod", "istio-system").metadata.uid
    return uids


def _verify(stack: Stack, *extra: str) -> dict[str, Any]:
    return run_verify(["--stack", STACK, "--lab", "--project-dir", str(stack.project), *extra], stack.env)


def _wait_for_verify_ok(stack: Stack, clusters: tuple[str, ...]) -> dict[str, Any]:
    """Until verify passes, requests included. The control plane is waited for first, without requests: while
    restarted pods settle, each failing request costs verify its timeout (about 30 s a poll)."""
    last: dict[str, Any] = {}

    def ok(*flags: str) -> bool:
        nonlocal last
        last = _verify(stack, *flags)
        return bool(last["ok"])

    try:
        wait_for("verify without requests to pass", lambda: ok("--no-traffic"), timeout=150, interval=3)
        wait_for("verify to pass", ok, timeout=150, interval=3)
    except AssertionError:
        raise AssertionError(
            "verify still fails:\n" + "\n".join(f"[{f['cluster']}] {f['cause']}" for f in last["findings"])
        ) from None
    assert sorted(i["cluster"] for i in last["istiods"]) == sorted(clusters)
    for i in last["istiods"]:
        assert {e["id"] for e in i["syncedClusters"] if e["syncStatus"] == "synced"} == set(clusters), i
    return last


def _validator_policies(cluster: str) -> set[str]:
    """The failurePolicy of every webhook of the cluster's Istio validating webhook configurations."""
    from kubernetes import client

    adm = client.AdmissionregistrationV1Api(api_client(cluster))
    hooks: Any = adm.list_validating_webhook_configuration().items
    return {str(w.failure_policy) for h in hooks if "istio" in h.metadata.name for w in h.webhooks or []}


def _istiod_pids(clusters: tuple[str, ...]) -> dict[str, int]:
    from lab.layout import Cluster

    return {c: int(Cluster(int(c[-1])).pidfile("istiod").read_text().split()[0]) for c in clusters}


# ---- upgrade -------------------------------------------------------------------------------------------


def test_a_stack_of_the_previous_main_upgrades_with_nothing_recreated(
    lab: Lab, stack: Stack, old_project: Path, tc_env: dict[str, str], e2e_backend: Path
) -> None:
    """A stack deployed by 071d271 (names after meshId, pairs in list order, Istio's reader). With
    ``remoteAccess.reader: istio`` (what it had) the new program's aliases carry every resource over:
    nothing created, deleted or replaced. With the default (the narrow reader) exactly the reader's
    objects are created and each reader token replaced; `up` keeps every other live object (same uid)."""
    old = Stack(STACK, tc_env, e2e_backend / "day2", project=old_project)
    old.up()
    # istiod (the lab's follower runs it, as a cluster would) switches the validators the old program
    # created with Ignore to Fail: the upgrade's update of them must not conflict with it.
    for c in ("cluster1", "cluster2"):
        wait_for(f"istiod of {c} to set its validators to Fail", lambda c=c: _validator_policies(c) == {"Fail"}, 90, 2)
    before = _uids()
    # The same configuration as the previous main's stack: the program's upgrade alone (the lab's chart
    # values for upstream Envoy, which came later, are applied at the end).
    write_config(stack.project, ("cluster1", "cluster2"), remote_access={"reader": "istio"}, lab_values=False)
    try:
        steps = stack.preview_steps()
    finally:
        write_config(stack.project, ("cluster1", "cluster2"), lab_values=False)
    names = {s["urn"].rsplit("::", 1)[1] for s in steps}
    assert "mesh-cluster1-cluster2-cluster1-reader-token" in names  # new names ...
    ops = _ops(steps)
    print(f"upgrade preview (Istio's reader): {ops}", file=sys.stderr)
    # ... and its aliases carry every resource over: nothing created, deleted or replaced.
    assert not CREATE_OR_DELETE & set(ops), ops

    ops = _ops(stack.preview_steps())
    print(f"upgrade preview (narrow reader): {ops}", file=sys.stderr)
    readers = [f"mesh-{c}-reader{part}" for c in ("cluster1", "cluster2") for part in READER_PARTS]
    tokens = [f"mesh-cluster1-cluster2-{c}-reader-token" for c in ("cluster1", "cluster2")]
    assert sorted(ops.pop("create")) == sorted(readers), ops
    remote = {f"mesh-cluster1-cluster2-{a}-remote-secret-in-{b}" for a, b in PAIRS}
    replaced = set(ops.pop("replace"))
    # Each token is replaced; each remote secret is recreated once its new token exists (the preview,
    # not knowing the token yet, may show it as a replace or an update). Nothing else is replaced.
    assert set(tokens) <= replaced and replaced - set(tokens) <= remote, replaced
    # The rest are updates in place: the created-by annotation this program has put on every object
    # since 071d271.
    assert set(ops) == {"update"}, ops
    assert remote <= replaced | set(ops["update"]), ops
    stack.up()  # (that nothing is left to change is the next test's preview)
    # The update of the validators (the created-by and patchForce annotations) sent the recorded Ignore
    # and overrode istiod's Fail; istiod sets it back.
    for c in ("cluster1", "cluster2"):
        wait_for(f"istiod of {c} to set its validators to Fail", lambda c=c: _validator_policies(c) == {"Fail"}, 90, 2)
    after = _uids()
    # The same live objects, but the remote secrets: recreated with the new reader's token.
    assert {k: v for k, v in after.items() if "remote-secret" not in k[1]} == {
        k: v for k, v in before.items() if "remote-secret" not in k[1]
    }
    state_names = {r["urn"].rsplit("::", 1)[1] for r in stack.export()["deployment"]["resources"]}
    assert "mesh-cluster1-cluster2" in state_names and "mesh1-cluster1-cluster2" not in state_names
    for c, other in (("cluster1", "cluster2"), ("cluster2", "cluster1")):
        names = {s.metadata.name for s in core(c).list_namespaced_secret("istio-system").items}
        assert f"istio-mesh-reader-token-{other}" in names and f"istio-reader-token-{other}" not in names
    # The lab stack's own configuration from here on: its chart values replace istiod's ConfigMaps.
    write_config(stack.project, ("cluster1", "cluster2"))
    stack.up()


def test_reordering_clusters_changes_nothing(stack: Stack) -> None:
    """Also proves the upgraded stack has nothing left to change."""
    write_config(stack.project, ("cluster2", "cluster1"))
    try:
        stack.cli("preview", "--expect-no-changes")
    finally:
        write_config(stack.project, ("cluster1", "cluster2"))


def test_a_new_mesh_id_updates_istiod_in_place(stack: Stack) -> None:
    write_config(stack.project, ("cluster1", "cluster2"), mesh_id="mesh-two")
    try:
        steps = stack.preview_steps("--diff")
    finally:
        write_config(stack.project, ("cluster1", "cluster2"))
    ops = _ops(steps)
    print(f"meshId preview: {ops}", file=sys.stderr)
    # Only the istiod chart's ConfigMaps that carry global.meshID: pulumi-kubernetes treats a ConfigMap's
    # data as immutable, so they are replaced (delete, then create under the same name); the CA,
    # namespaces, secrets and istiod's Deployment stay as they are.
    assert set(ops) == {"replace"}, ops
    assert sorted(ops["replace"]) == sorted(
        f"mesh-{c}-istiod:istio-system/{cm}"
        for c in ("cluster1", "cluster2")
        for cm in ("istio", "istio-sidecar-injector", "values")
    ), ops


def test_a_hand_made_cacerts_is_refused_not_taken_over(stack: Stack) -> None:
    """cacerts deleted out of band and the state refreshed; then someone makes one by hand (the
    walkthrough's `kubectl create secret generic cacerts`). `up` must not overwrite it: it fails naming
    the object, and the hand-made secret is untouched. Deleted, the next `up` converges."""
    core("cluster2").delete_namespaced_secret("cacerts", "istio-system")
    stack.cli("refresh", "--yes", "--skip-preview")
    hand_made = _self_signed_ca_secret()
    core("cluster2").create_namespaced_secret("istio-system", hand_made)
    made = core("cluster2").read_namespaced_secret("cacerts", "istio-system")

    failed = stack.cli("up", "--yes", "--skip-preview", check=False)
    assert failed.returncode != 0, "up took over a cacerts it did not create"
    out = failed.stdout + failed.stderr
    assert "Secret istio-system/cacerts already exists in cluster 'cluster2'" in out, out[-3000:]
    assert "Nothing was changed" in out and "pulumi import kubernetes:core/v1:Secret" in out
    now = core("cluster2").read_namespaced_secret("cacerts", "istio-system")
    assert (now.metadata.uid, now.metadata.resource_version, now.data) == (
        made.metadata.uid,
        made.metadata.resource_version,
        made.data,
    )
    assert not any("pulumi" in (m.manager or "") for m in now.metadata.managed_fields or [])

    core("cluster2").delete_namespaced_secret("cacerts", "istio-system")
    stack.up()
    ours = core("cluster2").read_namespaced_secret("cacerts", "istio-system")
    root = base64.b64decode(ours.data["root-cert.pem"]).decode()
    assert root.strip() == stack.outputs()["rootCertificatePem"].strip()
    # The recreated cacerts rolled istiod (it reads a plugged-in CA only at start-up).
    istiod: Any = apps("cluster2").read_namespaced_deployment("istiod", "istio-system")
    assert istiod.spec.template.metadata.annotations["istio-mesh.dev/cacerts-uid"] == ours.metadata.uid


def _pulumi_managers(cluster: str) -> dict[str, set[str]]:
    """object -> the pulumi field managers of the objects this stack keeps in istio-system (and the namespace)."""
    api = core(cluster)
    objects = [("ns", api.read_namespace("istio-system"))]
    objects += [(f"secret {o.metadata.name}", o) for o in api.list_namespaced_secret("istio-system").items]
    objects += [(f"sa {o.metadata.name}", o) for o in api.list_namespaced_service_account("istio-system").items]
    objects += [(f"cm {o.metadata.name}", o) for o in api.list_namespaced_config_map("istio-system").items]
    return {
        name: {m.manager for m in o.metadata.managed_fields or [] if (m.manager or "").startswith("pulumi")}
        for name, o in objects
    }


def test_a_lost_state_takes_nothing_over_under_a_new_root_and_the_restored_state_converges(
    stack: Stack, tmp_path: Path
) -> None:
    """The stack's state is lost (here: removed and a new stack of the same name made). Its `up` generates a
    new root CA, and taking the clusters back would write it into every cacerts, moving the running mesh
    to a root its workloads do not trust. It fails naming the lost root and the ways out; no live object
    was applied to (no new field manager anywhere), cacerts unchanged. The state is then brought back as a
    user without an export would: from the file backend's own copies (`scripts/state_backups.py`), the
    newest whose root is the one the clusters hold; imported, it has nothing left to change."""
    root = stack.outputs()["rootCertificateFingerprint"]
    clusters = ("cluster1", "cluster2")
    before = {c: core(c).read_namespaced_secret("cacerts", "istio-system") for c in clusters}
    managers = {c: _pulumi_managers(c) for c in clusters}
    stack.remove()
    stack.init()
    try:
        failed = stack.cli("up", "--yes", "--skip-preview", check=False)
        assert failed.returncode != 0, "up took the clusters back under a new root"
        out = failed.stdout + failed.stderr
        refused = [c for c in clusters if f"Cluster '{c}' already runs this stack's mesh under another root CA" in out]
        assert refused, out[-4000:]
        assert f"holds the root CA with SHA-256 fingerprint {root}" in out, out[-4000:]
        assert "the state was lost or replaced" in out and "pulumi stack import --file" in out
        assert "field conflict" not in out, out[-4000:]
        for c in clusters:
            now = core(c).read_namespaced_secret("cacerts", "istio-system")
            assert (now.metadata.uid, now.metadata.resource_version, now.data) == (
                before[c].metadata.uid,
                before[c].metadata.resource_version,
                before[c].data,
            )
            assert _pulumi_managers(c) == managers[c], c
    finally:
        # Back from the backend's copies: the newest that holds the clusters' root.
        script = [str(ROOT / ".venv/bin/python"), str(ROOT / "scripts/state_backups.py")]
        listed = run([*script, "list", STACK, "--backend", str(stack.backend), "--json"], env=stack.env).stdout
        copies = [c["file"] for c in json.loads(listed) if c["roots"] == [root]]
        assert copies, listed
        saved = tmp_path / "state.json"
        saved.write_text(run([*script, "deployment", copies[-1]], env=stack.env).stdout)
        stack.remove()
        stack.init()
        stack.cli("stack", "import", "--file", str(saved))
    stack.cli("preview", "--expect-no-changes")
    assert stack.outputs()["rootCertificateFingerprint"] == root


def _self_signed_ca_secret() -> Any:
    """A cacerts Secret from someone's own CA (not the mesh's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from kubernetes import client

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "hand-made CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name="cacerts", namespace="istio-system"),
        string_data={"ca-cert.pem": pem, "ca-key.pem": key_pem, "root-cert.pem": pem, "cert-chain.pem": pem},
    )


# ---- a cluster's settings ------------------------------------------------------------------------------


def _changed_objects(steps: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(cluster, "<Kind> <resource name>") -> operation, for the Kubernetes objects a preview changes."""
    out = {}
    for s in steps:
        kind = s["urn"].split("::")[-2].split("$")[-1]  # the resource's type token
        if s["op"] != "same" and kind.startswith("kubernetes:") and kind != "kubernetes:helm.sh/v4:Chart":
            out[(_cluster_of(s), f"{kind.rsplit(':', 1)[1]} {s['urn'].rsplit('::', 1)[1]}")] = s["op"]
    return out


def test_a_new_network_gateway_address_and_image_tag_change_exactly_their_objects(lab: Lab, stack: Stack) -> None:
    """cluster2 moves to another network; cluster1's east-west gateway gets the walkthrough's externalIPs;
    Istio's image tag (a chart value) changes. Each preview lists exactly the objects that carry that
    setting, and nothing is created or deleted. `up` of the network and the address: verify passes with the
    istiods that were running (they follow the namespace label and the gateway Service without a restart),
    and the sample pods, which the injector had stamped with network2, were rolled onto network9 by their
    Deployments' update. Then `up` of the tag (istiod rolls; the lab's follower restarts it) and verify
    passes again. Then back."""
    network = {"cluster2": {"network": "network9"}}
    gateway = {"cluster1": {"eastWestGateway": {"serviceType": "LoadBalancer", "externalIPs": ["198.19.200.101"]}}}
    tag = {"tag": "1.30.4-day2"}
    try:
        write_config(stack.project, ("cluster1", "cluster2"), changes=network)
        moved = _changed_objects(stack.preview_steps())
        write_config(stack.project, ("cluster1", "cluster2"), changes=gateway)
        addressed = _changed_objects(stack.preview_steps())
        write_config(stack.project, ("cluster1", "cluster2"), istio=tag)
        retagged = _changed_objects(stack.preview_steps())
        print(f"network preview: {moved}\ngateway preview: {addressed}\ntag preview: {retagged}", file=sys.stderr)
        gw = "mesh-cluster2-eastwest-chart:istio-system/istio-eastwestgateway"
        assert moved == {
            ("cluster2", "Namespace mesh-cluster2-namespace"): "update",  # topology.istio.io/network
            # global.network: the values ConfigMaps (replaced: pulumi-kubernetes treats ConfigMap data as
            # immutable) and the gateway's networkGateway (its Service's label, its pods' env and label)
            ("cluster2", "ConfigMap mesh-cluster2-istiod:istio-system/values"): "replace",
            ("cluster2", "ConfigMap mesh-cluster2-istiod:istio-system/istio-sidecar-injector"): "replace",
            ("cluster2", f"Service {gw}"): "update",
            ("cluster2", f"Deployment {gw}"): "update",
            # the sample pods' template names the network (the injector's stamp would keep them on network2)
            ("cluster2", "Deployment mesh-cluster2-samples-helloworld-v2"): "update",
            ("cluster2", "Deployment mesh-cluster2-samples-sleep"): "update",
        }, moved
        assert addressed == {
            ("cluster1", "Service mesh-cluster1-eastwest-chart:istio-system/istio-eastwestgateway"): "update"
        }, addressed
        # The image tag: istiod's Deployment and the ConfigMaps that embed the values (the injector's proxy
        # image), per cluster; the gateways' pods say `image: auto` and are not touched.
        assert retagged == {
            (c, f"{kind} mesh-{c}-istiod:istio-system/{name}"): op
            for c in ("cluster1", "cluster2")
            for kind, name, op in (
                ("Deployment", "istiod", "update"),
                ("ConfigMap", "values", "replace"),
                ("ConfigMap", "istio-sidecar-injector", "replace"),
            )
        }, retagged

        lab.istiod("start", only="cluster1,cluster2")
        pids = _istiod_pids(("cluster1", "cluster2"))
        stamped = _pod_networks("cluster2")
        assert stamped and set(stamped.values()) == {"network2"}, stamped  # what the injector stamped
        write_config(stack.project, ("cluster1", "cluster2"), changes={**network, **gateway})
        stack.up()
        out = stack.outputs()
        assert out["clusters"]["cluster1"]["eastWestGatewayAddress"] == "198.19.200.101"
        report = _wait_for_verify_ok(stack, ("cluster1", "cluster2"))
        assert _istiod_pids(("cluster1", "cluster2")) == pids
        rolled = _pod_networks("cluster2")
        assert set(rolled.values()) == {"network9"} and not set(rolled) & set(stamped), (stamped, rolled)
        # What the running istiods now know: cluster2's endpoints on network9, cluster1's gateway at its
        # externalIP (verify passing already says each matches the config; this says the config moved).
        for i in report["istiods"]:
            gateways = {(g["network"], g["address"]) for g in i["gateways"]}
            assert ("network1", "198.19.200.101") in gateways and "network9" in {n for n, _ in gateways}, i
            assert {e["network"] for e in i["endpoints"] if e["cluster"] == "cluster2"} == {"network9"}, i

        write_config(stack.project, ("cluster1", "cluster2"), changes={**network, **gateway}, istio=tag)
        stack.up()
        for c in ("cluster1", "cluster2"):
            istiod: Any = apps(c).read_namespaced_deployment("istiod", "istio-system")
            assert istiod.spec.template.spec.containers[0].image.endswith(":1.30.4-day2")
        _wait_for_verify_ok(stack, ("cluster1", "cluster2"))
    finally:
        # Back, even after a failure (the next tests start from this stack: the join's preview must hold
        # only creates).
        write_config(stack.project, ("cluster1", "cluster2"))
        stack.up()


def _pod_networks(cluster: str) -> dict[str, str | None]:
    """Running sample pods in ``cluster`` -> their topology.istio.io/network label."""
    pods: Any = core(cluster).list_namespaced_pod("sample")
    return {
        p.metadata.name: (p.metadata.labels or {}).get("topology.istio.io/network")
        for p in pods.items
        if p.status.phase == "Running" and not p.metadata.deletion_timestamp
    }


# ---- grow and shrink -----------------------------------------------------------------------------------


def test_a_third_cluster_joins_and_the_running_istiods_sync_it(lab: Lab, stack: Stack) -> None:
    lab.istiod("start", only="cluster1,cluster2")
    pids = _istiod_pids(("cluster1", "cluster2"))
    write_config(stack.project, CLUSTERS)
    steps = stack.preview_steps()
    ops = _ops(steps)
    print(f"grow preview: { {k: len(v) for k, v in ops.items()} }", file=sys.stderr)
    # Only additions: the new cluster's objects, and in each old cluster its reader token for cluster3
    # and cluster3's remote secret; nothing updated, replaced or deleted anywhere.
    assert set(ops) == {"create"}, ops
    in_old = sorted(
        (_cluster_of(s), s["urn"].rsplit("::", 1)[1])
        for s in steps
        if s["op"] == "create" and _cluster_of(s) in ("cluster1", "cluster2")
    )
    assert in_old == [
        ("cluster1", "mesh-cluster1-cluster3-cluster1-reader-token"),
        ("cluster1", "mesh-cluster1-cluster3-cluster3-remote-secret-in-cluster1"),
        ("cluster2", "mesh-cluster2-cluster3-cluster2-reader-token"),
        ("cluster2", "mesh-cluster2-cluster3-cluster3-remote-secret-in-cluster2"),
    ]
    stack.up()
    lab.istiod("start")  # cluster3's istiod; cluster1's and cluster2's keep running
    assert _istiod_pids(("cluster1", "cluster2")) == pids
    _wait_for_verify_ok(stack, CLUSTERS)
    assert _istiod_pids(("cluster1", "cluster2")) == pids  # synced cluster3 without a restart
    out = stack.outputs()
    for c in CLUSTERS:
        assert out["clusters"][c]["remoteSecrets"] == sorted(f"istio-remote-secret-{o}" for o in CLUSTERS if o != c)
    # cluster3 has the walkthrough's externalIPs (Pulumi.cluster-lab-3.yaml).
    assert out["clusters"]["cluster3"]["eastWestGatewayAddress"] == "198.19.200.103"
    # (That nothing else is pending shows in the next test: its preview holds only cluster3's deletes.)


def test_a_cluster_leaves_and_only_its_remote_secrets_leave_the_others(lab: Lab, stack: Stack) -> None:
    write_config(stack.project, ("cluster1", "cluster2"))
    steps = stack.preview_steps()
    ops = _ops(steps)
    print(f"shrink preview: { {k: len(v) for k, v in ops.items()} }", file=sys.stderr)
    assert set(ops) == {"delete"}, ops
    in_old = sorted(
        (_cluster_of(s), s["urn"].rsplit("::", 1)[1])
        for s in steps
        if s["op"] == "delete" and _cluster_of(s) in ("cluster1", "cluster2")
    )
    assert in_old == [
        ("cluster1", "mesh-cluster1-cluster3-cluster1-reader-token"),
        ("cluster1", "mesh-cluster1-cluster3-cluster3-remote-secret-in-cluster1"),
        ("cluster2", "mesh-cluster2-cluster3-cluster2-reader-token"),
        ("cluster2", "mesh-cluster2-cluster3-cluster3-remote-secret-in-cluster2"),
    ]
    lab.istiod("stop", only="cluster3")
    stack.up()
    for c in ("cluster1", "cluster2"):
        names = {s.metadata.name for s in core(c).list_namespaced_secret("istio-system").items}
        assert "istio-remote-secret-cluster3" not in names and "istio-mesh-reader-token-cluster3" not in names
    assert "istio-system" not in {n.metadata.name for n in core("cluster3").list_namespace().items}
    _wait_for_verify_ok(stack, ("cluster1", "cluster2"))


# ---- lost clusters -------------------------------------------------------------------------------------


def _apiserver_pid(cluster: str) -> int:
    from lab.layout import Cluster

    return int(Cluster(int(cluster[-1])).pidfile("kube-apiserver").read_text().split()[0])


def test_a_frozen_api_server_stops_the_run_before_anything_changes(stack: Stack) -> None:
    """cluster2's API server hangs (SIGSTOP) while a change for every cluster is pending: `up` fails within
    the preflight's bound, naming cluster2, and changes nothing anywhere; with the server back, nothing
    is left to repair."""
    write_config(stack.project, ("cluster1", "cluster2"), mesh_id="mesh-frozen")
    pid = _apiserver_pid("cluster2")
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        failed = stack.cli("up", "--yes", "--skip-preview", check=False, timeout=300)
        took = time.monotonic() - t0
    finally:
        os.kill(pid, signal.SIGCONT)
        write_config(stack.project, ("cluster1", "cluster2"))
    print(f"up with cluster2 frozen failed after {took:.1f}s", file=sys.stderr)
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "cannot reach every cluster (nothing was changed)" in out, out[-3000:]
    assert "clusters[1] (cluster2, https://127.0.2.1:20243): the API server did not answer" in out, out[-3000:]
    # Nothing was applied in cluster1 either: with the old config back there is no change to make.
    stack.cli("preview", "--expect-no-changes")


def test_a_cluster_that_is_gone_for_good_leaves_the_mesh(lab: Lab, stack: Stack) -> None:
    """cluster3 joins, then its API server dies. The preflight names it and says how to let it go;
    `unreachable: true` removes it: its objects leave the state without a request to it, the others drop
    its remote secrets, verify passes for the rest. Then the entry is deleted."""
    write_config(stack.project, CLUSTERS)
    stack.up()
    os.kill(_apiserver_pid("cluster3"), signal.SIGKILL)
    refused = stack.cli("preview", check=False)
    assert refused.returncode != 0
    assert "set clusters[2].unreachable: true to remove it from the mesh" in refused.stdout + refused.stderr
    write_config(stack.project, CLUSTERS, unreachable=("cluster3",))
    steps = stack.preview_steps()
    ops = _ops(steps)
    print(f"unreachable preview: { {k: len(v) for k, v in ops.items()} }", file=sys.stderr)
    assert set(ops) <= {"delete", "update"}, ops
    assert [s["urn"].rsplit("::", 1)[1] for s in steps if s["op"] == "update"] == ["k8s-cluster3"]  # deleteUnreachable
    gone = stack.up()
    assert "Deleting the unreachable resource from Pulumi state" in gone.stdout + gone.stderr
    left = [
        r["urn"]
        for r in stack.export()["deployment"]["resources"]
        if r.get("provider", "").split("::")[-2:-1] == ["k8s-cluster3"]
    ]
    assert left == []
    for c in ("cluster1", "cluster2"):
        names = {s.metadata.name for s in core(c).list_namespaced_secret("istio-system").items}
        assert "istio-remote-secret-cluster3" not in names and "istio-mesh-reader-token-cluster3" not in names
    _wait_for_verify_ok(stack, ("cluster1", "cluster2"))
    write_config(stack.project, ("cluster1", "cluster2"))
    stack.up()  # the entry deleted: its provider goes too
    assert not any(r["urn"].endswith("::k8s-cluster3") for r in stack.export()["deployment"]["resources"])
    stack.cli("preview", "--expect-no-changes")


# ---- credentials -------------------------------------------------------------------------------------

TWO = ("cluster1", "cluster2")
PEER = {"cluster1": "cluster2", "cluster2": "cluster1"}


def _held_token(reader: str) -> str:
    """The token in the remote secret ``reader`` holds for its peer (what its istiod authenticates with)."""
    source = PEER[reader]
    secret = core(reader).read_namespaced_secret(f"istio-remote-secret-{source}", "istio-system")
    kubeconfig = yaml.safe_load(base64.b64decode(secret.data[source]))
    token: str = kubeconfig["users"][0]["user"]["token"]
    return token


def _status_with(cluster: str, token: str, path: str = "/api/v1/namespaces") -> int:
    """HTTP status of a GET on ``cluster``'s API server with ``token``."""
    import ssl
    import urllib.error
    import urllib.request

    from lab.layout import Cluster

    lab_cluster = Cluster(int(cluster[-1]))
    ctx = ssl.create_default_context(cafile=str(LAB_DIR / "ca" / "ca.crt"))
    request = urllib.request.Request(lab_cluster.server + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _peer_gap(lines: list[str], peer: str) -> float:
    """Seconds between istiod deleting ``peer`` (its remote secret went) and the new client's first sync."""

    def when(line: str) -> datetime.datetime:
        return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))

    if any(f"stopping previous cluster {peer} after new cluster synced" in line for line in lines):
        return 0.0  # the delete and create reached istiod as one update: it swapped make-before-break
    deleted = next(i for i, line in enumerate(lines) if f"Deleting cluster_id={peer} " in line)
    synced = next(line for line in lines[deleted:] if f"kube controller for {peer} synced" in line)
    return (when(synced) - when(lines[deleted])).total_seconds()


def _istiod_log_lines(cluster: str) -> list[str]:
    from lab.layout import Cluster

    return Cluster(int(cluster[-1])).log("istiod").read_text(errors="replace").splitlines()


def test_a_new_token_generation_rotates_every_reader_token_without_restarting_istiod(lab: Lab, stack: Stack) -> None:
    """`remoteAccess.tokenGeneration` 0 -> 1: new tokens, the remote secrets recreated with them, the old
    tokens revoked (401), and the running istiods (not restarted) drop each peer when its remote secret
    goes and sync it again from the new one: every peer synced (the gap is printed). Then the proof that
    a peer istiod needs Secrets: with `readSecrets: false` (generation 2) the token gets 403 on Secrets
    and each istiod reports its peer `timeout`, though discovery goes on."""
    lab.istiod("start", only="cluster1,cluster2")
    _wait_for_verify_ok(stack, TWO)
    pids = _istiod_pids(TWO)
    old = {c: _held_token(c) for c in TWO}
    log_from = {c: len(_istiod_log_lines(c)) for c in TWO}
    try:
        write_config(stack.project, TWO, remote_access={"tokenGeneration": 1})
        stack.up()
        for c in TWO:
            source = PEER[c]
            new = core(source).read_namespaced_secret(f"istio-mesh-reader-token-{c}-g1", "istio-system")
            assert _held_token(c) == base64.b64decode(new.data["token"]).decode() != old[c]
            names = {x.metadata.name for x in core(source).list_namespaced_secret("istio-system").items}
            assert f"istio-mesh-reader-token-{c}" not in names  # the old token secret is gone ...
            wait_for(
                f"the old token of {c}'s istiod revoked in {source}",
                lambda s=source, t=old[c]: _status_with(s, t) == 401,
                timeout=60,
            )
            assert _status_with(source, _held_token(c)) == 200  # ... and the new one works
        report = _wait_for_verify_ok(stack, TWO)
        assert _istiod_pids(TWO) == pids  # no restart
        for c in TWO:  # how long each istiod was without its peer: from the delete to the new client's sync
            gap = _peer_gap(_istiod_log_lines(c)[log_from[c] :], PEER[c])
            print(f"istiod of {c} was without {PEER[c]} for {gap:.2f}s during the rotation", file=sys.stderr)
        assert report["ok"]

        # Without Secrets, istiod never reports the peer synced (its credentials controller lists every
        # Secret of every cluster it reads): discovery works, the status says 'timeout'.
        write_config(stack.project, TWO, remote_access={"tokenGeneration": 2, "readSecrets": False})
        stack.up()
        for c in TWO:
            assert _status_with(PEER[c], _held_token(c), "/api/v1/secrets") == 403
            assert _status_with(PEER[c], _held_token(c), "/api/v1/pods") == 200

        def peers_timed_out() -> bool:
            doc = _verify(stack)
            status = {(i["cluster"], e["id"]): e["syncStatus"] for i in doc["istiods"] for e in i["syncedClusters"]}
            return all(status.get((c, PEER[c])) == "timeout" for c in TWO)

        wait_for("each istiod to report its peer 'timeout'", peers_timed_out, timeout=120, interval=5)
        doc = _verify(stack)
        causes = "\n".join(f["cause"] for f in doc["findings"])
        assert "cannot list secrets, watch secrets" in causes, causes
        for i in doc["istiods"]:  # discovery still reads the peer: its endpoints are there
            assert {e["cluster"] for e in i["endpoints"]} == set(TWO), i
    finally:
        write_config(stack.project, TWO)


STACK_ARGS = ("--stack", STACK, "--non-interactive")


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ "The offline machine" of ``scripts/offline-ca``: its root and intermediates (the rotation starts there)."""
    return tmp_path_factory.mktemp("offline-ca") / "offline"


def _assert_key_nowhere(stack: Stack, key: Path) -> str:
    """The key's base64 body, line by line: no line of it in the stack's config, its state files or its
    export with secrets shown (returned)."""
    key_lines = [line for line in key.read_text().splitlines() if "PRIVATE KEY" not in line]
    shown = stack.cli("stack", "export", "--show-secrets").stdout
    texts = {"export --show-secrets": shown, "stack config": (stack.project / f"Pulumi.{STACK}.yaml").read_text()}
    texts.update({str(f): f.read_text(errors="replace") for f in stack.state_files()})
    for where, text in texts.items():
        assert not [line for line in key_lines[:3] if line in text], f"the root key {key} is in {where}"
    return shown


def test_an_offline_root_never_enters_the_config_or_the_state(lab: Lab, stack: Stack, offline: Path) -> None:
    """`ca.source: generate` -> `external`: `scripts/offline-ca` makes a root and each cluster's
    intermediate on "the offline machine" (a directory the stack never sees); the stack gets the root
    certificate, the intermediates and their keys (secret config). `up` replaces each `cacerts` (istiod
    rolls) and the generated root leaves the state; `verify` passes under the new root; the root key is
    in neither the config nor the state, not even in the export with secrets shown."""
    root_pem = _offline_ca(offline, stack.env)
    write_config(stack.project, TWO, ca=_external(root_pem, offline))
    _set_external_keys(stack, offline)
    stack.up()
    for c in TWO:
        data = {
            k: base64.b64decode(v).decode()
            for k, v in core(c).read_namespaced_secret("cacerts", "istio-system").data.items()
        }
        assert data["ca-cert.pem"] == (offline / c / "ca-cert.pem").read_text()
        assert data["ca-key.pem"] == (offline / c / "ca-key.pem").read_text()
        assert data["root-cert.pem"] == root_pem
    assert stack.outputs()["rootCertificatePem"] == root_pem
    lab.istiod("restart", only="cluster1,cluster2")  # what the rollout does to a pod (the lab has no kubelet)
    # A new root: the running proxies' certificates chain to the old one, so mTLS between them (and
    # verify's requests) fails until they have new ones: restart the workloads, as the procedure says.
    for c in TWO:
        for ns, selector in (("sample", ""), ("istio-system", "istio=eastwestgateway")):
            core(c).delete_collection_namespaced_pod(ns, label_selector=selector)
    _wait_for_verify_ok(stack, TWO)
    shown = _assert_key_nowhere(stack, offline / "root-key.pem")
    types = {r["type"] for r in json.loads(shown)["deployment"]["resources"]}
    assert not {t for t in types if t.startswith("tls:") or t.endswith("IntermediateCertificate")}, types


# ---- root rotation ---------------------------------------------------------------------------------------


def _set_external_keys(stack: Stack, offline: Path, key: str = "caIntermediateKeyPems") -> None:
    """The offline intermediates' keys as secret config ``key`` (``write_config`` rewrites the file without
    them); each key on stdin: not in any command line or log."""
    for c in TWO:
        run(
            [*("pulumi", "config", "set", "--secret", "--path", f"istio-mesh:{key}.{c}"), *STACK_ARGS],
            stack.env,
            cwd=stack.project,
            input_text=(offline / c / "ca-key.pem").read_text(),
        )


def _offline_ca(directory: Path, env: dict[str, str]) -> str:
    """A root and each cluster's intermediate made by ``scripts/offline-ca`` in ``directory`` ("the offline
    machine", which the stack never sees); returns the root certificate."""
    script = str(ROOT / "scripts" / "offline-ca")
    run([script, "root", str(directory)], env)
    for c in TWO:
        run([script, "intermediate", str(directory), c], env)
    return (directory / "root-cert.pem").read_text()


def _external(root_pem: str, directory: Path) -> dict[str, Any]:
    """``ca``/``nextRoot`` settings of an offline root: its certificate and each cluster's intermediate."""
    return {
        "source": "external",
        "rootCertPem": root_pem,
        "intermediates": {c: {"certPem": (directory / c / "ca-cert.pem").read_text()} for c in TWO},
    }


def _write_rotation(stack: Stack, root_pem: str, offline: Path, phase: str) -> None:
    """The offline root's settings (the previous test's) with ``ca.rotation.phase``."""
    write_config(stack.project, TWO, ca={**_external(root_pem, offline), "rotation": {"phase": phase}})
    _set_external_keys(stack, offline)


def _proxy_pods() -> dict[str, list[str]]:
    """The sample and east-west gateway pods of each cluster, by name."""
    return {
        c: sorted(
            p.metadata.name
            for ns, selector in (("sample", ""), ("istio-system", "istio=eastwestgateway"))
            for p in core(c).list_namespaced_pod(ns, label_selector=selector).items
        )
        for c in TWO
    }


def _up_when_allowed(stack: Stack, what: str, timeout: float = 150) -> float:
    """`pulumi up`, rerun while the rotation's gate refuses it (proxies still starting or re-signing);
    returns how long it took. A refusal for any other reason fails the test."""
    started = time.monotonic()
    refusals: list[str] = []

    def attempt() -> bool:
        proc = stack.cli("up", "--yes", "--skip-preview", check=False)
        if proc.returncode == 0:
            return True
        assert "refused at" in proc.stdout + proc.stderr, f"{what}: up failed:\n{(proc.stdout + proc.stderr)[-3000:]}"
        refusals.append(proc.stdout[-2000:])
        return False

    try:
        wait_for(f"the {what} phase to be allowed", attempt, timeout=timeout, interval=5)
    except AssertionError:
        raise AssertionError(f"{what}: still refused:\n{refusals[-1] if refusals else ''}") from None
    return time.monotonic() - started


def _cacerts_uid(cluster: str) -> str | None:
    try:
        return str(core(cluster).read_namespaced_secret("cacerts", "istio-system").metadata.uid)
    except Exception as e:  # gone (404) for a moment: deleted, not yet created again
        if getattr(e, "status", None) == 404:
            return None
        raise


def _up_killed_mid_phase(stack: Stack, what: str, timeout: float = 150) -> float:
    """`pulumi up` as users run it (the state saved after every step), killed with its whole session (the
    machine died) once it has begun replacing cluster1's `cacerts`, i.e. half-way through the phase; retried
    while the gate refuses it. Returns the seconds from its start to the kill."""
    saved = stack.with_checkpoints()
    before = _cacerts_uid("cluster1")
    started = time.monotonic()

    def killed_mid_phase() -> bool:
        proc = saved.start_up()
        while proc.poll() is None:
            if _cacerts_uid("cluster1") != before:
                kill_session(proc.pid)
                proc.communicate(timeout=60)
                reap_session(proc.pid)
                return True
            time.sleep(0.1)
        out, _ = proc.communicate()
        assert proc.returncode != 0 and "refused at" in out, f"{what}: up ended before its kill:\n{out[-3000:]}"
        return False

    wait_for(f"the {what} phase to start replacing cacerts", killed_mid_phase, timeout=timeout, interval=5)
    return time.monotonic() - started


Timings = dict[str, float]
#: The first rotation finished, and the mesh as the second one finds it (new intermediates since).
FIRST_FINISHED = {"source": "generate", "generation": 1}
SECOND_STARTS = {**FIRST_FINISHED, "intermediateGeneration": 1}


def _timed_up(stack: Stack) -> float:
    started = time.monotonic()
    stack.up()
    return time.monotonic() - started


def _first_rotation_begins_and_phase_2_waits_for_old_proxies(
    stack: Stack, load: Any, clusters: list[Any], old_root: str, offline: Path
) -> tuple[str, Any]:
    """`trust-both` from the offline root, under the load, with every proxy predating the rotation;
    `sign-with-next` is then refused while such a proxy would reject what it signs, naming each proxy and
    the way out (restart it), which is taken. Returns the next root (generated) and the load's result."""
    _wait_for_a_clean_probe(load, clusters)
    running = load.start(clusters, rate=10, duration=120)  # (stopped once trust-both is applied)
    time.sleep(3)  # (before any change: the baseline, after a 5 s probe that lost nothing)
    running.mark("trust-both (every proxy predates the rotation)")
    _write_rotation(stack, old_root, offline, "trust-both")
    up = _timed_up(stack)
    time.sleep(5)  # (what follows the change: istiod rolled, its new mesh config pushed)
    result = running.stop()
    print(f"trust-both: up {up:.1f} s")
    for c in TWO:
        data = core(c).read_namespaced_secret("cacerts", "istio-system").data
        assert base64.b64decode(data["root-cert.pem"]).decode().startswith(old_root.strip()), c
    next_root = str(stack.outputs()["trustedRootsPem"]).replace(old_root.strip() + "\n", "", 1)

    _write_rotation(stack, old_root, offline, "sign-with-next")
    refused = stack.cli("preview", check=False)
    assert refused.returncode != 0
    text = refused.stdout + refused.stderr
    assert "root rotation phase 'sign-with-next': refused at" in text and "nothing was changed" in text, text[-3000:]
    for c in TWO:
        for pod in core(c).list_namespaced_pod("sample").items:
            assert f"proxy sample/{pod.metadata.name} in {c} does not trust the next root" in text, text[-3000:]
        assert f"kubectl --context {c} -n sample delete pod" in text
    assert "PROXY_CONFIG_XDS_AGENT is not set" in text
    for c in TWO:  # the way out the refusal gives: restart them (their new pods take pushed bundles)
        for ns, selector in (("sample", ""), ("istio-system", "istio=eastwestgateway")):
            core(c).delete_collection_namespaced_pod(ns, label_selector=selector)
    _wait_for_verify_ok(stack, TWO)
    return next_root, result


def _wait_for_a_clean_probe(load: Any, clusters: list[Any]) -> None:
    """Restarted pods: the mesh is still forming for some seconds after verify passes (measured: 35 of 47
    requests timed out in the first 7 s once). A 5 s probe with no failure, reaching both clusters, as
    bench/day2-traffic waits before each change."""

    def clean() -> bool:
        probe = load.start(clusters, rate=10, duration=5).result()
        return all(
            not probe.stats(c).error
            and probe.stats(c).failed == 0
            and {cluster for (_, cluster) in probe.stats(c).answers} == set(TWO)
            for c in TWO
        )

    wait_for("a 5 s probe with no failed request", clean, timeout=120, interval=1)


def _first_rotation_completes(stack: Stack, running: Any, old_root: str, offline: Path, next_root: str) -> Timings:
    """Under the load: `sign-with-next`, back to `trust-both` (the rollback), `sign-with-next` again,
    `drop-old`, then finished (`ca.generation: 1`): the next root is the mesh's."""
    timings: Timings = {}
    for phase in ("sign-with-next", "rollback to trust-both", "sign-with-next again", "drop-old"):
        running.mark(phase)
        _write_rotation(stack, old_root, offline, phase.removeprefix("rollback to ").removesuffix(" again"))
        timings[phase] = _up_when_allowed(stack, phase)
    running.mark("finished (ca.generation: 1)")
    write_config(stack.project, TWO, ca=FIRST_FINISHED)
    timings["finished"] = _timed_up(stack)
    assert stack.outputs()["rootCertificatePem"].strip() == next_root.strip()
    return timings


def _new_intermediates_under_the_same_root(stack: Stack, running: Any) -> Timings:
    """Under the load: `ca.intermediateGeneration: 1` gives every cluster a new intermediate key (renewal
    keeps the key)."""
    keys_before = {c: core(c).read_namespaced_secret("cacerts", "istio-system").data["ca-key.pem"] for c in TWO}
    running.mark("new intermediates (ca.intermediateGeneration: 1)")
    write_config(stack.project, TWO, ca=SECOND_STARTS)
    timings = {"new intermediates": _timed_up(stack)}
    for c in TWO:
        assert core(c).read_namespaced_secret("cacerts", "istio-system").data["ca-key.pem"] != keys_before[c], c
    return timings


def _second_rotation_to_an_offline_root(stack: Stack, running: Any, third: Path, third_root: str) -> Timings:
    """Under the load, on a mesh set up for rotations since the first: the three phases to a root made by
    `scripts/offline-ca` (its key never enters the config or the state), trust-both included and no proxy
    restarted (each takes pushed trust bundles); phase 2 is killed half-way, as a dying machine would, and
    rerun once `pulumi cancel` has released the lock the killed run left (as the refusal says). Finished
    as the mesh's own `ca.source: external`, which changes no object in any cluster."""
    timings: Timings = {}
    proxies_before = _proxy_pods()
    third_settings = _external(third_root, third)
    for phase in ("trust-both", "sign-with-next", "drop-old"):
        running.mark(f"second rotation: {phase}")
        write_config(stack.project, TWO, ca={**SECOND_STARTS, "rotation": {"phase": phase, "nextRoot": third_settings}})
        _set_external_keys(stack, third, "caNextIntermediateKeyPems")
        if phase == "sign-with-next":
            timings["second sign-with-next, killed"] = _up_killed_mid_phase(stack, "second sign-with-next")
            locked = stack.cli("up", "--yes", "--skip-preview", check=False)
            assert locked.returncode != 0 and "pulumi cancel" in locked.stdout + locked.stderr, locked.stderr
            stack.cli("cancel", "--yes")
            running.mark("second rotation: sign-with-next, rerun after the kill")
        timings[f"second {phase}"] = _up_when_allowed(stack, f"second {phase}")
    running.mark("second rotation finished (ca.generation: 2)")
    uids = {c: _cacerts_uid(c) for c in TWO}
    write_config(stack.project, TWO, ca={**third_settings, "generation": 2})
    _set_external_keys(stack, third)
    timings["second finished"] = _timed_up(stack)
    assert {c: _cacerts_uid(c) for c in TWO} == uids
    assert _proxy_pods() == proxies_before
    return timings


def _assert_no_request_failed(load: Any, result: Any, timings: Timings) -> None:
    """Every phase sent requests from both clusters and none failed; both networks answered."""
    table = load.render_table(load.rows("root rotation", result, by_phase=True))
    print(table, "\n", {k: round(v, 1) for k, v in timings.items()})
    for c in TWO:
        for phase, _ in result.phases():
            s = result.stats(c, phase)
            assert not s.error and s.sent > 0 and s.failed == 0, (c, phase, s, table)
        assert {cluster for (_, cluster) in result.stats(c).answers} == set(TWO), table


def _assert_one_root_everywhere(stack: Stack, root_pem: str) -> None:
    """The root in the stack's output, in every cacerts, in every proxy's trust and under every certificate
    a proxy presents (`verify --roots`)."""
    assert stack.outputs()["rootCertificatePem"] == root_pem
    doc = _verify(stack, "--roots")
    assert doc["ok"], doc["findings"]
    fp = doc["rootFingerprintSha256"]
    assert fp == pem_fingerprint(root_pem)
    for c in doc["roots"]:
        assert c["cacerts"] == {"trusts": [fp], "signsUnder": fp}, c
        assert len(c["proxies"]) == 3, c  # helloworld, sleep, the east-west gateway
        for p in c["proxies"]:
            assert (p["trusted"], p["chains_to"]) == ([fp], fp), p


def test_the_root_rotates_in_phases_behind_the_gate_with_no_failed_request(
    lab: Lab, stack: Stack, offline: Path
) -> None:
    """From the offline root of the previous test to a generated one, in the three phases (one `up` each),
    with a rollback from phase 2 to phase 1 on the way, then finished (`ca.generation: 1`); phase 2 first
    waits for the proxies that predate the rotation (restarted). Then new intermediates (new keys, same root), and a
    second rotation, to a root made offline, with phase 2 killed half-way and rerun. A bounded load (10
    requests/s from each cluster's sleep, across the networks through the east-west gateways) runs through
    the first phase (on the proxies that predate the rotation) and from the restart to the end, and loses
    no request. Afterwards every proxy trusts only the
    offline root and presents a certificate under it, and that root's key is nowhere in the stack."""
    sys.path.append(str(ROOT / "bench"))
    import load  # bench/load.py

    old_root = stack.outputs()["rootCertificatePem"]
    clusters = [load.Cluster(c, core(c)) for c in TWO]
    next_root, before = _first_rotation_begins_and_phase_2_waits_for_old_proxies(
        stack, load, clusters, old_root, offline
    )
    _assert_no_request_failed(load, before, {})
    _wait_for_a_clean_probe(load, clusters)
    third = offline.parent / "third"  # (the second rotation's offline root, made before the load starts)
    third_root = _offline_ca(third, stack.env)

    # Bounded at 400 s (the changes take about 190 s on the lab); stopped once they are done.
    running = load.start(clusters, rate=10, duration=400)
    time.sleep(3)  # (the first phase, before any change: the baseline, after a 5 s probe that lost nothing)
    timings = _first_rotation_completes(stack, running, old_root, offline, next_root)
    timings |= _new_intermediates_under_the_same_root(stack, running)
    timings |= _second_rotation_to_an_offline_root(stack, running, third, third_root)
    _assert_no_request_failed(load, running.stop(), timings)

    _assert_one_root_everywhere(stack, third_root)
    _assert_key_nowhere(stack, third / "root-key.pem")
