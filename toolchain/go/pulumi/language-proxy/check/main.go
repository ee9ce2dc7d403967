// Command check is the self-check of the toolchain steps that install pulumi-language-proxy (the steps
// pulumi-language-nodejs and pulumi-language-yaml):
//
//	check LANGUAGE PROXY HOST_VERSION
//
// It plays the CLI's part against the installed proxy PROXY (pulumi-language-LANGUAGE, its host next to
// it): a stand-in engine (gRPC health, and a schema loader holding a one-component package), a project
// directory to start the proxy in, the proxy in a process group of its own as the CLI starts plugins. It
// checks that a call the proxy passes on reaches the host (GetPluginInfo reports HOST_VERSION), that a
// call neither implements answers Unimplemented, that a streaming call passes through (YAML's
// InstallDependencies), the proxy's own GeneratePackage (Node.js; YAML's goes to the host) and Link, the
// flags and environment the Node.js host gets from the project, and that the host ends with the proxy:
// after the CLI's SIGINT to the group, and after a SIGKILL of the proxy alone.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/pkg/v3/codegen/schema"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	codegenrpc "github.com/pulumi/pulumi/sdk/v3/proto/go/codegen"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// The package the stand-in engine's loader holds.
const checkSchema = `{"name": "proxycheck", "version": "1.2.3",
 "language": {"nodejs": {"respectSchemaVersion": true}},
 "resources": {"proxycheck:index:Widget": {"isComponent": true,
   "inputProperties": {"size": {"type": "integer"}}, "requiredInputs": ["size"],
   "properties": {"label": {"type": "string"}}, "required": ["label"]}}}`

// The program's package.json: indented by four spaces, one dependency.
const checkManifest = "{\n    \"name\": \"check\",\n    \"dependencies\": {\n        \"@pulumi/pulumi\": \"^3\"\n    }\n}\n"

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: check LANGUAGE PROXY HOST_VERSION")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintf(os.Stderr, "check %s: %v\n", os.Args[2], err)
		os.Exit(1)
	}
	fmt.Printf("check %s: ok\n", os.Args[2])
}

func run(lang, proxyPath, hostVersion string) error {
	// The proxies start with SIGINT ignored, as every command a shell runs in the background (a CI
	// runner, `nohup`) inherits it: the harder case, made the same wherever the check runs. The CLI's
	// SIGINT must still end proxy and host.
	signal.Ignore(syscall.SIGINT)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	engine, err := startEngine()
	if err != nil {
		return err
	}
	defer engine.Stop()
	work, err := os.MkdirTemp("", "language-proxy-check-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	project := filepath.Join(work, "project")
	if err := writeProject(project, lang); err != nil {
		return err
	}

	p, err := startProxy(proxyPath, project, engine.addr)
	if err != nil {
		return err
	}
	defer func() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }() // a check that failed half-way
	client := pulumirpc.NewLanguageRuntimeClient(p.conn)

	info, err := client.GetPluginInfo(ctx, &emptypb.Empty{})
	if err != nil {
		return fmt.Errorf("GetPluginInfo: %w", err)
	}
	if strings.TrimPrefix(info.Version, "v") != hostVersion {
		return fmt.Errorf("GetPluginInfo says version %q; the host is %s", info.Version, hostVersion)
	}
	_, err = client.Template(ctx, &pulumirpc.TemplateRequest{ProjectName: "check"})
	if status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("Template (implemented by neither): want Unimplemented, got %v", err)
	}

	sdk := filepath.Join(project, "sdks", "proxycheck")
	_, err = client.GeneratePackage(ctx, &pulumirpc.GeneratePackageRequest{
		Directory: sdk, Schema: checkSchema, LoaderTarget: engine.addr, Local: true,
	})
	if err != nil {
		return fmt.Errorf("GeneratePackage: %w", err)
	}
	link, err := client.Link(ctx, &pulumirpc.LinkRequest{
		Info:         &pulumirpc.ProgramInfo{RootDirectory: project, ProgramDirectory: project, EntryPoint: "."},
		LoaderTarget: engine.addr,
		Packages: []*pulumirpc.LinkRequest_LinkDependency{{
			Path:    filepath.Join("sdks", "proxycheck"),
			Package: &pulumirpc.PackageDependency{Name: "proxycheck", Version: "1.2.3", Kind: "resource"},
		}},
	})
	if err != nil {
		return fmt.Errorf("Link: %w", err)
	}
	switch lang {
	case "yaml":
		err = checkYAML(ctx, client, project, sdk, link.ImportInstructions)
	case "nodejs":
		err = checkNodejs(p, project, sdk, link.ImportInstructions)
	default:
		err = fmt.Errorf("unknown language %q", lang)
	}
	if err != nil {
		return err
	}

	// The CLI ends a plugin by interrupting its process group: proxy and host both exit.
	if err := p.stop(func() error { return syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT) }); err != nil {
		return fmt.Errorf("after SIGINT to the process group: %w", err)
	}
	// A proxy killed alone takes its host along (parent-death signal).
	if p, err = startProxy(proxyPath, project, engine.addr); err != nil {
		return err
	}
	defer func() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }()
	if err := p.stop(p.cmd.Process.Kill); err != nil {
		return fmt.Errorf("after SIGKILL to the proxy alone: %w", err)
	}
	return nil
}

func checkYAML(ctx context.Context, client pulumirpc.LanguageRuntimeClient, project, sdk, instructions string) error {
	if _, err := os.Stat(filepath.Join(sdk, "proxycheck-1.2.3.yaml")); err != nil {
		return fmt.Errorf("GeneratePackage (the host's): %w", err)
	}
	if !strings.Contains(instructions, "type: proxycheck:index:Widget") {
		return fmt.Errorf("Link: the instructions do not show the resource's type:\n%s", instructions)
	}
	stream, err := client.InstallDependencies(ctx, &pulumirpc.InstallDependenciesRequest{Directory: project})
	if err != nil {
		return fmt.Errorf("InstallDependencies: %w", err)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("InstallDependencies (a stream the host ends at once): %w", err)
		}
	}
}

func checkNodejs(p *proxyProcess, project, sdk, instructions string) error {
	widget, err := os.ReadFile(filepath.Join(sdk, "widget.ts"))
	if err != nil || !strings.Contains(string(widget), "export class Widget extends pulumi.ComponentResource") {
		return fmt.Errorf("GeneratePackage wrote no Widget component into %s (%v)", sdk, err)
	}
	data, err := os.ReadFile(filepath.Join(project, "package.json"))
	if err != nil {
		return err
	}
	want := "{\n    \"name\": \"check\",\n    \"dependencies\": {\n" +
		"        \"@pulumi/proxycheck\": \"file:sdks/proxycheck\",\n        \"@pulumi/pulumi\": \"^3\"\n    }\n}\n"
	if string(data) != want {
		return fmt.Errorf("Link: package.json is\n%s\nwant\n%s", data, want)
	}
	if !strings.Contains(instructions, `import * as proxycheck from "@pulumi/proxycheck";`) {
		return fmt.Errorf("Link: the instructions do not show the import:\n%s", instructions)
	}
	host, err := p.host()
	if err != nil {
		return err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", host))
	if err != nil {
		return err
	}
	if args := strings.Split(string(cmdline), "\x00"); len(args) < 2 || args[1] != "-typescript=false" {
		return fmt.Errorf("the host runs with %q: want -typescript=false (runtime.options) first", args)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", host))
	if err != nil {
		return err
	}
	if !strings.Contains("\x00"+string(environ), "\x00PULUMI_NODEJS_ROOT_DIRECTORY="+project+"\x00") {
		return errors.New("the host's environment lacks PULUMI_NODEJS_ROOT_DIRECTORY=" + project)
	}
	return nil
}

func writeProject(dir, lang string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	project := "name: check\nruntime: yaml\n"
	if lang == "nodejs" {
		project = "name: check\nruntime:\n  name: nodejs\n  options:\n    typescript: false\n"
		if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(checkManifest), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte(project), 0o644)
}

// engine is the stand-in for the CLI's side: health checks and the schema loader.
type engine struct {
	*grpc.Server
	addr string
}

func startEngine() (*engine, error) {
	var spec schema.PackageSpec
	if err := json.Unmarshal([]byte(checkSchema), &spec); err != nil {
		return nil, err
	}
	pkg, diags, err := schema.BindSpec(spec, noPackages{}, schema.ValidationOptions{})
	if err != nil || diags.HasErrors() {
		return nil, fmt.Errorf("binding the check schema: %v %v", err, diags)
	}
	loader := schema.NewCachedLoaderWithEntries(noPackages{}, map[string]schema.PackageReference{
		pkg.Identity(): pkg.Reference(),
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	codegenrpc.RegisterLoaderServer(srv, schema.NewLoaderServer(loader))
	go func() { _ = srv.Serve(lis) }()
	return &engine{Server: srv, addr: lis.Addr().String()}, nil
}

// proxyProcess is a started proxy and the connection to it.
type proxyProcess struct {
	cmd  *exec.Cmd
	conn *grpc.ClientConn
	done chan struct{}
}

// startProxy starts the proxy as the CLI does: in the project directory, in a process group of its own,
// with the engine's address as its argument, and reads the port it prints.
func startProxy(path, dir, engineAddr string) (*proxyProcess, error) {
	cmd := exec.Command(path, engineAddr)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxyProcess{cmd: cmd, done: make(chan struct{})}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() { _ = cmd.Wait(); close(p.done) }()
	if err != nil {
		return nil, fmt.Errorf("%s printed no port: %w", path, err)
	}
	port, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return nil, fmt.Errorf("%s printed %q where its port was expected", path, line)
	}
	p.conn, err = grpc.NewClient("127.0.0.1:"+strconv.Itoa(port),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	return p, err
}

// host returns the pid of the proxy's child, the language host.
func (p *proxyProcess) host() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _ := parentOf(pid); ppid == p.cmd.Process.Pid {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("the proxy (pid %d) has no child process", p.cmd.Process.Pid)
}

// stop checks that, after send (which signals), the proxy exits within 6 s (the CLI waits 5 s before it
// kills) and its host is gone too.
func (p *proxyProcess) stop(send func() error) error {
	host, err := p.host()
	if err != nil {
		return err
	}
	if err := send(); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(6 * time.Second):
		return errors.New("the proxy is still running 6 s later")
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !alive(host) {
			return nil
		}
	}
	_ = syscall.Kill(host, syscall.SIGKILL)
	return fmt.Errorf("the host (pid %d) is still running 3 s after the proxy exited", host)
}

// parentOf reads a process's parent pid and state from /proc/PID/stat.
func parentOf(pid int) (int, string) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, ""
	}
	// pid (comm) state ppid ...; comm may contain spaces and parentheses.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(fields) < 2 {
		return 0, ""
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid, fields[0]
}

// alive says whether a process exists and is not a zombie (an orphan's zombie waits for whoever reaps).
func alive(pid int) bool {
	_, state := parentOf(pid)
	return state != "" && state != "Z"
}

// noPackages is the loader behind the stand-in engine's cache: the check schema depends on nothing.
type noPackages struct{}

func (noPackages) LoadPackage(name string, _ *semver.Version) (*schema.Package, error) {
	return nil, fmt.Errorf("no package %q here", name)
}

func (noPackages) LoadPackageV2(_ context.Context, d *schema.PackageDescriptor) (*schema.Package, error) {
	return nil, fmt.Errorf("no package %q here", d.Name)
}

func (noPackages) LoadPackageReference(name string, _ *semver.Version) (schema.PackageReference, error) {
	return nil, fmt.Errorf("no package %q here", name)
}

func (noPackages) LoadPackageReferenceV2(_ context.Context, d *schema.PackageDescriptor) (schema.PackageReference, error) {
	return nil, fmt.Errorf("no package %q here", d.Name)
}
