package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// yamlLanguage is the proxy in front of the YAML host of pulumi-yaml 1.25.0, which generates a package's
// "SDK" (a small lock file under sdks/) but predates Link. A YAML program has nothing to link: the CLI
// itself records the package under `packages:` in Pulumi.yaml. So Link here changes no file and only
// returns instructions: the type tokens to declare the package's resources with.
func yamlLanguage() language {
	return language{
		launch: func() (args, env []string) { return nil, nil },
		local: map[string]answer{
			pulumirpc.LanguageRuntime_Link_FullMethodName: unary(
				func() *pulumirpc.LinkRequest { return new(pulumirpc.LinkRequest) }, yamlLink),
		},
	}
}

// How many tokens the instructions list per package, and how many resources are looked at for a
// component to show as the example (a component is what a YAML program usually declares).
const (
	yamlListedTokens       = 10
	yamlComponentCandidate = 50
)

func yamlLink(ctx context.Context, req *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	var loader *schema.LoaderClient
	if req.LoaderTarget != "" {
		var err error
		if loader, err = schema.NewLoaderClient(req.LoaderTarget); err != nil {
			return nil, err
		}
		defer func() { _ = loader.Close() }()
	}
	var b strings.Builder
	for i, dep := range req.Packages {
		if i > 0 {
			b.WriteString("\n")
		}
		name := packageName(dep)
		fmt.Fprintf(&b, "Pulumi YAML needs no SDK for %s: a program finds its plugin through `packages:` in Pulumi.yaml.\n", name)
		var ref schema.PackageReference
		var err error
		if loader != nil {
			ref, err = loader.LoadPackageReferenceV2(ctx, descriptor(dep))
		}
		if loader == nil || err != nil {
			fmt.Fprintf(&b, "Declare its resources under `resources:` with `type: %s:<module>:<Resource>`.\n", name)
			continue
		}
		resources, example := yamlResources(ref)
		if example == "" {
			fmt.Fprintf(&b, "It has no resources to declare.\n")
		} else {
			fmt.Fprintf(&b, "Declare its resources under `resources:` by type, e.g.:\n\n"+
				"  resources:\n    my%s:\n      type: %s\n      properties: ...\n\n",
				example[strings.LastIndex(example, ":")+1:], example)
			fmt.Fprintf(&b, "Resources of %s: %s\n", name, listed(resources))
		}
		var functions []string
		for it := ref.Functions().Range(); it.Next(); {
			if !it.IsMethod() {
				functions = append(functions, it.Token())
			}
		}
		if len(functions) > 0 {
			slices.Sort(functions)
			fmt.Fprintf(&b, "Functions of %s (`fn::invoke: {function: <token>, arguments: ...}`): %s\n",
				name, listed(functions))
		}
	}
	return &pulumirpc.LinkResponse{ImportInstructions: b.String()}, nil
}

// yamlResources returns the package's resource tokens, sorted, and the one to show as the example: the first
// component among the first few, else the first resource ("" when there is none).
func yamlResources(ref schema.PackageReference) (tokens []string, example string) {
	for it := ref.Resources().Range(); it.Next(); {
		tokens = append(tokens, it.Token())
	}
	slices.Sort(tokens)
	for _, token := range tokens[:min(len(tokens), yamlComponentCandidate)] {
		if res, ok, err := ref.Resources().Get(token); err == nil && ok && res.IsComponent {
			return tokens, token
		}
	}
	if len(tokens) > 0 {
		example = tokens[0]
	}
	return tokens, example
}

// listed joins tokens for the instructions, the first few of a long list.
func listed(tokens []string) string {
	if len(tokens) <= yamlListedTokens {
		return strings.Join(tokens, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(tokens[:yamlListedTokens], ", "), len(tokens)-yamlListedTokens)
}

// descriptor is what the schema loader needs to find a linked package (the CLI has it loaded already).
func descriptor(dep *pulumirpc.LinkRequest_LinkDependency) *schema.PackageDescriptor {
	pkg := dep.GetPackage()
	d := &schema.PackageDescriptor{Name: pkg.GetName(), DownloadURL: pkg.GetServer()}
	if v, err := semver.ParseTolerant(pkg.GetVersion()); err == nil {
		d.Version = &v
	}
	if p := pkg.GetParameterization(); p != nil {
		if v, err := semver.ParseTolerant(p.Version); err == nil {
			d.Parameterization = &schema.ParameterizationDescriptor{Name: p.Name, Version: v, Value: p.Value}
		}
	}
	return d
}
