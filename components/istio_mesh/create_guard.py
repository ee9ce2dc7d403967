"""Refuse to create a Kubernetes object that already exists, instead of silently taking it over.

With server-side apply (pulumi-kubernetes 4.x's default) a *create* is an apply: when the object is
already there, the provider adopts it and forces its fields, and the stack now "owns" something it
did not make. That is how a renamed resource deletes live objects (create the new name = adopt the
live object, then delete the old name = delete the live object), and how a ``cacerts`` made by hand
is overwritten and later destroyed with the stack. pulumi-kubernetes 4.30 fixed this upstream with
a client-side create; the provider this project can build is older, so the guard lives here: a
``before_create`` resource hook that looks the object up in its cluster and fails the create, naming
the object and what to do, when it exists. Nothing is changed in the cluster by a refused create.

The hook runs only for real creates (``pulumi up``), not in previews: in a preview the object being
replaced still exists, and a replace of a named Kubernetes object is always delete-then-create.
Patch resources (``*Patch``) are meant to change existing objects and are never guarded.

One existing object is not refused: one that this very resource created in an ``up`` that was killed
before the state recorded it. Every object this program creates carries ``CREATED_BY_ANNOTATION``
(``<project>/<stack>/<logical name>``, set by ``mark_created_by``); an object whose value is exactly
the one being created is taken back, so rerunning after a crash converges. A renamed resource (another
logical name), another stack's object or a hand-made one is refused. Given the mesh root this run
writes, the guard takes nothing back in a cluster whose ``cacerts`` this stack made under another root
(a lost state, ``root_guard``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from .constants import CACERTS_SECRET, CREATED_BY_ANNOTATION, ISTIO_NAMESPACE
from .root_guard import RootChangeError, root_change_refusal

#: How long one API request of the guard may take before the create fails naming the cluster.
REQUEST_TIMEOUT_SECONDS = 10.0
#: The threads the guard's lookups run on (never the event loop's default executor, see ``refuse_existing``).
_LOOKUPS = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="create-guard")


class ExistingObjectError(Exception):
    """The object a create would make already exists (the create was refused; nothing changed)."""


class GuardLookupError(Exception):
    """The guard could not tell whether the object exists (the create was refused; nothing changed)."""


@dataclass(frozen=True)
class ObjectRef:
    """A Kubernetes object's identity: what a create would make."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def object_ref(inputs: Mapping[str, Any] | None) -> ObjectRef | None:
    """The identity of the object these resource inputs describe; None when it is not fully known."""
    if not inputs:
        return None
    api_version, kind = inputs.get("apiVersion"), inputs.get("kind")
    metadata = inputs.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not all(isinstance(v, str) and v for v in (api_version, kind, name)):
        return None  # generateName, or a value still unknown: nothing to look up
    return ObjectRef(str(api_version), str(kind), namespace if isinstance(namespace, str) and namespace else None, name)  # type: ignore[arg-type]


def created_by(inputs: Mapping[str, Any] | None) -> str | None:
    """The ``CREATED_BY_ANNOTATION`` value of an object (resource inputs or a live object), if any."""
    metadata = (inputs or {}).get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    value = annotations.get(CREATED_BY_ANNOTATION) if isinstance(annotations, Mapping) else None
    return value if isinstance(value, str) else None


def refusal_message(
    cluster: str, ref: ObjectRef, resource_type: str, resource_name: str, live_created_by: str | None = None
) -> str:
    """What a user reads when a create is refused: what exists, why it matters and the three ways out."""
    object_id = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    origin = (
        f" It was created by {live_created_by!r}: if that is this stack's resource under its old name, give "
        f"{resource_name!r} `aliases=[pulumi.Alias(name={live_created_by.rsplit('/', 1)[-1]!r})]`."
        if live_created_by
        else ""
    )
    return (
        f"{ref.describe()} already exists in cluster {cluster!r}, and this stack would create it as "
        f"{resource_name!r}.{origin} Creating it would silently take over the live object (server-side apply), "
        f"and this stack would later delete it. Nothing was changed. If this stack already manages it under "
        f"another name (a renamed resource), give the new resource `aliases` for the old name; if it was "
        f"made outside this stack, delete it (`kubectl --context {cluster} delete {ref.kind.lower()} "
        f"{'-n ' + ref.namespace + ' ' if ref.namespace else ''}{ref.name}`) or adopt it on purpose with "
        f"`pulumi import {resource_type} {resource_name} {object_id}`."
    )


class ClusterObjects:
    """Looks objects up in one cluster through its API server (the kubeconfig the stack uses for it).

    Resource names of a kind come from API discovery (one request per API group version, cached; a
    kind not found is looked up once more, since CRDs appear during an ``up``).
    """

    def __init__(
        self,
        cluster: str,
        kubeconfig: pulumi.Input[str],
        context: str | None,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
    ):
        self.cluster = cluster
        #: The kubeconfig's content; an Output (a secret from config, say) is resolved by ``resolve``.
        self._kubeconfig: Any = kubeconfig
        self._context = context
        self._timeout = timeout
        self._client: Any = None
        self._discovery: dict[str, dict[str, tuple[str, bool]]] = {}
        self._lock = threading.Lock()

    async def resolve(self) -> None:
        """Waits for the kubeconfig when it was given as an Output (call before ``get`` from the hook)."""
        if isinstance(self._kubeconfig, str):
            return
        value = await pulumi.Output.from_input(self._kubeconfig).future()
        if not isinstance(value, str):
            raise GuardLookupError(f"the kubeconfig of cluster {self.cluster!r} is not known (got {value!r})")
        self._kubeconfig = value

    def _api(self) -> Any:
        with self._lock:
            if self._client is None:
                from .kube_client import api_client

                self._client = api_client(self._kubeconfig, self._context)
            return self._client

    def _get(self, path: str) -> tuple[int, Any]:
        """(status, decoded JSON body or None) of ``GET path``; 404 is an answer, other failures raise."""
        import json

        try:
            api = self._api()
            method, url, headers, _, _ = api.param_serialize(
                "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
            )
            response = api.call_api(method, url, headers, _request_timeout=self._timeout)
            response.read()
            status, body = response.status, response.data
        except Exception as exc:  # connection refused, TLS, timeout: name the cluster, never hang
            raise GuardLookupError(
                f"could not reach the API server of cluster {self.cluster!r} to check whether an object exists "
                f"(GET {path}, timeout {self._timeout:.0f}s): {type(exc).__name__}: {exc}"
            ) from None
        if status == 404:
            return 404, None
        if status != 200:
            raise GuardLookupError(
                f"could not check whether an object exists in cluster {self.cluster!r}: GET {path} answered "
                f"{status} {(body or b'')[:200]!r}"
            )
        return 200, json.loads(body or b"null")

    def _resources(self, api_version: str, refresh: bool = False) -> dict[str, tuple[str, bool]]:
        """kind -> (plural, namespaced) for one API group version; empty when it is not served."""
        with self._lock:
            cached = self._discovery.get(api_version)
        if cached is not None and not refresh:
            return cached
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, data = self._get(path)
        kinds: dict[str, tuple[str, bool]] = {}
        if status == 200 and isinstance(data, Mapping):
            for r in data.get("resources") or []:
                if "/" not in r.get("name", ""):  # subresources such as pods/log
                    kinds[r["kind"]] = (r["name"], bool(r.get("namespaced")))
        with self._lock:
            self._discovery[api_version] = kinds
        return kinds

    def get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        """The live object, or None when it does not exist; raises ``GuardLookupError`` when the cluster
        cannot say."""
        kinds = self._resources(ref.api_version)
        if ref.kind not in kinds:
            kinds = self._resources(ref.api_version, refresh=True)
        if ref.kind not in kinds:
            return None  # the kind is not served (its CRD is not installed yet): no such object
        plural, namespaced = kinds[ref.kind]
        base = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
        namespace = ref.namespace or "default"
        path = f"{base}/namespaces/{namespace}/{plural}/{ref.name}" if namespaced else f"{base}/{plural}/{ref.name}"
        status, data = self._get(path)
        return data if status == 200 and isinstance(data, Mapping) else None


def is_guarded_type(resource_type: str) -> bool:
    """Kubernetes objects a create would make: not Helm/YAML components, not Patch resources."""
    if not resource_type.startswith("kubernetes:") or resource_type.startswith(("kubernetes:helm", "kubernetes:yaml")):
        return False
    return not resource_type.endswith("Patch")


#: The Secret holding the root a cluster's istiod trusts (Istio's plugged-in CA).
CACERTS = ObjectRef("v1", "Secret", ISTIO_NAMESPACE, CACERTS_SECRET)


def refuse_existing(
    cluster: str, lookup: ClusterObjects, root_cert_pem: pulumi.Input[str] | None = None
) -> Callable[[pulumi.ResourceHookArgs], Awaitable[None]]:
    """The hook function: raises ``ExistingObjectError`` when the object to be created exists in ``cluster``.

    With ``root_cert_pem`` (the mesh root this run writes), an object of this resource's own making is
    taken back only when the cluster's ``cacerts``, if this stack made it, holds that same root; else
    ``RootChangeError`` (see ``root_guard``). The cluster is asked once per run."""
    verdict: dict[str, str | None] = {}

    async def root_refusal(stack_prefix: str) -> str | None:
        if "refusal" not in verdict:
            new_root = await pulumi.Output.from_input(root_cert_pem).future()
            live = await asyncio.get_running_loop().run_in_executor(_LOOKUPS, lookup.get, CACERTS)
            verdict["refusal"] = root_change_refusal(cluster, live, stack_prefix, str(new_root or ""))
        return verdict["refusal"]

    async def before_create(args: pulumi.ResourceHookArgs) -> None:
        if not is_guarded_type(args.type):
            return
        ref = object_ref(args.new_inputs)
        if ref is None:
            return
        await lookup.resolve()
        # On the guard's own threads: registrations hold the default executor's threads while they wait
        # for the engine, which waits for this hook (a deadlock when the pool is small, as in a plugin).
        live = await asyncio.get_running_loop().run_in_executor(_LOOKUPS, lookup.get, ref)
        if live is None:
            return
        ours = created_by(args.new_inputs)
        if ours is not None and created_by(live) == ours:
            # This resource made it in an `up` that died before recording it: take it back, unless the
            # cluster's mesh runs under a root this stack no longer has (its state was lost).
            if root_cert_pem is not None:
                refusal = await root_refusal(ours.rsplit("/", 1)[0] + "/")
                if refusal:
                    raise RootChangeError(refusal)
            pulumi.log.info(f"{ref.describe()} in {cluster!r} was created by this resource in an interrupted run")
            return
        raise ExistingObjectError(refusal_message(cluster, ref, args.type, args.name, created_by(live)))

    return before_create


def refuse_existing_objects(
    name: str, cluster: str, lookup: ClusterObjects, root_cert_pem: pulumi.Input[str] | None = None
) -> pulumi.ResourceHook:
    """A ``before_create`` hook (named ``name``) that fails the create of any object already in ``cluster``
    (and, given the mesh root this run writes, any take-back under another root: ``refuse_existing``)."""
    return pulumi.ResourceHook(name, refuse_existing(cluster, lookup, root_cert_pem))


def mark_created_by(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """A transform putting ``CREATED_BY_ANNOTATION`` (``<project>/<stack>/<logical name>``) on every
    Kubernetes object under a component, the objects Helm charts render included."""
    if not args.custom or not is_guarded_type(args.type_):
        return None
    props: dict[str, Any] = dict(args.props)
    metadata = dict(props.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[CREATED_BY_ANNOTATION] = f"{pulumi.get_project()}/{pulumi.get_stack()}/{args.name}"
    metadata["annotations"] = annotations
    props["metadata"] = metadata
    return pulumi.ResourceTransformResult(props=props, opts=args.opts)


def guard_creates(hook: pulumi.ResourceHook | None):  # type: ignore[no-untyped-def]
    """A transform that marks every Kubernetes object under a component with ``mark_created_by`` and binds
    ``hook`` as its ``before_create`` (one transform, so one engine callback per object), the objects Helm
    charts render included (transforms reach a remote component's children)."""

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        marked = mark_created_by(args)
        if marked is None:
            return None
        if hook is None or (args.opts.hooks and hook in (args.opts.hooks.before_create or [])):
            return marked
        binding = pulumi.ResourceHookBinding(before_create=[hook])
        return pulumi.ResourceTransformResult(
            props=marked.props, opts=pulumi.ResourceOptions.merge(args.opts, pulumi.ResourceOptions(hooks=binding))
        )

    return transform
