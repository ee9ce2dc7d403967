"""State compatibility only: not part of the package (``istio_mesh`` is).

Stacks deployed before the package moved to ``components/istio_mesh/`` hold, in each intermediate
certificate's state, Pulumi's serialized dynamic provider, which names its class by module path:
``components.intermediate_cert.IntermediateCertificateProvider``. Pulumi loads the provider from the
*old* state to refresh (``Read``) and to delete, so that path must keep importing from the project
directory (where the dynamic-provider host runs) until every such certificate has been signed again.
Nothing here is imported by the package or the program.
"""

from istio_mesh.intermediate_cert import IntermediateCertificateProvider

__all__ = ["IntermediateCertificateProvider"]
