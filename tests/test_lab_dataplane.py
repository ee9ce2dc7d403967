"""The lab's data plane, its pure parts: which pods run and how, hosts files, load-balancer rules, KWOK's
per-pod Exec/PortForward, the address plan. (Running pods for real is the end-to-end tier's.)"""

from __future__ import annotations

import ipaddress
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from lab import dataplane, network, pod_spec, pod_volumes, podexec, sandbox
from lab.images import lab_image
from lab.layout import MAX_CLUSTERS, MAX_NODES, Cluster
from lab.pod_spec import Host

HOST = Host(node_name="cluster1-node1", host_ip="127.0.1.1", cpus=2, memory_bytes=8 * 1024**3)
PROGRAMS = {
    "pilot-agent": "/lab/bin/pilot-agent",
    "envoy-bootstrap": "/lab/bin/envoy_bootstrap_tmpl.json",
    "envoy": "/venv/envoy",
    "python": "/venv/python",
    "repo": "/repo",
}


def injected_pod(**over: Any) -> dict[str, Any]:
    """A helloworld pod as Istio 1.30's injector leaves it (the parts the lab reads)."""
    pod: dict[str, Any] = {
        "metadata": {
            "name": "helloworld-v1-abc",
            "namespace": "sample",
            "uid": "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab",
            "labels": {"app": "helloworld", "version": "v1"},
            "annotations": {"sidecar.istio.io/status": "{}"},
        },
        "spec": {
            "nodeName": "cluster1-node1",
            "serviceAccountName": "helloworld",
            "initContainers": [
                {
                    "name": "istio-init",
                    "image": "docker.io/istio/proxyv2:1.30.4",
                    "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT"],
                }
            ],
            "containers": [
                {
                    "name": "helloworld",
                    "image": "docker.io/istio/examples-helloworld-v1:1.0",
                    "ports": [{"containerPort": 5000}],
                },
                {
                    "name": "istio-proxy",
                    "image": "docker.io/istio/proxyv2:1.30.4",
                    "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                    "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                    "ports": [{"containerPort": 15090, "name": "http-envoy-prom"}],
                    "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
                    "env": [
                        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "INSTANCE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "PROXY_CONFIG", "value": '{"discoveryAddress":"istiod.istio-system.svc:15012"}\n'},
                        {"name": "ISTIO_META_APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {
                            "name": "GOMAXPROCS",
                            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
                        },
                        {
                            "name": "GOMEMLIMIT",
                            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1"}},
                        },
                        {"name": "NEEDS", "value": "$(POD_NAME)-x"},
                    ],
                },
            ],
        },
        "status": {"podIP": "198.18.4.9", "phase": "Running"},
    }
    for k, v in over.items():
        pod[k] = v
    return pod


# ---- which pods run, and how -------------------------------------------------------------------------
def test_only_scheduled_injected_pods_with_an_ip_run() -> None:
    assert pod_spec.runnable(injected_pod())
    plain = injected_pod()
    plain["spec"]["containers"] = plain["spec"]["containers"][:1]
    assert not pod_spec.runnable(plain)  # no istio-proxy: KWOK's fake pod only
    no_ip = injected_pod(status={"phase": "Pending"})
    assert not pod_spec.runnable(no_ip)
    deleting = injected_pod()
    deleting["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    assert not pod_spec.runnable(deleting)
    native = injected_pod()
    native["spec"]["initContainers"].append(native["spec"]["containers"].pop())
    native["spec"]["initContainers"][-1]["restartPolicy"] = "Always"
    assert pod_spec.runnable(native)


def test_plan_runs_init_to_completion_then_the_proxy_and_the_app_as_the_lab_images() -> None:
    p = pod_spec.plan(injected_pod(), HOST, PROGRAMS)
    assert [(x.container, x.run_to_completion, x.uid) for x in p.processes] == [
        ("istio-init", True, 0),
        ("helloworld", False, 0),
        ("istio-proxy", False, 1337),
    ]
    init, app, proxy = p.processes
    assert init.argv[:2] == ("/lab/bin/pilot-agent", "istio-iptables")
    assert app.argv == ("/venv/python", "-m", "lab.apps.helloworld") and app.env["SERVICE_VERSION"] == "v1"
    assert app.env["HOSTNAME"] == "helloworld-v1-abc"  # the sample answers "instance: <HOSTNAME>"
    # $(VAR) expansion of args, as the kubelet does it
    assert proxy.argv == ("/lab/bin/pilot-agent", "proxy", "sidecar", "--domain", "sample.svc.cluster.local")
    assert proxy.env["POD_NAME"] == "helloworld-v1-abc" and proxy.env["INSTANCE_IP"] == "198.18.4.9"
    assert proxy.env["ISTIO_META_APP"] == "helloworld" and proxy.env["NEEDS"] == "helloworld-v1-abc-x"
    assert proxy.env["GOMAXPROCS"] == "2" and proxy.env["GOMEMLIMIT"] == str(1024**3)
    # Envoy is where the lab's proxy image has it; the rest of the pod's ProxyConfig is kept.
    cfg = json.loads(proxy.env["PROXY_CONFIG"])
    assert cfg == {"binaryPath": "/venv/envoy", "discoveryAddress": "istiod.istio-system.svc:15012"}
    assert p.skipped == ()
    # The one file of istio/proxyv2 pilot-agent reads, where its working directory makes it look.
    assert p.root_files == {"var/lib/istio/envoy/envoy_bootstrap_tmpl.json": "/lab/bin/envoy_bootstrap_tmpl.json"}


def test_a_container_without_a_lab_image_is_skipped_and_named() -> None:
    pod = injected_pod()
    pod["spec"]["containers"][0]["image"] = "example.com/unknown:1"
    p = pod_spec.plan(pod, HOST, PROGRAMS)
    assert [x.container for x in p.processes] == ["istio-init", "istio-proxy"]
    assert p.skipped == ("helloworld (example.com/unknown:1: no lab image)",)


def test_sleep_keeps_its_command_and_resources_without_limits_are_the_machines() -> None:
    pod = injected_pod()
    pod["spec"]["containers"][0] = {
        "name": "sleep",
        "image": "curlimages/curl:8.16.0",
        "command": ["/bin/sleep", "infinity"],
    }
    del pod["spec"]["containers"][1]["resources"]
    p = pod_spec.plan(pod, HOST, PROGRAMS)
    assert p.processes[1].argv == ("/bin/sleep", "infinity")
    assert p.processes[2].env["GOMAXPROCS"] == "2"  # the host's cores, not the fake node's 32
    assert p.processes[2].env["GOMEMLIMIT"] == str(8 * 1024**3)


def test_expand_and_quantities() -> None:
    env = {"A": "x"}
    assert pod_spec.expand("$(A)/$(B)/$$(A)", env) == "x/$(B)/$(A)"
    assert pod_spec.quantity("500m") == 0.5 and pod_spec.quantity("1Gi") == 1024**3 and pod_spec.quantity("2") == 2
    with pytest.raises(ValueError, match="not a resource quantity"):
        pod_spec.quantity("lots")


def test_images() -> None:
    assert lab_image("docker.io/istio/proxyv2:1.30.4", PROGRAMS).entrypoint == ("/lab/bin/pilot-agent",)  # type: ignore[union-attr]
    hw = lab_image("docker.io/istio/examples-helloworld-v2:1.0", PROGRAMS)
    assert hw is not None and hw.env["SERVICE_VERSION"] == "v2"
    assert lab_image("curlimages/curl:8.16.0", PROGRAMS) is not None
    assert lab_image("nginx:1.27", PROGRAMS) is None


# ---- hosts files, load balancers, the relay ---------------------------------------------------------
def svc(name: str, ns: str, ip: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, **spec}}


def test_hosts_file_has_the_names_cluster_dns_would_answer() -> None:
    sb = sandbox.Sandbox(Cluster(1), "u" * 8, "sample", "sleep-1", "198.18.4.7")
    text = sandbox.hosts_file(
        sb,
        [
            svc("helloworld", "sample", "198.19.1.20"),
            svc("istiod", "istio-system", "198.19.1.10"),
            svc("headless", "sample", "None"),
        ],
    )
    lines = text.splitlines()
    assert (
        "198.19.1.20\thelloworld.sample.svc.cluster.local helloworld.sample.svc helloworld.sample helloworld" in lines
    )
    assert "198.19.1.10\tistiod.istio-system.svc.cluster.local istiod.istio-system.svc istiod.istio-system" in lines
    assert not any("headless" in x for x in lines)
    assert "198.18.4.7\tsleep-1" in lines


def test_load_balancer_rules_send_each_port_to_the_running_pods() -> None:
    c = Cluster(2)
    gw = injected_pod()
    gw["metadata"].update(namespace="istio-system", name="gw-1", labels={"istio": "eastwestgateway"})
    gw["spec"]["containers"][1]["ports"] = [{"containerPort": 15443, "name": "tls"}]
    gw["status"]["podIP"] = "198.18.8.3"
    services = [
        svc(
            "gw",
            "istio-system",
            "198.19.2.30",
            type="LoadBalancer",
            selector={"istio": "eastwestgateway"},
            ports=[{"port": 15443, "targetPort": 15443}, {"port": 15021, "targetPort": "status"}],
        ),
        svc(
            "other",
            "istio-system",
            "198.19.2.31",
            type="ClusterIP",
            selector={"istio": "eastwestgateway"},
            ports=[{"port": 1}],
        ),
    ]
    lb = dataplane.lb_services(c, services, [gw])
    vip = "198.19.200.2"
    assert lb == [(vip, 15443, "TCP", [("198.18.8.3", 15443)]), (vip, 15021, "TCP", [])]  # no port named status
    rules = network.lb_rules(c, lb)
    assert (
        "-A LAB-LB-CLUSTER2 -d 198.19.200.2/32 -p tcp --dport 15443 -j DNAT --to-destination 198.18.8.3:15443" in rules
    )
    assert "15021" not in rules  # no backend: no rule, refused by the WAN (no route to the VIP)
    two = network.lb_rules(c, [(vip, 15443, "TCP", [("198.18.8.3", 15443), ("198.18.8.4", 15443)])])
    assert "--probability 0.50000 -j DNAT --to-destination 198.18.8.3:15443" in two
    assert two.strip().splitlines()[-2].endswith("-j DNAT --to-destination 198.18.8.4:15443")


def test_external_ips_in_the_load_balancer_range_are_served_as_kube_proxy_would() -> None:
    c = Cluster(3)
    gw = injected_pod()
    gw["metadata"].update(namespace="istio-system", labels={"istio": "eastwestgateway"})
    services = [
        svc(
            "gw",
            "istio-system",
            "198.19.3.30",
            type="ClusterIP",
            selector={"istio": "eastwestgateway"},
            externalIPs=["198.19.200.103", "192.0.2.3"],
            ports=[{"port": 15443, "targetPort": 15090}],
        ),
    ]
    # Only the address the lab's networks route to the WAN; the other cannot be reached from any pod.
    assert dataplane.lb_services(c, services, [gw]) == [("198.19.200.103", 15443, "TCP", [("198.18.4.9", 15090)])]


def test_istiod_address_is_its_service_cluster_ip() -> None:
    assert dataplane.istiod_address([svc("istiod", "istio-system", "198.19.1.10")]) == "198.19.1.10"
    assert dataplane.istiod_address([svc("istiod", "other", "198.19.1.10")]) is None


# ---- kubectl exec / port-forward --------------------------------------------------------------------
def test_kwok_objects_enter_the_pod_namespace() -> None:
    pod = injected_pod()
    ex = podexec.exec_object(pod, "imlab-c1-0f1e2d3c", Path("/lab/pods/x/root"))
    assert ex["metadata"]["name"] == "helloworld-v1-abc" and ex["metadata"]["namespace"] == "sample"
    proxy, default = ex["spec"]["execs"]
    assert proxy["containers"] == ["istio-proxy"]
    assert {"name": "LAB_POD_UID", "value": "1337"} in proxy["local"]["envs"]
    assert {"name": "LAB_POD_NETNS", "value": "imlab-c1-0f1e2d3c"} in default["local"]["envs"]
    pf = podexec.port_forward_object(pod, "imlab-c1-0f1e2d3c")
    ports = [f["ports"][0] for f in pf["spec"]["forwards"]]
    assert ports == [5000, 15000, 15020, 15021, 15090]
    cmd = pf["spec"]["forwards"][1]["command"]
    assert cmd[1:] == ["--net=/run/netns/imlab-c1-0f1e2d3c", "--", cmd[3], "STDIO", "TCP:127.0.0.1:15000"]


# ---- volumes ----------------------------------------------------------------------------------------
def test_volumes_are_written_where_the_agent_reads_them(tmp_path: Path) -> None:
    pod = injected_pod()
    pod["spec"]["volumes"] = [
        {"name": "istio-envoy", "emptyDir": {}},
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
        {
            "name": "istio-podinfo",
            "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
        },
        {
            "name": "istio-token",
            "projected": {
                "sources": [
                    {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}
                ]
            },
        },
    ]
    pod["spec"]["containers"][1]["volumeMounts"] = [
        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
        {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
        {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
        {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
    ]
    requests: list[tuple[str, dict[str, Any]]] = []

    def get(path: str) -> Any:
        assert path == "/api/v1/namespaces/sample/configmaps/istio-ca-root-cert"
        return {"data": {"root-cert.pem": "ROOT"}}

    def post(path: str, body: dict[str, Any]) -> Any:
        requests.append((path, body))
        return {"status": {"token": "TOKEN"}}

    v = pod_volumes.mount(pod, tmp_path, 1337, get, post)
    assert (tmp_path / "var/run/secrets/istio/root-cert.pem").read_text() == "ROOT"
    assert (tmp_path / "var/run/secrets/tokens/istio-token").read_text() == "TOKEN"
    assert (tmp_path / "etc/istio/pod/labels").read_text() == 'app="helloworld"\nversion="v1"'
    assert (tmp_path / "etc/istio/proxy").is_dir() and (tmp_path / "etc/istio/proxy").stat().st_uid == 1337
    path, body = requests[0]
    assert path == "/api/v1/namespaces/sample/serviceaccounts/helloworld/token"
    assert body["spec"]["audiences"] == ["istio-ca"] and body["spec"]["expirationSeconds"] == 43200
    assert body["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "helloworld-v1-abc",
        "uid": pod["metadata"]["uid"],
    }
    assert v.token_refresh_at < float("inf")
    # A refresh before the token is due asks for no token and keeps the file.
    requests.clear()
    again = pod_volumes.mount(pod, tmp_path, 1337, get, post, tokens=False)
    assert requests == [] and (tmp_path / "var/run/secrets/tokens/istio-token").read_text() == "TOKEN"
    assert again.token_refresh_at == float("inf")


# ---- the address plan -------------------------------------------------------------------------------
def test_every_lab_address_is_in_the_benchmarking_range_and_nothing_overlaps() -> None:
    bench = ipaddress.ip_network("198.18.0.0/15")
    nets = []
    for i in range(1, MAX_CLUSTERS + 1):
        c = Cluster(i)
        ranges = [c.pod_cidr, c.service_cidr, f"{c.load_balancer_ip}/32", f"{c.router_ip}/32", f"{c.wan_link[0]}/30"]
        for r in ranges:
            n = ipaddress.ip_network(r, strict=False)
            assert n.subnet_of(bench), r  # type: ignore[arg-type]
            nets.append(n)
        nodes = [ipaddress.ip_network(c.node_pod_cidr(k)) for k in range(1, MAX_NODES + 1)]
        assert all(n.subnet_of(ipaddress.ip_network(c.pod_cidr)) for n in nodes)  # type: ignore[arg-type]
        assert len(set(nodes)) == MAX_NODES
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert ipaddress.ip_network(network.LB_RANGE).subnet_of(bench)  # type: ignore[arg-type]


def test_the_exec_shim_needs_a_pod_and_looks_up_nothing_through_kwoks_path(tmp_path: Path) -> None:
    """KWOK's PATH holds only links to the shim: the shim must not resolve any program through it before
    resetting PATH (a loop), and refuses a pod the data plane does not run."""
    import subprocess

    link = tmp_path / "curl"
    link.symlink_to(podexec.SHIM)
    proc = subprocess.run([str(link), "-V"], env={"PATH": str(tmp_path)}, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 126, proc
    assert "only possible into pods the lab's data plane runs" in proc.stderr


def test_the_hosts_file_is_rewritten_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ip netns exec` bind-mounts the file into each process's view: a bind mount follows its inode, so an
    update must keep the inode (a rename would leave running processes on the old names)."""
    from lab import netns

    monkeypatch.setattr(netns, "ETC_NETNS_DIR", tmp_path)
    sb = sandbox.Sandbox(Cluster(1), "u" * 8, "sample", "sleep-1", "198.18.4.7")
    assert sandbox.write_etc(sb, "a\n")
    inode = (tmp_path / sb.netns / "hosts").stat().st_ino
    assert not sandbox.write_etc(sb, "a\n")  # unchanged: not written
    assert sandbox.write_etc(sb, "a much longer text\n") and sandbox.write_etc(sb, "b\n")
    assert (tmp_path / sb.netns / "hosts").read_text() == "b\n"
    assert (tmp_path / sb.netns / "hosts").stat().st_ino == inode
    assert "nameserver 127.0.0.1" in (tmp_path / sb.netns / "resolv.conf").read_text()


def test_a_container_process_is_known_by_its_pid_and_start_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after its start a container's process is still `ip netns exec` entering the pod's namespace: it
    must count as running (or a second copy would be started: its ports taken, it would exit over and
    over); a recorded pid the kernel gave to another process later does not count."""
    import os

    from lab import layout

    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    sb = sandbox.Sandbox(Cluster(1), "u" * 8, "sample", "sleep-1", "198.18.4.7")
    sb.pidfile("sleep").parent.mkdir(parents=True)
    me = os.getpid()
    sb.pidfile("sleep").write_text(f"{me} {sandbox._start_time(me)}\n")
    assert sandbox.running_pid(sb, "sleep") == me
    sb.pidfile("sleep").write_text(f"{me} 1\n")  # same pid, another process's start time
    assert sandbox.running_pid(sb, "sleep") is None
    sb.pidfile("sleep").write_text(f"{me}\n")  # an old pid file without a start time
    assert sandbox.running_pid(sb, "sleep") is None


def test_a_container_of_another_user_can_open_its_stdout_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Envoy's access log ``/dev/stdout`` reopens the container's log by name as the container's user (1337
    for istio-proxy): a root-owned log refused it, and istiod's listeners with it ("unable to open file
    '/dev/stdout': Permission denied"). Run for real, as that user, without the pod's network namespace."""
    from lab import layout

    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    monkeypatch.setattr(sandbox, "_argv", lambda sb, p: sandbox.as_user(p))
    sb = sandbox.Sandbox(Cluster(1), "u" * 8, "sample", "sleep-1", "198.18.4.7")
    sb.root.mkdir(parents=True)
    proxy = pod_spec.Process("istio-proxy", ("sh", "-c", "echo access-log-line >/dev/stdout"), {}, pod_spec.PROXY_UID)
    sandbox.run_to_completion(sb, proxy)
    assert sb.log("istio-proxy").read_text().endswith("access-log-line\n")
    assert sb.log("istio-proxy").stat().st_uid == pod_spec.PROXY_UID


def _gateway_pod(uid: str, ip: str) -> dict[str, Any]:
    pod = injected_pod()
    pod["metadata"].update(namespace="istio-system", uid=uid, labels={"istio": "eastwestgateway"})
    pod["spec"]["containers"][1]["ports"] = [{"containerPort": 15443}]
    pod["status"]["podIP"] = ip
    return pod


def _agent(monkeypatch: pytest.MonkeyPatch, c: Cluster, api: dict[str, Any], running: list[Any]) -> Any:
    """An agent over a fake API (path -> answer) running these pods, with nothing started or stopped for real."""
    agent = dataplane.Agent.__new__(dataplane.Agent)
    agent.c, agent.lb_text, agent.failed, agent.stopping = c, "", {}, {}
    agent.services, agent.want, agent.lb_lock = (), {}, threading.Lock()
    agent.running = {
        p["metadata"]["uid"]: dataplane.Running(sandbox.from_pod(c, p), p, dataplane.PodPlan((), (), {}))
        for p in running
    }
    monkeypatch.setattr(dataplane, "reap_children", lambda: None)
    monkeypatch.setattr(sandbox, "existing", lambda c: [])
    monkeypatch.setattr(agent, "get", lambda path: api[path], raising=False)
    monkeypatch.setattr(agent, "_ensure_relay", lambda services: None, raising=False)
    monkeypatch.setattr(agent, "_keep_alive", lambda r, now: None, raising=False)
    monkeypatch.setattr(agent, "_refresh", lambda r, services, now: None, raising=False)

    def start_pod(pod: Any, services: Any) -> None:
        agent.running[pod["metadata"]["uid"]] = dataplane.Running(
            sandbox.from_pod(c, pod), pod, dataplane.PodPlan((), (), {})
        )

    monkeypatch.setattr(agent, "start_pod", start_pod, raising=False)
    return agent


def _gateway_api(*pods: dict[str, Any]) -> dict[str, Any]:
    gw_svc = svc("gw", "istio-system", "198.19.2.30", type="LoadBalancer", selector={"istio": "eastwestgateway"})
    gw_svc["spec"]["ports"] = [{"port": 15443, "targetPort": 15443}]
    return {
        "/api/v1/pods": {"items": list(pods)},
        "/api/v1/services": {"items": [gw_svc]},
        "/api/v1/nodes": {"items": [{"metadata": {"name": "cluster1-node1"}}]},
    }


def test_a_terminating_pod_serves_only_while_no_other_pod_backs_its_service() -> None:
    """kube-proxy's rule: a Service's ready pods; with none, its terminating pods that still serve."""
    c = Cluster(2)
    old, new = _gateway_pod("old-uid", "198.18.8.1"), _gateway_pod("new-uid", "198.18.8.2")
    services = _gateway_api()["/api/v1/services"]["items"]
    vip = "198.19.200.2"
    assert dataplane.lb_services(c, services, [], [old]) == [(vip, 15443, "TCP", [("198.18.8.1", 15443)])]
    assert dataplane.lb_services(c, services, [new], [old]) == [(vip, 15443, "TCP", [("198.18.8.2", 15443)])]
    assert dataplane.lb_services(c, services, [], []) == [(vip, 15443, "TCP", [])]


def test_a_pod_being_deleted_leaves_the_load_balancer_before_it_is_torn_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway replaced: the old pod serves while it drains and nothing else backs the Service, its
    replacement takes over once started, and the old one is out of the load balancer before its network
    namespace is deleted (a connection sent there would hang until the client times out)."""
    c = Cluster(2)
    old, new = _gateway_pod("old-uid", "198.18.8.1"), _gateway_pod("new-uid", "198.18.8.2")
    agent = _agent(monkeypatch, c, _gateway_api(new), [old])  # the old pod is gone from the API
    programmed: list[str] = []
    first_programmed = threading.Event()

    def apply_lb_rules(rules: str) -> None:
        programmed.append(rules)
        first_programmed.set()

    monkeypatch.setattr(network, "apply_lb_rules", apply_lb_rules)
    torn_down: list[str] = []
    # The drain lasts until the poll has programmed the load balancer (a real one takes seconds).
    monkeypatch.setattr(sandbox, "stop_containers", lambda sb, order, grace, cut_short=None: first_programmed.wait(10))
    monkeypatch.setattr(sandbox, "teardown", lambda sb: torn_down.append(agent.lb_text))
    monkeypatch.setattr(agent, "_delete_kwok_objects", lambda sb: None, raising=False)
    agent.poll()
    for st in list(agent.stopping.values()):  # the stop runs in a thread of its own
        st.thread.join(10)
    draining, *rest = programmed
    assert "--to-destination 198.18.8.1:15443" in draining  # nothing else backed the Service yet
    assert rest and all("198.18.8.1" not in rules for rules in rest), programmed
    assert "--to-destination 198.18.8.2:15443" in agent.lb_text and "198.18.8.1" not in agent.lb_text
    assert len(torn_down) == 1 and "198.18.8.1" not in torn_down[0]


def test_pods_stop_in_the_background_and_an_address_waits_for_its_old_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod being stopped (a proxy drains for seconds) holds up neither the other pods' starts nor the next
    poll; a new pod given the address of one still draining (KWOK reuses addresses) cuts that drain short
    and starts once the old pod is gone, never beside it on the bridge."""
    c = Cluster(2)
    old, reuser, other = injected_pod(), injected_pod(), injected_pod()
    addresses = (("old-uid", "198.18.8.1"), ("reuse-uid", "198.18.8.1"), ("o-uid", "198.18.8.5"))
    for pod, (uid, ip) in zip((old, reuser, other), addresses, strict=True):
        pod["metadata"]["uid"] = uid
        pod["status"]["podIP"] = ip
    api = {**_gateway_api(reuser, other), "/api/v1/services": {"items": []}}
    agent = _agent(monkeypatch, c, api, [old])
    monkeypatch.setattr(network, "apply_lb_rules", lambda rules: None)
    drains: list[bool] = []

    def stop_pod(r: Any, st: Any) -> None:  # a drain that lasts until it is cut short
        drains.append(st.cut_short.wait(10))

    monkeypatch.setattr(agent, "stop_pod", stop_pod, raising=False)
    agent.poll()
    assert set(agent.running) == {"o-uid"} and agent.stopping["old-uid"].cut_short.is_set()
    agent.stopping["old-uid"].thread.join(10)
    agent.poll()
    assert set(agent.running) == {"o-uid", "reuse-uid"} and not agent.stopping and drains == [True]


def test_a_container_is_stopped_as_a_kubelet_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to its main process only (pilot-agent; Envoy, its child, is not signalled and keeps serving
    while pilot-agent drains it), then SIGKILL to what is left of the group once the main process is gone.
    Real processes, without the pod's network namespace."""
    from lab import layout
    from lab.wait import wait_until

    monkeypatch.setattr(layout, "LAB_DIR", tmp_path)
    monkeypatch.setattr(sandbox, "_argv", lambda sb, p: sandbox.as_user(p))
    sb = sandbox.Sandbox(Cluster(1), "u" * 8, "sample", "sleep-1", "198.18.4.7")
    sb.root.mkdir(parents=True)
    script = (
        "sh -c 'trap \"echo child-term\" TERM; echo $$ >child.pid; while :; do sleep 0.05; done' & "
        'trap "echo leader-term; sleep 0.3; exit 0" TERM; echo ready; wait'
    )
    sandbox.start(sb, pod_spec.Process("istio-proxy", ("sh", "-c", script), {}, 0))
    child_pid = sb.root / "child.pid"

    def written() -> str | None:
        return child_pid.read_text().strip() if child_pid.exists() else None

    child = int(wait_until("the child's pid", written, 10, 0.05))
    sandbox.stop_container(sb, "istio-proxy", grace=5.0)
    lines = sb.log("istio-proxy").read_text().splitlines()  # the first is the lab's own (the command)
    assert "leader-term" in lines and "child-term" not in lines, lines
    # Killed with the group once the main process had exited (gone, or a zombie not yet reaped).
    wait_until("the child to be killed", lambda: sandbox._is_zombie(child), 5, 0.05)
    assert sandbox.running_pid(sb, "istio-proxy") is None


def test_a_networks_bridge_keeps_its_mac_when_a_pod_goes() -> None:
    """The pods' router must not change its MAC when the port with the lowest one leaves (a bridge left to
    itself does): the pods' ARP entries would point nowhere. Run for real, in a scratch network namespace."""
    import subprocess
    import uuid

    from lab import netns as lab_netns

    ns = f"t{uuid.uuid4().hex[:10]}"  # not the lab's prefix: lab down must not meet it
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        mac = network.bridge_mac(Cluster(7))
        network.ensure_bridge(ns, mac)
        macs = []
        for i in (1, 2):
            lab_netns.ip("link", "add", f"v{i}", "type", "veth", "peer", "name", f"p{i}", netns=ns)
            lab_netns.ip("link", "set", f"v{i}", "master", network.BRIDGE, "up", netns=ns)
            macs.append(lab_netns.ip("-o", "link", "show", f"v{i}", netns=ns).split("link/ether ")[1].split()[0])
        lowest = min(range(2), key=lambda i: macs[i])
        lab_netns.ip("link", "delete", f"v{lowest + 1}", netns=ns)
        assert f"link/ether {mac} " in lab_netns.ip("-o", "link", "show", network.BRIDGE, netns=ns)
        network.ensure_bridge(ns, mac)  # kept when it exists
        assert f"link/ether {mac} " in lab_netns.ip("-o", "link", "show", network.BRIDGE, netns=ns)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_every_clusters_bridge_mac_is_its_own_and_locally_administered() -> None:
    macs = [network.bridge_mac(Cluster(i)) for i in range(1, MAX_CLUSTERS + 1)]
    assert len(set(macs)) == len(macs)
    assert all(int(m.split(":")[0], 16) & 0b11 == 0b10 for m in macs)  # locally administered, unicast
