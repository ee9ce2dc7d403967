// Command pulumi-language-nodejs starts the Node.js language host (built from the sdk/v3 module next to
// this launcher as pulumi-language-nodejs-host) with the project's runtime options.
//
// That host takes `runtime.options.typescript`, `tsconfig` and `nodeargs` from its -typescript,
// -tsconfig and -nodeargs flags, which the Pulumi CLIs of this toolchain no longer pass (they send the
// options over gRPC, which the older host does not read), and it does not pass the project's root
// directory to the Node.js SDK (whose `pulumi.runtime.getRootDirectory()` then says "rootDirectory").
// This launcher finds Pulumi.yaml from the working directory the CLI starts it in, sets
// PULUMI_NODEJS_ROOT_DIRECTORY (which the SDK reads, and the host hands on to Node.js in its
// environment) and execs the host with those flags followed by the CLI's own arguments.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"gopkg.in/yaml.v3"
)

func main() {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		fatal(err)
	}
	host := filepath.Join(filepath.Dir(self), "pulumi-language-nodejs-host")

	args := []string{host}
	env := os.Environ()
	if root, options := projectOptions(); root != "" {
		env = append(env, "PULUMI_NODEJS_ROOT_DIRECTORY="+root)
		if options.typescript != nil {
			args = append(args, "-typescript="+strconv.FormatBool(*options.typescript))
		}
		if options.tsconfig != "" {
			args = append(args, "-tsconfig="+options.tsconfig)
		}
		if options.nodeargs != "" {
			args = append(args, "-nodeargs="+options.nodeargs)
		}
	}
	args = append(args, os.Args[1:]...)
	fatal(syscall.Exec(host, args, env))
}

// options are the runtime options of a nodejs project that the host takes as flags.
type options struct {
	typescript         *bool // nil: the host's default (true)
	tsconfig, nodeargs string
}

// projectOptions returns the directory of the nearest Pulumi.yaml at or above the working directory
// and its runtime options (zero when absent or malformed).
func projectOptions() (root string, opts options) {
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

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
	os.Exit(1)
}
