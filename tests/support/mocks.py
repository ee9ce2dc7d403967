"""Recording Pulumi mocks: every registration (type, name, inputs, provider, parent, dependencies,
options) is kept so tests can assert what the mesh is made of, which cluster each object lands in,
what is secret and what depends on what.

The mocks stand in for providers only where the program reads a provider's output: the token
controller filling a service-account token secret, pulumi-tls returning keys and the root
certificate (real ones: RSA keys of the requested size, cached per resource name, and a root
self-signed with the key it is given), and a load balancer address. The program's own dynamic
provider (the intermediate signer) is not mocked: its serialized provider is loaded and its
``create`` runs, exactly as the engine's Python dynamic-provider plugin would, so the intermediates
the tests inspect are the real certificates the program makes.

``run_program`` runs a program under these mocks and returns what it registered (``Recorded``).
"""

from __future__ import annotations

import base64
import datetime
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc

# The magic key Pulumi's wire format uses to mark a secret value.
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"

FAKE_TOKEN_PREFIX = "token-of-"
FAKE_CLUSTER_CA = "FAKE CLUSTER CA of "


@dataclass
class Registration:
    """One resource registration as the engine would receive it."""

    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    raw: dict[str, Any]
    custom: bool
    provider: str
    providers: dict[str, str]
    parent: str
    dependencies: list[str]
    protect: bool
    ignore_changes: list[str]
    transforms: list[Callable[..., Any]] = field(default_factory=list)
    read: bool = False
    #: Names of the resource hooks bound as ``before_create``.
    before_create: list[str] = field(default_factory=list)
    #: Names given in ``aliases=[Alias(name=...)]`` (the alias specs the SDK sends the engine).
    alias_names: list[str] = field(default_factory=list)

    def is_secret(self, prop: str) -> bool:
        """Whether the input ``prop`` was sent to the engine as a secret."""
        value = self.raw.get(prop)
        return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG

    @property
    def k8s_name(self) -> str:
        meta = self.inputs.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}".lstrip("/")


@functools.cache
def mock_private_key_pem(resource_name: str, bits: int = 2048) -> str:
    """The real RSA key the mocked tls.PrivateKey named ``resource_name`` returns (cached per run)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@functools.cache
def _public_pem(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode(), password=None, unsafe_skip_rsa_key_validation=True)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def self_signed_pem(inputs: Mapping[str, Any]) -> str:
    """What pulumi-tls's SelfSignedCert returns for these inputs (subject, key, CA flag), for real."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(
        inputs["privateKeyPem"].encode(), password=None, unsafe_skip_rsa_key_validation=True
    )
    subject = inputs.get("subject") or {}
    attrs = [
        x509.NameAttribute(oid, subject[k])
        for k, oid in (("organization", NameOID.ORGANIZATION_NAME), ("commonName", NameOID.COMMON_NAME))
        if subject.get(k)
    ]
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=int(inputs.get("validityPeriodHours", 24))))
        .add_extension(x509.BasicConstraints(ca=bool(inputs.get("isCaCertificate")), path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


#: Results of creates, keyed by (resource name, inputs): like the engine, which keeps a resource whose
#: inputs did not change, a second program run with the same inputs gets the same certificate.
_CREATED: dict[tuple[str, str], Any] = {}


def _same_inputs_same_result(name: str, inputs: Mapping[str, Any], create: Callable[[], Any]) -> Any:
    import json

    key = (name, json.dumps(_unwrap(dict(inputs)), sort_keys=True, default=str))
    if key not in _CREATED:
        _CREATED[key] = create()
    return _CREATED[key]


def run_dynamic_create(inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Loads the serialized dynamic provider from ``__provider`` and runs its ``create``."""
    import dill

    props = _unwrap(dict(inputs))
    provider = dill.loads(base64.b64decode(props["__provider"]))
    result = provider.create(props)
    return result.id, dict(result.outs or {})


class RecordingMocks(pulumi.runtime.Mocks):
    """Returns inputs as outputs, plus the few provider-computed outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "tls:index/privateKey:PrivateKey":
            pem = mock_private_key_pem(args.name, int(args.inputs.get("rsaBits", 2048)))
            outputs["privateKeyPem"] = pem
            outputs["publicKeyPem"] = _public_pem(pem)
        elif args.typ == "tls:index/selfSignedCert:SelfSignedCert":
            outputs["certPem"] = _same_inputs_same_result(
                args.name, args.inputs, lambda: self_signed_pem(_unwrap(args.inputs))
            )
        elif args.typ.startswith("pulumi-python:dynamic"):
            resource_id, outs = _same_inputs_same_result(
                args.name, args.inputs, lambda: run_dynamic_create(args.inputs)
            )
            outputs.update(outs)
            return resource_id, outputs
        elif args.typ == "istiomesh:index:IntermediateCertificate":
            # What the istiomesh plugin's Create does (the same function).
            from istio_mesh.plugin_server import create

            resource_id, outs = _same_inputs_same_result(args.name, args.inputs, lambda: create(_unwrap(args.inputs)))
            outputs.update(outs)
            return resource_id, outputs
        elif (
            args.typ == "kubernetes:core/v1:Secret" and args.inputs.get("type") == "kubernetes.io/service-account-token"
        ):
            # What kube-controller-manager's token controller does (and pulumi-kubernetes waits for).
            ns = args.inputs["metadata"]["namespace"]
            outputs["data"] = {
                "token": base64.b64encode(f"{FAKE_TOKEN_PREFIX}{args.name}".encode()).decode(),
                "ca.crt": base64.b64encode(f"{FAKE_CLUSTER_CA}{ns}/{args.name}".encode()).decode(),
                "namespace": base64.b64encode(ns.encode()).decode(),
            }
        elif args.typ == "kubernetes:core/v1:Service" and args.name == "lb-service":
            # A Service after a cloud load-balancer controller gave it an address.
            outputs["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}
        elif args.typ == "kubernetes:helm.sh/v4:Chart":
            outputs["resources"] = []
        if args.typ.startswith("kubernetes:") and isinstance(outputs.get("metadata"), dict):
            # The API server gives every object a uid (here: stable and named after the resource).
            outputs["metadata"] = {**outputs["metadata"], "uid": f"uid-{args.name}"}
        return (args.resource_id or f"{args.name}-id"), outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(pmocks.MockMonitor):
    """A MockMonitor that also keeps each request's options (provider, parent, dependencies...)."""

    def __init__(self, mocks: RecordingMocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self._record(request, response.urn, read=False)
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().ReadResource(request)
        self._record(request, response.urn, read=True)
        return response

    def _record(self, request: Any, urn: str, read: bool) -> None:
        obj = request.properties if read else request.object
        self.registrations.append(
            Registration(
                type=request.type,
                name=request.name,
                urn=urn,
                inputs=_unwrap(rpc.deserialize_properties(obj)),
                raw=json_format.MessageToDict(obj),
                custom=True if read else bool(request.custom),
                provider=request.provider,
                providers=dict(getattr(request, "providers", {}) or {}),
                parent=request.parent,
                dependencies=list(getattr(request, "dependencies", []) or []),
                protect=bool(getattr(request, "protect", False)),
                ignore_changes=list(getattr(request, "ignoreChanges", []) or []),
                transforms=list(pmocks._resolve_callbacks(request.transforms)) if not read else [],
                read=read,
                before_create=[] if read else list(request.hooks.before_create),
                alias_names=[]
                if read
                else [a.spec.name for a in request.aliases if a.HasField("spec") and a.spec.name],
            )
        )


def _unwrap(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


@dataclass
class Recorded:
    """What a program registered, with helpers to query it."""

    registrations: list[Registration]
    outputs: dict[str, Any]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str, k8s_name: str | None = None, name_contains: str = "") -> Registration:
        found = [
            r for r in self.of_type(typ) if (k8s_name is None or r.k8s_name == k8s_name) and name_contains in r.name
        ]
        assert len(found) == 1, (
            f"expected one {typ} {k8s_name or ''} ~{name_contains!r}, found {[r.name for r in found]}"
        )
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def provider_of(self, reg: Registration) -> str:
        """The provider resource NAME a registration is bound to (custom: provider; remote: providers map)."""
        # A provider reference is "<provider urn>::<provider id>"; the urn ends with the provider's name.
        ref = reg.provider or reg.providers.get("kubernetes", "")
        return ref.split("::")[-2] if ref else ""

    def depends_on(self, reg: Registration, other: Registration) -> bool:
        return other.urn in reg.dependencies

    def rendered(
        self,
        under: Registration | None,
        type_: str,
        props: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
        name: str = "rendered",
    ) -> Rendered:
        """What the engine makes of an object registered as a child of ``under`` (e.g. one a Helm chart
        renders, which the mocks do not do; None: of the stack): the transforms of ``under`` and of each
        ancestor, in the engine's order (nearest first, each on the previous result), and how many
        callbacks that took. The mocks record transforms; only the engine applies them."""
        args = pulumi.ResourceTransformArgs(True, type_, name, dict(props), opts or pulumi.ResourceOptions())
        callbacks = 0
        known = {r.urn: r for r in self.registrations}
        ancestor: Registration | None = under
        while ancestor is not None:  # up to the stack, which the mocks do not record
            for transform in ancestor.transforms:
                callbacks += 1
                result = transform(args)
                if result is not None:
                    args = pulumi.ResourceTransformArgs(True, type_, name, dict(result.props), result.opts)
            ancestor = known.get(ancestor.parent)
        return Rendered(props=dict(args.props), opts=args.opts, callbacks=callbacks)


@dataclass(frozen=True)
class Rendered:
    """An object after the engine applied its ancestors' transforms (``Recorded.rendered``)."""

    props: dict[str, Any]
    opts: pulumi.ResourceOptions
    callbacks: int


def run_program(build: Callable[[], Mapping[str, pulumi.Output[Any]]]) -> Recorded:
    """Runs ``build`` under recording mocks and returns every registration and resolved output."""
    mocks = RecordingMocks()
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project="istio-mesh", stack="test", preview=False, monitor=monitor)
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        outputs = build()
        return pulumi.Output.all(**outputs).apply(resolved.update)

    program()
    return Recorded(registrations=monitor.registrations, outputs=resolved)
