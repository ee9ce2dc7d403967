"""A multi-primary, multi-network Istio mesh from this stack's config (see README: Configuration).

settings -> one Kubernetes provider per cluster -> the mesh -> outputs.
"""

import pulumi

from components import ConfigError, MultiPrimaryMesh, MultiPrimaryMeshArgs, cluster_provider, load_settings

# Every configuration mistake is reported here, before any resource is registered.
try:
    settings = load_settings()
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None

# One provider per cluster; the stack disables the default provider, so nothing lands in whatever
# cluster the ambient kubeconfig points at.
providers = {c.name: cluster_provider(c) for c in settings.clusters}

mesh = MultiPrimaryMesh(settings.mesh_id, MultiPrimaryMeshArgs(settings=settings, providers=providers))

pulumi.export("meshId", mesh.mesh_id)
pulumi.export("rootCertificatePem", mesh.root_cert_pem)
pulumi.export("rootCertificateFingerprint", mesh.root_fingerprint)
pulumi.export("clusters", mesh.clusters)
