// Command pulumi-tfgen-tls writes schema.json and bridge-metadata.json (`schema --out DIR`).
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	tls "istio-mesh.local/toolchain/pulumi-tls"
)

func main() { tfgen.Main("tls", tls.Provider([]byte("{}"))) }
