// Command pulumi-resource-random is the Pulumi resource provider. The embedded files are generated at
// build time by toolchain/steps/pulumi.sh (they are not in the repository).
package main

import (
	"context"
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	random "istio-mesh.local/toolchain/pulumi-random"
)

//go:embed schema-embed.json
var schema []byte

//go:embed bridge-metadata.json
var metadata []byte

func main() {
	tfbridge.Main(context.Background(), "random", random.Provider(metadata), tfbridge.ProviderMetadata{PackageSchema: schema})
}
