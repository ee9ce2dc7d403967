"""The package as a Pulumi plugin: ``MultiPrimaryMesh`` for every Pulumi language, and the intermediate signer.

A TypeScript or YAML program cannot run Python components in its own process, so the engine runs this
module as the ``istiomesh`` resource plugin (``python -m istio_mesh.plugin``, started by the
``pulumi-resource-istiomesh`` executable next to it in ``plugin/``). It serves:

* ``istiomesh:index:MultiPrimaryMesh``, a remote component: the engine asks this plugin to construct
  it (``Construct``), and the mesh registers its children as the Python program would. Its inputs are
  plain data (the ``*Inputs`` types of ``plugin_mesh``, camelCase in the schema, each key spelt as in the
  stack config; old spellings are marked deprecated); kubeconfigs are secret strings.
* ``istiomesh:index:IntermediateCertificate``, a custom resource with create/diff/read/delete here:
  in a program that is not Python there is no Python dynamic-provider host, so the mesh built by this
  plugin signs its intermediates with this resource instead (same certificate: ``pathlen:0``).

The schema is generated from ``plugin_mesh``'s annotations and docstrings (``pulumi.provider.experimental``),
plus the signer resource; ``python -m istio_mesh.plugin --schema`` prints it, and the repository keeps it in
``components/istio_mesh/schema.json`` (a test fails when it drifts). The gRPC server is ``plugin_server``.
"""

import json
import sys
import warnings
from typing import Any

from .constants import PACKAGE, PACKAGE_VERSION
from .plugin_mesh import (
    MESH_TOKEN,
    RENAMED_INPUTS,
    CAInputs,
    ClusterInputs,
    ClusterIstioInputs,
    GatewayInputs,
    IstioInputs,
    MeshFromInputs,
    MeshGatewayInputs,
    MultiPrimaryMeshInputs,
    RemoteAccessInputs,
    RenamedInput,
    SamplesInputs,
    mesh_args,
    served_token,
)

__all__ = [
    "INTERMEDIATE_TOKEN",
    "MESH_TOKEN",
    "RENAMED_INPUTS",
    "SECRET_INPUTS",
    "VERSION",
    "CAInputs",
    "ClusterInputs",
    "ClusterIstioInputs",
    "GatewayInputs",
    "IstioInputs",
    "MeshFromInputs",
    "MeshGatewayInputs",
    "MultiPrimaryMeshInputs",
    "RemoteAccessInputs",
    "RenamedInput",
    "SamplesInputs",
    "main",
    "mesh_args",
    "schema",
]

#: The package's version, stamped into the schema and the plugin's answers.
VERSION = PACKAGE_VERSION
#: Token of the signer resource this plugin serves.
INTERMEDIATE_TOKEN = f"{PACKAGE}:index:IntermediateCertificate"


def schema() -> dict[str, Any]:
    """The package schema: the components (inferred from ``plugin_mesh``'s annotations) and the signer resource."""
    from pulumi.provider.experimental.component import ComponentProvider

    provider = ComponentProvider([MeshFromInputs], PACKAGE, None, VERSION)
    spec: dict[str, Any] = json.loads(provider.schema or "{}")
    # The component under the package class's name (the SDK named it after the class that serves it).
    spec["resources"][MESH_TOKEN] = spec["resources"].pop(served_token(MeshFromInputs))
    spec["displayName"] = "Istio multi-primary mesh"
    spec["description"] = "A multi-primary, multi-network Istio mesh across N Kubernetes clusters, from one component."
    spec.setdefault("resources", {})[INTERMEDIATE_TOKEN] = _intermediate_schema()
    # Credentials are secrets in every language's SDK, and so in the consumer's state.
    for type_name, prop in SECRET_INPUTS:
        spec["types"][f"{PACKAGE}:index:{type_name}"]["properties"][prop]["secret"] = True
    # Old spellings still work; the SDKs mark them deprecated, naming the new key.
    for renamed in RENAMED_INPUTS:
        props = spec["types"][f"{PACKAGE}:index:{renamed.holder.__name__}"]["properties"]
        props[renamed.old]["deprecationMessage"] = renamed.deprecation_message
    return spec


#: (type, property) of every input that carries a credential.
SECRET_INPUTS = (("ClusterInputs", "kubeconfig"), ("CAInputs", "rootKeyPem"), ("NextRootInputs", "rootKeyPem"))


def _intermediate_schema() -> dict[str, Any]:
    string = {"type": "string"}
    inputs = {
        "publicKeyPem": {**string, "description": "The intermediate's public key (PEM)."},
        "clusterName": {**string, "description": "The cluster the intermediate is for (its L= field)."},
        "rootCertPem": {**string, "description": "The root certificate (PEM)."},
        "rootKeyPem": {**string, "secret": True, "description": "The root's private key (PEM); never an output."},
        "validityDays": {"type": "integer", "description": "Validity in days (never past the root's end)."},
        "renewBeforeDays": {"type": "integer", "description": "Sign again this many days before the end."},
    }
    outputs = {
        "certPem": {**string, "description": "The intermediate certificate (PEM)."},
        "notAfter": {**string, "description": "Expiry, ISO 8601 UTC."},
        "serial": {**string, "description": "Serial number, lower-case hex."},
        **{k: v for k, v in inputs.items() if k != "rootKeyPem"},
    }
    return {
        "description": (
            "An intermediate CA certificate for one cluster, signed by the mesh root: O=Istio, CN=Intermediate CA, "
            "L=<cluster>, critical CA:true pathlen:0, SAN istiod.istio-system.svc. Used by the mesh built by this "
            "plugin; any input change replaces it, and so does renewal."
        ),
        "inputProperties": inputs,
        "requiredInputs": ["publicKeyPem", "clusterName", "rootCertPem", "rootKeyPem", "validityDays"],
        "properties": outputs,
        "required": ["certPem", "notAfter", "serial"],
    }


def __getattr__(name: str) -> Any:
    """``istio_mesh.plugin.MultiPrimaryMesh``, the plugin's class before it was named ``MeshFromInputs``:
    still importable, with a warning (the package's own class is ``istio_mesh.MultiPrimaryMesh``)."""
    if name == "MultiPrimaryMesh":
        warnings.warn(
            "istio_mesh.plugin.MultiPrimaryMesh is now istio_mesh.plugin.MeshFromInputs (the plugin's component, "
            "built from the schema's inputs); the package's component is istio_mesh.MultiPrimaryMesh",
            DeprecationWarning,
            stacklevel=2,
        )
        return MeshFromInputs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str]) -> None:
    """``--schema``: print the schema; otherwise serve the plugin (the engine's address is the argument)."""
    if argv[:1] == ["--schema"]:
        print(json.dumps(schema(), indent=2, sort_keys=True))
        return
    from .plugin_server import serve

    serve(schema(), VERSION, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
