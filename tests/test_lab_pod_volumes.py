"""A pod's volumes written as the kubelet writes them (``lab/pod_volumes.py``): each volume as a set,
swapped in by one rename of ``..data``; emptyDirs and volumes mounted inside others left alone."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from lab import pod_volumes

UID = 1337
ROOT_CERT = "var/run/secrets/istio"
CRL = "var/run/secrets/istio/crl"
TOKENS = "var/run/secrets/tokens"
KUBE_API = "var/run/secrets/kubernetes.io/serviceaccount"


def pod(proxy_mounts: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A sidecar-injected pod with the volumes Istio 1.30's injector gives it (the app container has the
    service account's ``kube-api-access`` volume, as the API server adds it)."""
    kube_api = {
        "name": "kube-api-access-x1",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ]
        },
    }
    volumes = [
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {
            "name": "istio-podinfo",
            "downwardAPI": {
                "items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                ]
            },
        },
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"path": "istio-token", "expirationSeconds": 43200, "audience": "istio-ca"}}
                ]
            },
        },
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
        {"name": "istio-ca-crl", "configMap": {"name": "istio-ca-crl", "optional": True}},
        {"name": "certs", "secret": {"secretName": "certs"}},
        kube_api,
    ]
    if proxy_mounts is None:
        proxy_mounts = [
            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
            {"name": "istio-ca-crl", "mountPath": "/var/run/secrets/istio/crl"},
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        ]
    kube_api_mount = {"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    return {
        "metadata": {
            "name": "helloworld-v1-abc",
            "namespace": "sample",
            "uid": "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
            "labels": {"app": "helloworld", "version": "v1"},
            "annotations": {"sidecar.istio.io/status": "{}"},
        },
        "spec": {
            "serviceAccountName": "helloworld",
            "initContainers": [{"name": "istio-init", "volumeMounts": [kube_api_mount]}],
            "containers": [
                {"name": "helloworld", "volumeMounts": [kube_api_mount]},
                {"name": "istio-proxy", "volumeMounts": proxy_mounts},
            ],
            "volumes": volumes,
        },
    }


class Api:
    """The objects the volumes read, and the TokenRequests asked (each answered with a new token)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {
            "configmaps/istio-ca-root-cert": {"data": {"root-cert.pem": "ROOT-1"}},
            "configmaps/istio-ca-crl": {"data": {"ca-crl.pem": "CRL-1"}},
            "configmaps/kube-root-ca.crt": {"data": {"ca.crt": "KUBE-CA-1"}},
            "secrets/certs": {"data": {"cert.pem": base64.b64encode(b"CERT-1").decode()}},
        }
        self.token_requests: list[str] = []
        self.tokens_issued = 0

    def get(self, path: str) -> Any:
        prefix = "/api/v1/namespaces/sample/"
        assert path.startswith(prefix), path
        return self.objects[path[len(prefix) :]]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        self.token_requests.append(path)
        self.tokens_issued += 1
        return {"status": {"token": f"TOKEN-{self.tokens_issued}"}}

    def mount(self, p: dict[str, Any], root: Path, tokens: bool = True) -> pod_volumes.Volumes:
        return pod_volumes.mount(p, root, UID, self.get, self.post, tokens=tokens)


def data_dir(root: Path, rel: str) -> Path:
    return (root / rel / "..data").resolve()


def test_a_changed_config_map_is_swapped_in_as_a_set(tmp_path: Path) -> None:
    api, p = Api(), pod()
    p["spec"]["volumes"].append({"name": "cfg", "configMap": {"name": "cfg"}})
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]
    api.objects["configmaps/cfg"] = {"data": {"a": "a1", "b": "b1", "gone": "x"}}
    first = api.mount(p, tmp_path)
    old, root_cert = data_dir(tmp_path, "etc/cfg"), data_dir(tmp_path, ROOT_CERT)
    assert first.files["etc/cfg/a"] == b"a1" and first.files["etc/cfg/gone"] == b"x"
    with open(tmp_path / "etc/cfg/a", "rb") as held:
        api.objects["configmaps/cfg"] = {"data": {"a": "a2", "b": "b2"}}
        again = api.mount(p, tmp_path, tokens=False)
        assert held.read() == b"a1"  # the old set is never rewritten, only unlinked
    new = data_dir(tmp_path, "etc/cfg")
    assert new != old and not old.exists()
    assert {k: (new / k).read_bytes() for k in ("a", "b")} == {"a": b"a2", "b": b"b2"}
    for key in ("a", "b"):
        assert os.readlink(tmp_path / "etc/cfg" / key) == f"..data/{key}"
        assert (tmp_path / "etc/cfg" / key).read_bytes() == (new / key).read_bytes()
    assert not (tmp_path / "etc/cfg/gone").exists() and not (tmp_path / "etc/cfg/gone").is_symlink()
    assert {k: v for k, v in again.files.items() if k.startswith("etc/cfg/")} == {
        "etc/cfg/a": b"a2",
        "etc/cfg/b": b"b2",
    }
    assert data_dir(tmp_path, ROOT_CERT) == root_cert  # the other volumes did not change: the same sets


def test_what_the_injected_pod_reads_is_where_the_agent_looks(tmp_path: Path) -> None:
    api = Api()
    v = api.mount(pod(), tmp_path)
    assert (tmp_path / ROOT_CERT / "root-cert.pem").read_bytes() == b"ROOT-1"
    assert (tmp_path / CRL / "ca-crl.pem").read_bytes() == b"CRL-1"
    assert (tmp_path / TOKENS / "istio-token").read_bytes().startswith(b"TOKEN-")
    assert (tmp_path / "etc/istio/pod/labels").read_bytes() == b'app="helloworld"\nversion="v1"'
    assert (tmp_path / KUBE_API / "namespace").read_bytes() == b"sample"
    assert (tmp_path / KUBE_API / "ca.crt").read_bytes() == b"KUBE-CA-1"
    assert (tmp_path / "etc/istio/proxy").is_dir() and not (tmp_path / "etc/istio/proxy" / "..data").exists()
    # One TokenRequest per volume, though three containers mount kube-api-access.
    assert len(api.token_requests) == 2
    assert sorted(v.files) == sorted(
        [
            f"{ROOT_CERT}/root-cert.pem",
            f"{CRL}/ca-crl.pem",
            f"{TOKENS}/istio-token",
            "etc/istio/pod/labels",
            "etc/istio/pod/annotations",
            f"{KUBE_API}/token",
            f"{KUBE_API}/ca.crt",
            f"{KUBE_API}/namespace",
        ]
    )
    assert v.token_refresh_at < float("inf")


def test_an_unchanged_refresh_writes_nothing(tmp_path: Path) -> None:
    api, p = Api(), pod()
    first = api.mount(p, tmp_path)
    rels = [ROOT_CERT, CRL, TOKENS, KUBE_API, "etc/istio/pod"]
    before = {rel: (data_dir(tmp_path, rel), os.lstat(tmp_path / rel / "..data").st_ino) for rel in rels}
    ctimes = {rel: os.stat(tmp_path / rel).st_ctime_ns for rel in [*rels, "etc/istio/proxy"]}
    again = api.mount(p, tmp_path, tokens=False)
    assert {rel: (data_dir(tmp_path, rel), os.lstat(tmp_path / rel / "..data").st_ino) for rel in rels} == before
    assert {rel: os.stat(tmp_path / rel).st_ctime_ns for rel in ctimes} == ctimes  # not even a chown
    assert again.files == first.files
    assert len(api.token_requests) == 2


def test_a_refresh_before_tokens_are_due_carries_the_tokens_over_and_asks_nothing(tmp_path: Path) -> None:
    api, p = Api(), pod()
    first = api.mount(p, tmp_path)
    token = (tmp_path / KUBE_API / "token").read_bytes()
    istio_token = (tmp_path / TOKENS / "istio-token").read_bytes()
    old = data_dir(tmp_path, KUBE_API)
    api.token_requests.clear()
    api.objects["configmaps/kube-root-ca.crt"] = {"data": {"ca.crt": "KUBE-CA-2"}}
    again = api.mount(p, tmp_path, tokens=False)
    assert api.token_requests == []
    new = data_dir(tmp_path, KUBE_API)
    assert new != old and not old.exists()  # the projected volume changed: a new set, token included
    assert (new / "token").read_bytes() == token and (new / "ca.crt").read_bytes() == b"KUBE-CA-2"
    assert (tmp_path / TOKENS / "istio-token").read_bytes() == istio_token
    assert again.files[f"{KUBE_API}/token"] == first.files[f"{KUBE_API}/token"] == token
    assert again.token_refresh_at == float("inf")
    # When the tokens are due: new ones, in new sets.
    renewed = api.mount(p, tmp_path, tokens=True)
    assert len(api.token_requests) == 2
    assert (tmp_path / KUBE_API / "token").read_bytes() != token
    assert renewed.token_refresh_at < float("inf")


@pytest.mark.parametrize("inner_first", [False, True])
def test_volumes_mounted_inside_others_survive_a_refresh(tmp_path: Path, inner_first: bool) -> None:
    mounts = [
        {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
        {"name": "istio-ca-crl", "mountPath": "/var/run/secrets/istio/crl"},
        # An emptyDir two levels inside a secret volume, and one next to the podinfo volume.
        {"name": "workload-socket", "mountPath": "/etc/certs/run/uds"},
        {"name": "certs", "mountPath": "/etc/certs"},
        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
        {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
    ]
    api, p = Api(), pod(list(reversed(mounts)) if inner_first else mounts)
    api.mount(p, tmp_path)
    (tmp_path / "etc/certs/run/uds/socket").write_bytes(b"")  # what the proxy made in its emptyDirs
    (tmp_path / "etc/istio/proxy/envoy-rev.json").write_bytes(b"{}")
    crl_dir = os.stat(tmp_path / CRL).st_ino
    api.objects["configmaps/istio-ca-root-cert"] = {"data": {"root-cert.pem": "ROOT-2"}}
    api.objects["secrets/certs"] = {"data": {"cert.pem": base64.b64encode(b"CERT-2").decode()}}
    p["metadata"]["labels"]["version"] = "v2"
    api.mount(p, tmp_path, tokens=False)
    assert (tmp_path / ROOT_CERT / "root-cert.pem").read_bytes() == b"ROOT-2"
    assert (tmp_path / "etc/certs/cert.pem").read_bytes() == b"CERT-2"
    assert (tmp_path / "etc/istio/pod/labels").read_bytes() == b'app="helloworld"\nversion="v2"'
    assert os.stat(tmp_path / CRL).st_ino == crl_dir
    assert (tmp_path / CRL / "ca-crl.pem").read_bytes() == b"CRL-1"
    assert (tmp_path / "etc/certs/run/uds/socket").exists()
    assert (tmp_path / "etc/istio/proxy/envoy-rev.json").read_bytes() == b"{}"
    # The inner volume changes on its own, the outer one stays as it was.
    outer = data_dir(tmp_path, ROOT_CERT)
    api.objects["configmaps/istio-ca-crl"] = {"data": {"ca-crl.pem": "CRL-2"}}
    api.mount(p, tmp_path, tokens=False)
    assert (tmp_path / CRL / "ca-crl.pem").read_bytes() == b"CRL-2" and data_dir(tmp_path, ROOT_CERT) == outer


def test_a_key_named_like_a_volume_mounted_inside_is_refused(tmp_path: Path) -> None:
    api, p = Api(), pod()
    api.objects["configmaps/istio-ca-root-cert"] = {"data": {"root-cert.pem": "ROOT", "crl": "x"}}
    with pytest.raises(ValueError, match=r"volume istiod-ca-cert at /var/run/secrets/istio: 'crl' is the mount point"):
        api.mount(p, tmp_path)


def test_a_key_with_a_sub_path_is_refused_naming_the_volume(tmp_path: Path) -> None:
    api, p = Api(), pod()
    p["spec"]["volumes"].append({"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "x/a"}]}})
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "cfg", "mountPath": "/etc/cfg"}]
    api.objects["configmaps/cfg"] = {"data": {"a": "1"}}
    with pytest.raises(ValueError, match=r"volume cfg at /etc/cfg: 'x/a' is not a valid key"):
        api.mount(p, tmp_path)


def test_two_volumes_at_one_path_are_refused(tmp_path: Path) -> None:
    api, p = Api(), pod()
    p["spec"]["containers"][0]["volumeMounts"] = [{"name": "certs", "mountPath": "/var/run/secrets/istio/"}]
    with pytest.raises(ValueError, match="volumes certs and istiod-ca-cert are both mounted at /var/run/secrets/istio"):
        api.mount(p, tmp_path)


def test_the_pods_user_owns_its_volumes(tmp_path: Path) -> None:
    assert os.geteuid() == 0, "chown needs root (the lab's agent runs as root)"
    Api().mount(pod(), tmp_path)
    for rel in ["", ROOT_CERT, CRL, TOKENS, "etc/istio/proxy", "etc/istio/pod", "var/lib/istio/data"]:
        assert os.stat(tmp_path / rel).st_uid == UID, rel
    for path in [tmp_path / TOKENS / "istio-token", tmp_path / ROOT_CERT / "root-cert.pem"]:
        st_link, st_file = os.lstat(path), os.stat(path)
        assert (st_link.st_uid, st_file.st_uid, st_file.st_gid) == (UID, UID, UID), path
        assert st_file.st_mode & 0o777 == 0o644
    assert os.stat(data_dir(tmp_path, TOKENS)).st_uid == UID


def test_a_volume_written_file_by_file_by_an_older_lab_is_taken_over(tmp_path: Path) -> None:
    root = tmp_path
    (root / ROOT_CERT).mkdir(parents=True)
    (root / ROOT_CERT / "root-cert.pem").write_bytes(b"ROOT-1")
    (root / ROOT_CERT / ".root-cert.pem.tmp").write_bytes(b"half")  # an old writer's leftover
    (root / TOKENS).mkdir(parents=True)
    (root / TOKENS / "istio-token").write_bytes(b"OLD-TOKEN")
    (root / CRL).mkdir()
    api = Api()
    api.mount(pod(), root, tokens=False)  # the agent restarted: a refresh, no token due
    assert api.token_requests == []
    assert not (root / KUBE_API / "token").exists()  # a token not held yet waits for the tokens' turn
    assert os.readlink(root / TOKENS / "istio-token") == "..data/istio-token"
    assert (root / TOKENS / "istio-token").read_bytes() == b"OLD-TOKEN"
    assert os.readlink(root / ROOT_CERT / "root-cert.pem") == "..data/root-cert.pem"
    assert sorted(p.name for p in (root / ROOT_CERT).iterdir() if not p.name.startswith("..")) == [
        "crl",
        "root-cert.pem",
    ]
