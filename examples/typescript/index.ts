// A multi-primary, multi-network Istio mesh over two clusters, using the istiomesh package.
//
//   pulumi config set --secret cluster1Kubeconfig "$(cat cluster1.kubeconfig)"   # and cluster2
//   pulumi config set cluster1ApiServer https://10.0.1.1:6443                     # what the other cluster dials
import * as pulumi from "@pulumi/pulumi";
import * as istiomesh from "@pulumi/istiomesh";

const config = new pulumi.Config();

const mesh = new istiomesh.MultiPrimaryMesh("mesh", {
    meshId: "mesh1",
    clusters: ["cluster1", "cluster2"].map((name, i) => ({
        name,
        network: `network${i + 1}`,
        apiServer: config.require(`${name}ApiServer`),
        kubeconfig: config.requireSecret(`${name}Kubeconfig`),
        helloworldVersions: [`v${i + 1}`],
    })),
    istio: { chartDirectory: config.get("chartDirectory") },
    ca: { protect: config.getBoolean("protectRootCA") ?? true },
    samples: { enabled: true },
    allowLoopbackApiServers: config.getBoolean("loopbackApiServers") ?? false,
    labels: { "example.com/managed-by": "mesh-example-typescript" },
});

export const rootCertificateFingerprint = mesh.rootFingerprint;
export const clusters = mesh.clusters;
