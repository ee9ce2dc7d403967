"""Addresses, ports, CIDRs and paths of the local lab: one place, so nothing collides.

Cluster ``i`` (1-based) is named ``cluster<i>``, sits on network ``network<i>`` and owns the loopback
address ``127.0.<i>.1`` (all of 127.0.0.0/8 routes to ``lo``) and the port block ``20000 + 100*i``:

=======================  ==============  =========  =========  =========
what                     port            cluster1   cluster2   cluster3
=======================  ==============  =========  =========  =========
kube-apiserver (https)   block + 43      20143      20243      20343
etcd client (https)      block + 79      20179      20279      20379
etcd peer (https)        block + 80      20180      20280      20380
kube-controller-manager  block + 57      20157      20257      20357
kube-scheduler           block + 59      20159      20259      20359
kwok (healthz, metrics)  block + 47      20147      20247      20347
istiod http (8080)       block + 8       20108      20208      20308
istiod xDS grpc (15010)  block + 10      20110      20210      20310
istiod xDS tls (15012)   block + 12      20112      20212      20312
istiod monitoring        block + 14      20114      20214      20314
istiod webhooks (15017)  block + 17      20117      20217      20317
istiod ControlZ (9876)   block + 76      20176      20276      20376
=======================  ==============  =========  =========  =========

(istiod runs once a mesh program installs its Deployment: the follower, ``lab/follower.py``, starts it.)

Every control-plane process binds only its cluster's loopback address. Every address the lab gives
pods, Services and load balancers comes from 198.18.0.0/15 (RFC 2544's benchmarking range, never
routed on the internet) and exists only inside network namespaces the lab creates (``lab/network.py``):

=================================  ==========================  ==================
what                               cluster/network ``i``       cluster1
=================================  ==========================  ==================
pods (KWOK's ``--cidr``)           ``198.18.<4i>.0/22``         198.18.4.0/22
fake node ``k``'s pod range        the ``k``-th /26 of it       198.18.4.0/26, .64/26
Services                           ``198.19.<i>.0/24``          198.19.1.0/24
load balancers (one VIP)           ``198.19.200.<i>``           198.19.200.1
network ``i``'s router (bridge)    ``198.19.201.<i>``           198.19.201.1
network ``i`` <-> WAN link (/30)   ``198.19.202.<4i>/30``       198.19.202.4/30
=================================  ==========================  ==================
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

MAX_CLUSTERS = 50
PORT_BASE = 20000
NODES_PER_CLUSTER = 2
#: Fake nodes per cluster at most: each owns a /26 of the cluster's /22 of pod addresses.
MAX_NODES = 16

REPO = Path(__file__).resolve().parent.parent
LAB_DIR = Path(os.environ.get("LAB_DIR", REPO / ".lab"))


@dataclasses.dataclass(frozen=True)
class Cluster:
    index: int

    # --- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"cluster{self.index}"

    @property
    def network(self) -> str:
        return f"network{self.index}"

    @property
    def ip(self) -> str:
        """The cluster's loopback address: API server, etcd, ... and the fake nodes' InternalIP."""
        return f"127.0.{self.index}.1"

    # --- ports ----------------------------------------------------------------------------------
    def _port(self, offset: int) -> int:
        return PORT_BASE + 100 * self.index + offset

    @property
    def apiserver_port(self) -> int:
        return self._port(43)

    @property
    def etcd_port(self) -> int:
        return self._port(79)

    @property
    def etcd_peer_port(self) -> int:
        return self._port(80)

    @property
    def controller_manager_port(self) -> int:
        return self._port(57)

    @property
    def scheduler_port(self) -> int:
        return self._port(59)

    @property
    def kwok_port(self) -> int:
        return self._port(47)

    #: istiod's listeners: its in-cluster port -> the lab port on this cluster's address.
    @property
    def istiod_ports(self) -> dict[int, int]:
        return {
            8080: self._port(8),
            15010: self._port(10),
            15012: self._port(12),
            15014: self._port(14),
            15017: self._port(17),
            9876: self._port(76),
        }

    @property
    def server(self) -> str:
        return f"https://{self.ip}:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"https://{self.ip}:{self.etcd_port}"

    # --- in-cluster ranges (198.18.0.0/15, inside the lab's network namespaces) -----------------
    @property
    def service_cidr(self) -> str:
        return f"198.19.{self.index}.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))

    @property
    def pod_cidr(self) -> str:
        return f"198.18.{4 * self.index}.0/22"

    def node_names(self, count: int = NODES_PER_CLUSTER) -> list[str]:
        return [f"{self.name}-node{k}" for k in range(1, count + 1)]

    def node_pod_cidr(self, k: int) -> str:
        if not 1 <= k <= MAX_NODES:
            raise ValueError(f"node {k}: a cluster has at most {MAX_NODES} nodes")
        return str(list(ipaddress.ip_network(self.pod_cidr).subnets(new_prefix=26))[k - 1])

    @property
    def load_balancer_ip(self) -> str:
        """The address the lab's load balancer gives every LoadBalancer Service of this cluster."""
        return f"198.19.200.{self.index}"

    # --- the cluster's network (one per cluster in the lab: network<i>) -------------------------
    @property
    def router_ip(self) -> str:
        """The network's router on its bridge: every pod's default gateway."""
        return f"198.19.201.{self.index}"

    @property
    def wan_link(self) -> tuple[str, str]:
        """The /30 between the WAN and this network: (the WAN's end, the network's end)."""
        return f"198.19.202.{4 * self.index + 1}", f"198.19.202.{4 * self.index + 2}"

    # --- files ----------------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return LAB_DIR / self.name

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (O=system:masters), context named after the cluster."""
        return self.dir / "kubeconfig"

    def component_kubeconfig(self, component: str) -> Path:
        return self.dir / f"{component}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.dir / "logs" / f"{component}.log"

    def pidfile(self, component: str) -> Path:
        return self.dir / "run" / f"{component}.pid"


def clusters(n: int) -> list[Cluster]:
    if not 1 <= n <= MAX_CLUSTERS:
        raise ValueError(f"--clusters must be between 1 and {MAX_CLUSTERS}, not {n}")
    return [Cluster(i) for i in range(1, n + 1)]


def existing_clusters() -> list[Cluster]:
    """The clusters that have a directory under .lab/, in index order."""
    found = []
    if LAB_DIR.is_dir():
        for p in LAB_DIR.iterdir():
            if p.is_dir() and p.name.startswith("cluster") and p.name[7:].isdigit():
                found.append(Cluster(int(p.name[7:])))
    return sorted(found, key=lambda c: c.index)
