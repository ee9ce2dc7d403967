// Command pulumi-resource-tls is the Pulumi resource provider. The embedded files are generated at
// build time by toolchain/steps/pulumi.sh (they are not in the repository).
package main

import (
	"context"
	_ "embed"

	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	tls "istio-mesh.local/toolchain/pulumi-tls"
)

//go:embed schema-embed.json
var schema []byte

//go:embed bridge-metadata.json
var metadata []byte

func main() {
	tfbridge.Main(context.Background(), "tls", tls.Provider(metadata), tfbridge.ProviderMetadata{PackageSchema: schema})
}
