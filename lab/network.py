"""The lab's networks: one bridge per network, a WAN between them that carries only load-balanced traffic.

What Istio's "different networks" means, built from network namespaces on this machine::

      pod netns (imlab-c1-...)          pod netns                  pod netns (imlab-c2-...)
      eth0 198.18.4.x/32                eth0                       eth0 198.18.8.y/32
          |  (veth)                       |                          |
      +---br0------------------+      (same)               +---br0------------------+
      | imlab-net1  router      |                            | imlab-net2  router      |
      | 198.19.201.1 on br0     |                            | 198.19.201.2 on br0     |
      | istiod relay on its     |                            | ...                     |
      |   Service address (lo)  |                            |                         |
      +-------wan--------------+                            +-------wan--------------+
              | 198.19.202.6/30                                     | 198.19.202.10/30
              +--------------------- imlab-wan -----------------------+
                    load balancers: 198.19.200.<i>:<port> -> DNAT to the Service's pods, masqueraded

* A network namespace per network holds the bridge every pod of that network is plugged into and
  routes between them (it is every pod's default gateway). It knows its own pods' range and, through
  its link to the WAN, the load balancers' range 198.19.200.0/24. Nothing else: a packet from a pod to
  another network's pod has no route and fails at once (ICMP unreachable), as between two VPCs.
* The WAN namespace plays the cloud's load balancers: ``198.19.200.<i>`` (cluster ``i``'s VIP,
  ``Cluster.load_balancer_ip``) on a Service port is DNAT'ed to one of the Service's running pods and
  masqueraded, so the reply comes back through it. Its FORWARD policy is DROP except for those
  connections: even a packet routed to it cannot cross from one network to another.
* No namespace has a link to the host's own namespace or to any interface leaving the machine: the
  lab's traffic cannot be routed off it. istiod (a local process on the host's loopback) is reached
  through a relay (``lab/relay.py``) that listens in the network namespace and connects on the host.
"""

from __future__ import annotations

from .layout import Cluster
from .netns import PREFIX, add, delete, exists, ip, iptables_restore, iptables_save, lab_namespaces, run, sysctl

WAN = f"{PREFIX}wan"
#: The load balancers' addresses (``Cluster.load_balancer_ip``), routed from every network to the WAN.
LB_RANGE = "198.19.200.0/24"
BRIDGE = "br0"


def network_ns(c: Cluster) -> str:
    """The namespace of the cluster's network (one network per cluster in the lab)."""
    return f"{PREFIX}net{c.index}"


def lb_chain(c: Cluster) -> str:
    return f"LAB-LB-{c.name.upper()}"


def ensure_wan() -> None:
    """The WAN namespace: forwarding on, nothing forwarded but load-balanced connections."""
    add(WAN)
    sysctl(WAN, "net.ipv4.ip_forward", "1")
    # Masquerade what a load balancer DNAT'ed; drop any other forwarded packet.
    iptables_restore(
        WAN,
        "*filter\n:FORWARD DROP [0:0]\n"
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n"
        "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT\n"
        "COMMIT\n"
        "*nat\n:POSTROUTING ACCEPT [0:0]\n"
        "-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE\n"
        "COMMIT\n",
    )


def ensure_network(c: Cluster) -> None:
    """The cluster's network namespace, its bridge and its link to the WAN (kept when it exists)."""
    ensure_wan()
    ns = network_ns(c)
    add(ns)
    sysctl(ns, "net.ipv4.ip_forward", "1")
    # Pod-to-pod traffic of one network turns around on the bridge: no redirects to teach pods otherwise.
    sysctl(ns, "net.ipv4.conf.all.send_redirects", "0")
    ensure_bridge(ns, bridge_mac(c))
    sysctl(ns, f"net.ipv4.conf.{BRIDGE}.send_redirects", "0")
    _ensure_addr(ns, BRIDGE, f"{c.router_ip}/32")
    ip("route", "replace", c.pod_cidr, "dev", BRIDGE, "scope", "link", netns=ns)

    wan_end, net_end = c.wan_link
    wan_if = f"net{c.index}"
    if wan_if not in ip("-o", "link", "show", netns=WAN):
        ip("link", "add", wan_if, "type", "veth", "peer", "name", "wan", "netns", ns, netns=WAN)
    _ensure_addr(WAN, wan_if, f"{wan_end}/30")
    _ensure_addr(ns, "wan", f"{net_end}/30")
    ip("link", "set", wan_if, "up", netns=WAN)
    ip("link", "set", "wan", "up", netns=ns)
    ip("route", "replace", LB_RANGE, "via", wan_end, netns=ns)
    ip("route", "replace", c.pod_cidr, "via", net_end, netns=WAN)
    _ensure_lb_chain(c)


def bridge_mac(c: Cluster) -> str:
    """The MAC address of the cluster's bridge, the pods' router: fixed, locally administered, one per cluster."""
    return f"02:00:c6:12:{c.index:02x}:01"


def ensure_bridge(ns: str, mac: str) -> None:
    """The bridge in ``ns``, up, with ``mac`` set explicitly. A bridge left to itself takes the lowest MAC
    of its ports and changes it when that port goes: every pod's ARP entry for its router then points at
    an address nobody answers, and the network's traffic is lost until those entries are probed again
    (measured: 16 s of timeouts when an east-west gateway's pod was deleted). A router's MAC stays."""
    if BRIDGE not in ip("-o", "link", "show", netns=ns):
        ip("link", "add", BRIDGE, "type", "bridge", netns=ns)
    ip("link", "set", BRIDGE, "address", mac, netns=ns)
    ip("link", "set", BRIDGE, "up", netns=ns)


def _ensure_addr(ns: str, dev: str, cidr: str) -> None:
    if f" {cidr} " not in ip("-o", "addr", "show", "dev", dev, netns=ns):
        ip("addr", "add", cidr, "dev", dev, netns=ns)


def _ensure_lb_chain(c: Cluster) -> None:
    chain = lb_chain(c)
    rules = iptables_save(WAN)
    if f"-A PREROUTING -j {chain}" not in rules:
        iptables_restore(WAN, f"*nat\n:{chain} - [0:0]\n-A PREROUTING -j {chain}\nCOMMIT\n")


def lb_rules(c: Cluster, services: list[tuple[str, int, str, list[tuple[str, int]]]]) -> str:
    """The ``iptables-restore`` document of the cluster's load balancers (pure).

    ``services``: (address, port, protocol, [(pod IP, target port)...]) for every address and port the
    cluster's load balancer serves (``dataplane.lb_services``). Several pods share the connections at
    random (as kube-proxy does). A port with no running pod has no rule: the WAN has no route to the
    address itself, so such a connection is refused at once (ICMP unreachable), as by a load balancer
    with no healthy backend.
    """
    chain = lb_chain(c)
    lines = ["*nat", f":{chain} - [0:0]"]
    for address, port, proto, backends in sorted(services):
        match = f"-A {chain} -d {address}/32 -p {proto.lower()} --dport {port}"
        for i, (pod_ip, target) in enumerate(backends):
            left = len(backends) - i
            pick = f" -m statistic --mode random --probability {1 / left:.5f}" if left > 1 else ""
            lines.append(f"{match}{pick} -j DNAT --to-destination {pod_ip}:{target}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply_lb_rules(rules: str) -> None:
    iptables_restore(WAN, rules)


def add_service_address(c: Cluster, address: str) -> None:
    """A Service's address on the network namespace's loopback, for a relay to listen on."""
    _ensure_addr(network_ns(c), "lo", f"{address}/32")


def remove_service_address(c: Cluster, address: str) -> None:
    ip("addr", "del", f"{address}/32", "dev", "lo", netns=network_ns(c), check=False)


def connect_fails(from_ns: str, address: str, port: int, timeout: float = 3.0) -> str | None:
    """Try a TCP connection from inside ``from_ns``; None when it connects, else why it did not."""
    script = (
        "import socket,sys\n"
        f"s=socket.socket(); s.settimeout({timeout})\n"
        f"try:\n s.connect(({address!r},{port}))\nexcept OSError as e:\n print(e); sys.exit(0)\n"
    )
    import sys

    out = run([sys.executable, "-c", script], netns=from_ns)
    return out.strip() or None


def teardown() -> list[str]:
    """Delete every namespace the lab made (pods first, then networks, the WAN last); their names."""
    names = lab_namespaces()
    order = sorted(names, key=lambda n: (n == WAN, n.startswith(f"{PREFIX}net"), n))
    for name in order:
        delete(name)
    return order


__all__ = [
    "BRIDGE",
    "LB_RANGE",
    "WAN",
    "add_service_address",
    "apply_lb_rules",
    "connect_fails",
    "ensure_network",
    "ensure_wan",
    "exists",
    "lb_rules",
    "network_ns",
    "remove_service_address",
    "teardown",
]
