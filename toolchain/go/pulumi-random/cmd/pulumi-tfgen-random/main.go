// Command pulumi-tfgen-random writes schema.json and bridge-metadata.json (`schema --out DIR`).
package main

import (
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	random "istio-mesh.local/toolchain/pulumi-random"
)

func main() { tfgen.Main("random", random.Provider([]byte("{}"))) }
