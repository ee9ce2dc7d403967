"""The ``istiomesh`` plugin's gRPC server: Pulumi's component provider (``Construct`` of the components)
plus create/check/diff/read/update/delete of ``istiomesh:index:IntermediateCertificate``.

The component side is the Python SDK's own (``pulumi.provider.server.ProviderServicer`` running a
``ComponentProvider``); this module adds the custom resource the SDK's component host does not serve,
with the same signing, renewal and replacement rules as the dynamic provider in ``intermediate_cert``.
"""

# ruff: noqa: N802  (the servicer's methods are gRPC method names)

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import datetime
import json
import sys
from typing import Any

import grpc
from pulumi.provider.server import ProviderServicer
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc

from .constants import PACKAGE
from .intermediate_cert import PLUGIN_NAMES, REPLACE_ON, SigningError, renewal_due_for, sign_intermediate
from .plugin_mesh import MESH_TOKEN, MeshFromInputs, served_token

#: Threads for the component's registrations (each waits on the engine while its resource is created).
REGISTRATION_THREADS = 256
#: The certificate's inputs as the plugin's schema names them; a change of any of them replaces it.
REPLACE_ON_PLUGIN = tuple(PLUGIN_NAMES[k] for k in REPLACE_ON)


def _plain(props: dict[str, Any]) -> dict[str, Any]:
    """Properties with secrets unwrapped (the engine sends them marked; this code only reads them)."""
    return {k: rpc.unwrap_rpc_secret(v) for k, v in props.items()}


def check_inputs(news: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every input that cannot make a certificate. Only known values are judged:
    in a preview an input may be unknown (the engine sends it as an output value, not a string)."""
    failures = []
    for key in ("publicKeyPem", "clusterName", "rootCertPem", "rootKeyPem", "validityDays"):
        if news.get(key) is None:
            failures.append((key, f"{key} is required"))
    for key in ("publicKeyPem", "clusterName", "rootCertPem", "rootKeyPem"):
        value = news.get(key)
        if isinstance(value, str) and value != rpc.UNKNOWN and not value.strip():
            failures.append((key, f"{key} must be a non-empty string"))
    for key, least in (("validityDays", 1), ("renewBeforeDays", 0)):
        value = news.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if int(value) != value or value < least:
            failures.append((key, f"{key} must be a whole number of days (at least {least})"))
    return failures


def diff(olds: dict[str, Any], news: dict[str, Any]) -> list[str]:
    """The properties whose change replaces the certificate (``notAfter`` when renewal is due): the
    dynamic provider's rules, on the schema's names."""
    changed = [k for k in REPLACE_ON_PLUGIN if olds.get(k) != news.get(k)]
    if not changed and renewal_due_for(_snake(olds), _snake(news)):
        changed = ["notAfter"]
    return changed


def _snake(props: dict[str, Any]) -> dict[str, Any]:
    """Properties under the dynamic provider's (snake_case) names."""
    snake = {v: k for k, v in PLUGIN_NAMES.items()}
    return {snake.get(k, k): v for k, v in props.items()}


def create(props: dict[str, Any], now: datetime.datetime | None = None) -> tuple[str, dict[str, Any]]:
    """Signs the certificate; returns (id, outputs). The root key is never an output."""
    from cryptography import x509

    pem = sign_intermediate(
        public_key_pem=props["publicKeyPem"],
        cluster_name=props["clusterName"],
        root_cert_pem=props["rootCertPem"],
        root_key_pem=props["rootKeyPem"],
        validity_days=int(props["validityDays"]),
        now=now,
    )
    cert = x509.load_pem_x509_certificate(pem.encode())
    outs = {k: props[k] for k in (*REPLACE_ON_PLUGIN, "renewBeforeDays") if k in props}
    outs.update(certPem=pem, notAfter=cert.not_valid_after_utc.isoformat(), serial=f"{cert.serial_number:x}")
    return outs["serial"], outs


def served_request(request: Any) -> Any:
    """A ``Construct`` request as the SDK's component host reads it: the mesh's token (``MESH_TOKEN``, what
    programs ask for) as the token of the class that serves it (``MeshFromInputs``). Others as they came."""
    if request.type != MESH_TOKEN:
        return request
    served = type(request)()
    served.CopyFrom(request)
    served.type = served_token(MeshFromInputs)
    return served


class Servicer(ProviderServicer):
    """The SDK's component servicer, with the certificate resource's CRUD (gRPC method names)."""

    async def Construct(self, request: Any, context: Any) -> Any:
        return await super().Construct(served_request(request), context)

    async def CheckConfig(self, request: Any, context: Any) -> Any:
        return proto.CheckResponse(inputs=request.news)

    async def DiffConfig(self, request: Any, context: Any) -> Any:
        return proto.DiffResponse(changes=proto.DiffResponse.DIFF_NONE)

    async def Check(self, request: Any, context: Any) -> Any:
        news = _plain(rpc.deserialize_properties(request.news, keep_unknowns=True))
        failures = [proto.CheckFailure(property=p, reason=r) for p, r in check_inputs(news)]
        return proto.CheckResponse(inputs=request.news, failures=failures)

    async def Diff(self, request: Any, context: Any) -> Any:
        olds = _plain(rpc.deserialize_properties(request.olds, keep_unknowns=True))
        news = _plain(rpc.deserialize_properties(request.news, keep_unknowns=True))
        replaces = diff(olds, news)
        return proto.DiffResponse(
            changes=proto.DiffResponse.DIFF_SOME if replaces else proto.DiffResponse.DIFF_NONE,
            replaces=replaces,
            deleteBeforeReplace=False,
        )

    async def Create(self, request: Any, context: Any) -> Any:
        props = _plain(rpc.deserialize_properties(request.properties))
        if request.preview:
            return proto.CreateResponse(id="", properties=request.properties)
        try:
            id_, outs = create(props)
        except SigningError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"cannot sign the intermediate: {exc}")
            raise
        return proto.CreateResponse(id=id_, properties=await rpc.serialize_properties(outs, {}))

    async def Read(self, request: Any, context: Any) -> Any:
        # The certificate exists only in state: what was signed is what there is.
        return proto.ReadResponse(id=request.id, properties=request.properties, inputs=request.inputs)

    async def Update(self, request: Any, context: Any) -> Any:
        # Only renewBeforeDays can change without a replacement: it is kept, nothing is signed.
        olds = _plain(rpc.deserialize_properties(request.olds))
        news = _plain(rpc.deserialize_properties(request.news))
        outs = {**olds, "renewBeforeDays": news.get("renewBeforeDays")}
        return proto.UpdateResponse(properties=await rpc.serialize_properties(outs, {}))

    async def Delete(self, request: Any, context: Any) -> Any:
        # Nothing outside Pulumi's state to remove.
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()


def serve(schema: dict[str, Any], version: str, argv: list[str]) -> None:
    """Serves the plugin: prints the port on stdout (what the engine reads), then answers until stopped."""
    from pulumi.provider.experimental.component import ComponentProvider

    # Private to Pulumi, and what its own provider hosts serve with (pulumi.provider.server: 400 MB messages,
    # 30 min in the queue); the SDK offers no public name for them.
    from pulumi.runtime._grpc_settings import _GRPC_CHANNEL_OPTIONS

    parser = argparse.ArgumentParser(description="the istiomesh Pulumi plugin")
    parser.add_argument("engine", help="the Pulumi engine's address")
    known, _ = parser.parse_known_args(argv)
    provider = ComponentProvider([MeshFromInputs], PACKAGE, None, version)
    provider.schema = json.dumps(schema)

    async def run() -> None:
        # Every registration of a component's child holds a thread until the engine answers (for a custom
        # resource: until it is created), as in a program; the language host sizes that pool to its
        # parallelism, and asyncio's default (CPUs + 4) would serialise, or with hooks deadlock, a mesh.
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=REGISTRATION_THREADS)
        )
        server = grpc.aio.server(options=_GRPC_CHANNEL_OPTIONS)
        provider_pb2_grpc.add_ResourceProviderServicer_to_server(
            Servicer(provider, argv, engine_address=known.engine), server
        )
        port = server.add_insecure_port(address="127.0.0.1:0")
        await server.start()
        sys.stdout.buffer.write(f"{port}\n".encode())
        sys.stdout.buffer.flush()
        await server.wait_for_termination()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
