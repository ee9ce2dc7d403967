// Command pulumi-language-python starts the Python language host (built from the sdk/v3 module next to
// this launcher as pulumi-language-python-host) with the project's runtime options.
//
// That host takes `runtime.options.virtualenv` from its -virtualenv/-root flags, which the Pulumi CLIs
// of this toolchain no longer pass (they send the options over gRPC, which the older host does not
// read). This launcher finds Pulumi.yaml from the working directory the CLI starts it in, and execs the
// host with those flags followed by the CLI's own arguments.
//
// The host's About call (the runtime metadata the CLI asks for on every command) runs `python3
// --version` from PATH, ignoring the virtualenv; behind a version manager's shim (pyenv's is a chain
// of shell scripts) that took 0.7-0.8 s per command here, and reported a Python the program does not
// run on. With a virtualenv that exists, its bin directory goes first on the host's PATH, so About
// runs the virtualenv's Python, as the program and its dynamic providers do.
//
// The CLI ends a language host by interrupting its process group (SIGINT) and kills it 5 s later. A host
// that inherited SIGINT as ignored (any command a shell starts in the background does: a CI runner,
// `nohup`) would sit out those 5 s every time: the CLI ends the host it asked for its runtime
// metadata before every preview and update, so each of them started 5 s late. Catching SIGINT here
// before the exec gives the host the default disposition (exec resets caught signals, not ignored
// ones).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
	env := os.Environ()
	if root, virtualenv := projectOptions(); root != "" {
		args = append(args, "-root="+root)
		if virtualenv != "" {
			args = append(args, "-virtualenv="+virtualenv)
			env = withVirtualenvOnPath(env, root, virtualenv)
		}
	}
	args = append(args, os.Args[1:]...)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT) // caught, so the exec'd host gets the default
	fatal(syscall.Exec(host, args, env))
}

// withVirtualenvOnPath returns env with the virtualenv's bin directory first on PATH, when that
// directory holds a python3 (otherwise env unchanged: the host reports a missing virtualenv itself).
func withVirtualenvOnPath(env []string, root, virtualenv string) []string {
	if !filepath.IsAbs(virtualenv) {
		virtualenv = filepath.Join(root, virtualenv)
	}
	bin := filepath.Join(virtualenv, "bin")
	if _, err := os.Stat(filepath.Join(bin, "python3")); err != nil {
		return env
	}
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if path, ok := strings.CutPrefix(kv, "PATH="); ok {
			kv = "PATH=" + bin + string(os.PathListSeparator) + path
			found = true
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, "PATH="+bin)
	}
	return out
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
