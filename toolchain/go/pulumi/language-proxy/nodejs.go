package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/pulumi/pulumi/pkg/v3/codegen/nodejs"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"gopkg.in/yaml.v3"
)

// nodejsLanguage is the proxy in front of the Node.js host of sdk/v3 v3.68.0.
//
// That host takes `runtime.options.typescript`, `tsconfig` and `nodeargs` from its -typescript, -tsconfig
// and -nodeargs flags, which the CLI of this toolchain no longer passes (it sends the options over gRPC,
// which the older host does not read), and it does not pass the project's root directory to the Node.js
// SDK (whose `pulumi.runtime.getRootDirectory()` then says "rootDirectory"). So the proxy finds Pulumi.yaml
// from the working directory the CLI starts it in, sets PULUMI_NODEJS_ROOT_DIRECTORY (which the SDK reads,
// and the host hands on to Node.js in its environment) and starts the host with those flags before the
// CLI's own arguments.
//
// GeneratePackage and Link, which the host predates, are answered here. InstallDependencies, which
// `pulumi package add` calls after Link, goes to the host: the CLI still fills the request's `directory`
// (deprecated, the only field that host reads) with the program directory, and the host runs
// `npm install` there.
func nodejsLanguage() language {
	return language{
		launch: nodejsLaunch,
		local: map[string]answer{
			pulumirpc.LanguageRuntime_GeneratePackage_FullMethodName: unary(
				func() *pulumirpc.GeneratePackageRequest { return new(pulumirpc.GeneratePackageRequest) },
				nodejsGeneratePackage),
			pulumirpc.LanguageRuntime_Link_FullMethodName: unary(
				func() *pulumirpc.LinkRequest { return new(pulumirpc.LinkRequest) }, nodejsLink),
		},
	}
}

func nodejsLaunch() (args, env []string) {
	root, options := nodejsProjectOptions()
	if root == "" {
		return nil, nil
	}
	env = []string{"PULUMI_NODEJS_ROOT_DIRECTORY=" + root}
	if options.typescript != nil {
		args = append(args, "-typescript="+strconv.FormatBool(*options.typescript))
	}
	if options.tsconfig != "" {
		args = append(args, "-tsconfig="+options.tsconfig)
	}
	if options.nodeargs != "" {
		args = append(args, "-nodeargs="+options.nodeargs)
	}
	return args, env
}

// nodejsOptions are the runtime options of a nodejs project that the host takes as flags.
type nodejsOptions struct {
	typescript         *bool // nil: the host's default (true)
	tsconfig, nodeargs string
}

// nodejsProjectOptions returns the directory of the nearest Pulumi.yaml at or above the working directory
// and its runtime options (zero when absent or malformed).
func nodejsProjectOptions() (root string, opts nodejsOptions) {
	dir, err := os.Getwd()
	if err != nil {
		return "", opts
	}
	for {
		for _, name := range []string{"Pulumi.yaml", "Pulumi.yml"} {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				continue
			}
			var project struct {
				Runtime yaml.Node `yaml:"runtime"`
			}
			if yaml.Unmarshal(data, &project) != nil {
				return dir, opts
			}
			// Scalars are read as strings: `typescript: false` and `typescript: "false"` both work.
			var runtime struct {
				Options struct {
					TypeScript *string `yaml:"typescript"`
					TSConfig   string  `yaml:"tsconfig"`
					NodeArgs   string  `yaml:"nodeargs"`
				} `yaml:"options"`
			}
			if project.Runtime.Kind != yaml.MappingNode || project.Runtime.Decode(&runtime) != nil {
				return dir, opts
			}
			if ts := runtime.Options.TypeScript; ts != nil {
				if b, err := strconv.ParseBool(*ts); err == nil {
					opts.typescript = &b
				}
			}
			opts.tsconfig, opts.nodeargs = runtime.Options.TSConfig, runtime.Options.NodeArgs
			return dir, opts
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", opts
		}
		dir = parent
	}
}

// nodejsGeneratePackage writes the package's Node.js SDK into the request's directory with the CLI's own
// generator (pkg/v3 codegen/nodejs, as pulumi-sdkgen-nodejs does). The schema is bound as the CLI binds it
// (dangling references allowed); other packages it refers to come from the CLI's schema loader, whose
// address the request carries. Each file's header names pulumi-language-nodejs as the generator, as the
// host's own files do.
func nodejsGeneratePackage(
	_ context.Context, req *pulumirpc.GeneratePackageRequest,
) (*pulumirpc.GeneratePackageResponse, error) {
	if req.Directory == "" {
		return nil, fmt.Errorf("GeneratePackage: no directory to write the SDK to")
	}
	if req.LoaderTarget == "" {
		return nil, fmt.Errorf("GeneratePackage: no schema loader address")
	}
	loader, err := schema.NewLoaderClient(req.LoaderTarget)
	if err != nil {
		return nil, err
	}
	defer func() { _ = loader.Close() }()

	var spec schema.PackageSpec
	if err := json.Unmarshal([]byte(req.Schema), &spec); err != nil {
		return nil, fmt.Errorf("GeneratePackage: the schema: %w", err)
	}
	pkg, diags, err := schema.BindSpec(spec, loader, schema.ValidationOptions{AllowDanglingReferences: true})
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.GeneratePackageResponse{Diagnostics: plugin.HclDiagnosticsToRPCDiagnostics(diags)}
	if diags.HasErrors() {
		return resp, nil
	}

	files, err := nodejs.GeneratePackage("pulumi-language-nodejs", pkg, req.ExtraFiles, req.LocalDependencies,
		req.Local, loader)
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		path := filepath.Join(req.Directory, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, files[name], 0o644); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// nodejsLink makes each generated SDK a dependency of the program: `"<its package.json name>":
// "file:<its path from the program directory>"` in the program's package.json (the CLI then asks the host
// to install dependencies, which runs npm install), and returns the import line for each.
func nodejsLink(_ context.Context, req *pulumirpc.LinkRequest) (*pulumirpc.LinkResponse, error) {
	info := req.GetInfo()
	if info == nil || info.RootDirectory == "" {
		return nil, fmt.Errorf("Link: the request names no program")
	}
	programDir := info.ProgramDirectory
	if programDir == "" {
		programDir = info.RootDirectory
	}
	manifest := filepath.Join(programDir, "package.json")
	deps := map[string]string{}
	var imports []string
	for _, dep := range req.Packages {
		sdk := dep.Path
		if !filepath.IsAbs(sdk) {
			sdk = filepath.Join(info.RootDirectory, sdk)
		}
		name, err := nodejsPackageName(sdk)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(programDir, sdk)
		if err != nil {
			return nil, err
		}
		deps[name] = "file:" + filepath.ToSlash(rel)
		imports = append(imports, fmt.Sprintf("  import * as %s from %q;", jsIdentifier(packageName(dep)), name))
	}
	if err := addDependencies(manifest, deps); err != nil {
		return nil, err
	}
	return &pulumirpc.LinkResponse{ImportInstructions: fmt.Sprintf(
		"The SDK is a dependency in %s. Use it in your program with:\n\n%s\n",
		manifest, strings.Join(imports, "\n"))}, nil
}

// nodejsPackageName is the npm name of the SDK in dir, from its package.json.
func nodejsPackageName(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		return "", fmt.Errorf("Link: the generated SDK has no package.json: %w", err)
	}
	var manifest struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(data, &manifest); err != nil || manifest.Name == "" {
		return "", fmt.Errorf("Link: %s names no package", filepath.Join(dir, "package.json"))
	}
	return manifest.Name, nil
}

// packageName is the Pulumi package's name: a parameterized package's own, not its plugin's.
func packageName(dep *pulumirpc.LinkRequest_LinkDependency) string {
	if p := dep.GetPackage().GetParameterization(); p != nil && p.Name != "" {
		return p.Name
	}
	return dep.GetPackage().GetName()
}

// jsIdentifier makes a JavaScript identifier of a package name: "azure-native" -> "azureNative".
func jsIdentifier(name string) string {
	var b strings.Builder
	upper := false
	for _, r := range name {
		switch {
		case r == '_' || r == '$' || unicode.IsLetter(r) || (unicode.IsDigit(r) && b.Len() > 0):
			if upper {
				r = unicode.ToUpper(r)
			}
			b.WriteRune(r)
			upper = false
		default:
			upper = b.Len() > 0
		}
	}
	if b.Len() == 0 {
		return "pkg"
	}
	return b.String()
}
