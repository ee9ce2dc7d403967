"""A multi-primary, multi-network Istio mesh from this stack's config (see README: Configuration).

settings (``stack_config``) -> one Kubernetes provider per cluster -> the mesh (the ``istio_mesh``
package, installed like any consumer installs it) -> outputs.
"""

import pulumi

from istio_mesh import MultiPrimaryMesh
from stack_config import ConfigError, cluster_provider, load_settings, mesh_args, preflight_problems

#: The mesh component's logical name, and so the prefix of every resource's name in the state.
MESH_NAME = "mesh"

# Every configuration mistake is reported here, before any resource is registered.
try:
    settings = load_settings()
except ConfigError as err:
    raise pulumi.RunError(str(err)) from None

# Every API server answers (and none marked unreachable does), or nothing is registered in any cluster:
# one lost cluster must not leave a half-applied change in the others, nor hang the run.
problems = preflight_problems(settings.clusters)
if problems:
    raise pulumi.RunError("cannot reach every cluster (nothing was changed):\n  - " + "\n  - ".join(problems))

# One provider per cluster; the stack disables the default provider, so nothing lands in whatever
# cluster the ambient kubeconfig points at.
providers = {c.name: cluster_provider(c) for c in settings.clusters}

# The mesh's logical name is fixed: it is its identity in the state, and a value users change (meshId)
# must not rename every resource. Stacks deployed before this (up to commit 071d271) named it after
# meshId; the alias carries them over with nothing recreated (upgrade before changing meshId).
mesh = MultiPrimaryMesh(
    MESH_NAME,
    mesh_args(settings, providers),
    opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name=settings.mesh_id)] if settings.mesh_id != MESH_NAME else []),
)

pulumi.export("meshId", mesh.mesh_id)
pulumi.export("rootCertificatePem", mesh.root_cert_pem)
pulumi.export("rootCertificateFingerprint", mesh.root_fingerprint)
if mesh.rotating:  # (only then: a mesh that never rotated keeps exactly the outputs it had)
    pulumi.export("trustedRootsPem", mesh.trusted_roots_pem)
pulumi.export("clusters", mesh.clusters)
