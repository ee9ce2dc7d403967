"""A multi-primary, multi-network Istio mesh over two clusters, using the istio-mesh package.

Stack config (kubeconfigs are secrets):

    pulumi config set --secret eastKubeconfig "$(cat east.kubeconfig)"
    pulumi config set eastApiServer https://10.0.1.1:6443     # what the other cluster's istiod dials
    pulumi config set --secret westKubeconfig "$(cat west.kubeconfig)"
    pulumi config set westApiServer https://10.0.2.1:6443
"""

import pulumi

from istio_mesh import CASettings, MeshCluster, MultiPrimaryMesh, MultiPrimaryMeshArgs

config = pulumi.Config()

mesh = MultiPrimaryMesh(
    "mesh",
    MultiPrimaryMeshArgs(
        mesh_id="mesh1",
        clusters=[
            MeshCluster(
                name=name,
                network=f"network-{name}",
                api_server=config.require(f"{name}ApiServer"),
                kubeconfig=config.require_secret(f"{name}Kubeconfig"),
            )
            for name in ("east", "west")
        ],
        # The root key lives in this stack's state, encrypted; protect=True (the default) keeps
        # `pulumi destroy` from deleting it by accident.
        ca=CASettings(protect=config.get_bool("protectRootCA") is not False),
        labels={"example.com/managed-by": "mesh-example"},
    ),
)

pulumi.export("rootCertificateFingerprint", mesh.root_fingerprint)
pulumi.export("clusters", mesh.clusters)
