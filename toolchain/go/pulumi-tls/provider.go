// Package tls maps the upstream Terraform TLS provider onto the Pulumi package "tls", with the tokens
// that the pulumi-tls SDKs use (tls:index/privateKey:PrivateKey, tls:index/getPublicKey:getPublicKey, ...).
package tls

import (
	"github.com/hashicorp/terraform-provider-tls/shim"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge/tokens"
)

// Version is the provider version, set at link time (-X istio-mesh.local/toolchain/pulumi-tls.Version=...).
var Version string

// Provider returns the bridge configuration; metadata is bridge-metadata.json as written by tfgen.
func Provider(metadata []byte) tfbridge.ProviderInfo {
	info := tfbridge.ProviderInfo{
		P:                              pf.ShimProvider(shim.NewProvider()),
		Name:                           "tls",
		Description:                    "A Pulumi package to create TLS resources in Pulumi programs.",
		Keywords:                       []string{"pulumi", "tls"},
		License:                        "Apache-2.0",
		Homepage:                       "https://pulumi.io",
		Repository:                     "https://github.com/pulumi/pulumi-tls",
		GitHubOrg:                      "hashicorp",
		Version:                        Version,
		MetadataInfo:                   tfbridge.NewProviderMetadata(metadata),
		EnableZeroDefaultSchemaVersion: true,
	}
	// tls_private_key -> tls:index/privateKey:PrivateKey, data source tls_public_key ->
	// tls:index/getPublicKey:getPublicKey.
	info.MustComputeTokens(tokens.SingleModule("tls_", "index", tokens.MakeStandard("tls")))
	return info
}
