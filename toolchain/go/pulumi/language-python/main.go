// Command pulumi-language-python starts the Python language host (built from the sdk/v3 module next to
// this launcher as pulumi-language-python-host) with the project's runtime options.
//
// That host takes `runtime.options.virtualenv` from its -virtualenv/-root flags, which the Pulumi CLIs
// of this toolchain no longer pass (they send the options over gRPC, which the older host does not
// read). This launcher finds Pulumi.yaml from the working directory the CLI starts it in, and execs the
// host with those flags followed by the CLI's own arguments.
package main

import (
	"fmt"
	"os"
	"path/filepath"
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
	host := filepath.Join(filepath.Dir(self), "pulumi-language-python-host")

	args := []string{host}
	if root, virtualenv := projectOptions(); root != "" {
		args = append(args, "-root="+root)
		if virtualenv != "" {
			args = append(args, "-virtualenv="+virtualenv)
		}
	}
	args = append(args, os.Args[1:]...)
	fatal(syscall.Exec(host, args, os.Environ()))
}

// projectOptions returns the directory of the nearest Pulumi.yaml at or above the working directory
// and its runtime.options.virtualenv ("" when absent).
func projectOptions() (root, virtualenv string) {
	dir, err := os.Getwd()
	if err != nil {
		return "", ""
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
				return dir, ""
			}
			var runtime struct {
				Options struct {
					Virtualenv string `yaml:"virtualenv"`
				} `yaml:"options"`
			}
			if project.Runtime.Kind == yaml.MappingNode && project.Runtime.Decode(&runtime) == nil {
				return dir, runtime.Options.Virtualenv
			}
			return dir, ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ""
		}
		dir = parent
	}
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "pulumi-language-python: %v\n", err)
	os.Exit(1)
}
