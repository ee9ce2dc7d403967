"""Names that Istio mandates, each with one home.

Every value here is fixed by Istio (charts, istioctl, istiod) or by Kubernetes, not by this project:
see reference/ISTIO_FACTS.md. Changing one breaks the mesh silently, so tests assert them.
"""

from __future__ import annotations

#: Type-token package of every component in this library (``istiomesh:index:<Class>``), and the name of
#: its Pulumi plugin (``pulumi-resource-istiomesh``).
PACKAGE = "istiomesh"
#: The distribution's version (pyproject.toml says the same; a test checks): the plugin's version too.
PACKAGE_VERSION = "0.2.0"

#: Namespace istiod watches for ``cacerts`` and remote secrets.
ISTIO_NAMESPACE = "istio-system"

#: Label on ``istio-system`` (and on the east-west gateway) telling istiod the cluster's network.
NETWORK_LABEL = "topology.istio.io/network"

#: Secret holding the plugged-in CA; istiod mounts it as optional and falls back to a self-signed CA.
CACERTS_SECRET = "cacerts"
CA_CERT_KEY = "ca-cert.pem"
CA_KEY_KEY = "ca-key.pem"
ROOT_CERT_KEY = "root-cert.pem"
CERT_CHAIN_KEY = "cert-chain.pem"

#: istiod's Deployment (the ``istiod`` chart, default revision).
ISTIOD_DEPLOYMENT = "istiod"
#: Pod-template annotation on istiod holding the uid of the ``cacerts`` Secret it was started with: a
#: recreated secret changes it, which rolls istiod (it reads a plugged-in CA only at start-up).
CACERTS_UID_ANNOTATION = "istio-mesh.dev/cacerts-uid"

#: The ServiceAccount the ``base`` chart renders for remote readers, bound to the reader ClusterRole.
READER_SERVICE_ACCOUNT = "istio-reader-service-account"

#: This program's narrow reader (ServiceAccount, ClusterRole, ClusterRoleBinding): what peers' tokens
#: belong to unless ``remoteAccess.reader`` is ``istio``. Not an Istio name: the program's own.
MESH_READER = "istio-mesh-reader"

#: What a peer istiod lists and watches through a remote secret (Istio 1.30, sidecar mode, the istiod
#: chart's defaults), as (apiGroups, resources): service discovery (namespaces first: nothing else is
#: built for the peer until they sync; then services, endpointslices, pods, nodes, Gateway API gateways
#: for network gateways), the CRD watcher behind the Gateway and WorkloadEntry informers, and
#: WorkloadEntries (cross-cluster workload entries, on by default). Never ``get`` (informers only list
#: and watch), never a write.
READER_RULES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("",), ("namespaces", "pods", "services", "nodes")),
    (("discovery.k8s.io",), ("endpointslices",)),
    (("apiextensions.k8s.io",), ("customresourcedefinitions",)),
    (("gateway.networking.k8s.io",), ("gateways",)),
    (("networking.istio.io",), ("workloadentries",)),
)
#: istiod's credentials controller lists and watches every Secret of every cluster it reads (for
#: gateways whose TLS certificate lives in the peer, and Wasm pull secrets); until that list succeeds the
#: peer never reaches "synced" (istiod reports ``timeout`` after 30 s; discovery works all the same).
#: Kubernetes RBAC cannot narrow this by Secret type.
SECRET_RULE: tuple[tuple[str, ...], tuple[str, ...]] = (("",), ("secrets",))
#: The one ConfigMap a peer istiod reads (the peer's mesh config), in istio-system only: a Role whose
#: ``resourceNames`` match the informer's ``metadata.name`` field selector.
MESH_CONFIG_MAP = "istio"
READ = ("list", "watch")

#: Prefix of the secret ``istioctl create-remote-secret`` produces; the suffix is the source cluster.
REMOTE_SECRET_PREFIX = "istio-remote-secret-"
#: Label istiod selects remote secrets by, in its own namespace only.
MULTICLUSTER_LABEL = "istio/multiCluster"
#: Annotation naming the cluster a remote secret grants access to.
CLUSTER_ANNOTATION = "networking.istio.io/cluster"

#: Kubernetes >= 1.24 creates no token for a ServiceAccount: a Secret of this type, annotated with the
#: ServiceAccount's name, is filled by the token controller with ``token`` and ``ca.crt``.
SA_TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"

#: East-west gateway: the release name fixes the pod labels ``app: istio-eastwestgateway`` and
#: ``istio: eastwestgateway`` that the cross-network Gateway selects.
EASTWEST_RELEASE = "istio-eastwestgateway"
EASTWEST_SELECTOR = {"istio": "eastwestgateway"}
CROSS_NETWORK_GATEWAY = "cross-network-gateway"
#: mTLS passthrough port of the east-west gateway (AUTO_PASSTHROUGH, SNI routed).
CROSS_NETWORK_PORT = 15443

#: istiod: its Service (``istiod.istio-system.svc`` is the name on its serving certificate) and ports.
ISTIOD_SERVICE = "istiod"
ISTIOD_SERVER_NAME = f"{ISTIOD_SERVICE}.{ISTIO_NAMESPACE}.svc"
ISTIOD_HTTP_PORT = 8080  # /ready and /debug/* (clusterz, networkz, endpointShardz)
ISTIOD_XDS_PORT = 15010  # xDS over plaintext gRPC
ISTIOD_XDS_TLS_PORT = 15012  # xDS over TLS (certificate from the plugged-in CA), also CA requests
ISTIOD_MONITORING_PORT = 15014
ISTIOD_WEBHOOK_PORT = 15017  # sidecar-injector and validation webhooks (the Service's 443)

#: Istio release installed when none is named (the version this project's toolchain pins and tests).
DEFAULT_ISTIO_VERSION = "1.30.4"
#: Official chart repository (charts ``base``, ``istiod``, ``gateway``).
DEFAULT_CHART_REPOSITORY = "https://istio-release.storage.googleapis.com/charts"
DEFAULT_HUB = "docker.io/istio"

#: Pulumi kubernetes annotations understood by the provider's await logic.
#:
#: Services whose address is not a load balancer's are not awaited (``SKIP_AWAIT_ANNOTATION``): Pulumi's
#: Service await watches the endpoints and, after every change to them, waits 10 s for them to "settle",
#: so every Service cost at least 10 s, and istiod's was on the critical path of ``up`` (the gateway
#: chart waits for istiod's). That the pods behind a Service are ready is what the Deployment's own await
#: establishes (istiod's chart completes only when istiod's pods are ready). ``pulumi.com/waitFor`` (a
#: condition instead of that await) was tried and is not used: on an update it can return the Service as
#: it was before the update (the provider's watch cache; Services have no ``metadata.generation`` to tell
#: the two apart), and the next preview shows the change again. A skipped await returns the object the
#: update produced.
SKIP_AWAIT_ANNOTATION = "pulumi.com/skipAwait"
#: Objects whose every field the program decides (the namespaces whose labels the mesh depends on) take
#: their fields back on the next ``up`` even when someone else changed them: a ``kubectl label`` of
#: ``topology.istio.io/network`` makes kubectl that field's manager, and without force the provider's
#: server-side apply fails with a field conflict instead of repairing the drift (pulumi-kubernetes
#: pkg/await/await.go ``patchForce``).
PATCH_FORCE_ANNOTATION = "pulumi.com/patchForce"
TIMEOUT_ANNOTATION = "pulumi.com/timeoutSeconds"
#: How the provider deletes an object (``foreground`` by default: the API server adds the
#: ``foregroundDeletion`` finalizer and the garbage collector removes it, an UPDATE of the object).
DELETION_PROPAGATION_ANNOTATION = "pulumi.com/deletionPropagationPolicy"
SERVICE_TYPE = "kubernetes:core/v1:Service"

#: Annotation this program puts on every Kubernetes object it creates: ``<project>/<stack>/<logical
#: name>`` of the resource that created it. The create guard lets a create proceed over an existing
#: object only when it carries exactly this resource's value (an ``up`` killed after the API server made
#: the object but before the state recorded it); anything else is refused.
CREATED_BY_ANNOTATION = "istio-mesh.dev/created-by"
