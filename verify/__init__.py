"""``scripts/verify`` (``python -m verify``): prove that the clusters form one mesh.

The proof comes from what every istiod and every API server says. For every istiod of the mesh it reports

* the clusters it has synced (what ``istioctl remote-clusters`` shows: istiod's ``/debug/clusterz``),
* the CA it signs with: the certificate istiod serves on its xDS TLS port (15012) must chain to the
  mesh root and be issued by that cluster's intermediate in ``cacerts``,
* the gateway it knows for each network (``/debug/networkz``: east-west gateway address, port 15443),
* for a named service (``helloworld.sample`` by default) its endpoints per cluster and network
  (``/debug/endpointShardz``); endpoints on another network are reached through that network's gateway;
* with ``--proxy-view``, what istiod sends over xDS to a sidecar (the service's endpoints per network)
  and to the east-west gateway (its AUTO_PASSTHROUGH listener on 15443);
* with ``--traffic``, the guide's last step: requests from each cluster's ``sleep`` pod to helloworld, and
  which clusters answered.

When something is wrong it names the cause, from the failure modes of multi-primary meshes
(reference/ISTIO_FACTS.md). The causes come from the clusters' own objects (read with the admin
kubeconfigs) and from the remote secrets' credentials, tried from here.

One concept per module:

* ``facts``   — what is read, as plain data (``ClusterFacts``, ``IstiodFacts``, ...) and ``Finding``;
* ``access``  — how an istiod is reached (directly, or port-forward through the API server);
* ``kube``    — Kubernetes reads with a timeout, API errors as one line;
* ``collect`` — filling the facts from API servers and istiods (problems recorded, never raised);
* ``checks``  — one pure function per check of the clusters' own objects, ``diagnose`` runs them all
  (unit-tested with plain data);
* ``istiod_checks`` — the checks of what each istiod reports (debug endpoints, serving certificate);
* ``certs``   — certificate fingerprints and chains;
* ``report``  — the JSON report and its text rendering;
* ``cli``     — the command line;
* ``proxy``, ``proxy_checks``, ``xds`` — the proxy view (``--proxy-view``): what istiod sends a sidecar of
  the client and the east-west gateway over xDS, and the checks on it;
* ``traffic``, ``traffic_checks`` — the traffic test (``--traffic``): requests sent from each cluster's
  ``sleep`` pod through the API server's exec, who answered, and the checks naming why a cluster is never
  reached;
* ``edits``, ``managed_fields``, ``edit_checks`` — edits by others (``--edits``, on by default): the
  program's objects (those carrying its created-by annotation) read with their ``managedFields``, which
  managers are the program, istiod and Kubernetes, and the warnings naming every other manager's fields.
"""

from .access import DirectAccess, IstiodAccess, PortForwardAccess
from .checks import diagnose
from .cli import main, run_verify
from .collect import collect_cluster, collect_istiod, endpoints_of
from .facts import ClusterFacts, Finding, IstiodFacts, RemoteSecretFacts, Reply, Target, TrafficFacts
from .report import render_text, report_json
from .traffic import run_traffic, traffic_from
from .traffic_checks import check_traffic

__all__ = [
    "ClusterFacts",
    "DirectAccess",
    "Finding",
    "IstiodAccess",
    "IstiodFacts",
    "PortForwardAccess",
    "RemoteSecretFacts",
    "Reply",
    "Target",
    "TrafficFacts",
    "check_traffic",
    "collect_cluster",
    "collect_istiod",
    "diagnose",
    "endpoints_of",
    "main",
    "render_text",
    "report_json",
    "run_traffic",
    "run_verify",
    "traffic_from",
]
