// Command pulumi-language-proxy stands in front of a language host of this toolchain that predates parts
// of the language protocol (pulumirpc.LanguageRuntime) the CLI (v3.260.0) uses, and answers those parts
// itself, so that `pulumi package add` completes:
//
//	pulumi-language-yaml    pulumi-yaml 1.25.0 has GeneratePackage but no Link      -> Link (yaml.go)
//	pulumi-language-nodejs  sdk/v3 v3.68.0 has neither GeneratePackage nor Link     -> both (nodejs.go)
//
// It is installed under the name the CLI looks for, pulumi-language-<language>, which also selects the
// language; the real host is installed next to it as pulumi-language-<language>-host. Started by the CLI,
// the proxy starts the host with the CLI's arguments (the Node.js host also gets the flags it takes the
// project's runtime options from, see nodejs.go), reads the port the host prints, listens on a port of its
// own and prints that one, as language hosts do, so the engine talks to the proxy. Every other call (unary
// or streaming, health checks included) goes to the host as it came, bytes unchanged, with its metadata,
// deadline and cancellation, and the host's answer comes back the same way; a call neither implements gets
// the host's "Unimplemented", as without the proxy.
//
// The host stays in the proxy's process group, where the CLI interrupts and kills a plugin, and gets
// SIGKILL when the proxy dies (host.go). The proxy exits when the host does, with its exit status.
package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// maxMessageSize is the limit of Pulumi's own gRPC servers and clients (rpcutil: 400 MB) instead of gRPC's
// default 4 MB: a whole schema travels in one GeneratePackage request.
const maxMessageSize = 400 << 20

// language is what the proxy adds for one language host.
type language struct {
	// launch returns the arguments the host gets before the CLI's and the variables added to its environment.
	launch func() (args, env []string)
	// local maps full method names ("/pulumirpc.LanguageRuntime/Link") to the proxy's own answers.
	local map[string]answer
}

func main() {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		fatal("pulumi-language-proxy", err)
	}
	name := filepath.Base(self)
	var lang language
	switch strings.TrimPrefix(name, "pulumi-language-") {
	case "nodejs":
		lang = nodejsLanguage()
	case "yaml":
		lang = yamlLanguage()
	default:
		fatal(name, fmt.Errorf("the executable's name says which language host to start: "+
			"install it as pulumi-language-nodejs or pulumi-language-yaml, not %s", name))
	}

	args, env := lang.launch()
	h, err := startHost(filepath.Join(filepath.Dir(self), name+"-host"),
		append(args, os.Args[1:]...), append(os.Environ(), env...))
	if err != nil {
		fatal(name, err)
	}
	conn, err := grpc.NewClient("127.0.0.1:"+strconv.Itoa(h.port),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageSize)))
	if err != nil {
		h.kill()
		fatal(name, err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.kill()
		fatal(name, err)
	}
	p := &proxy{host: conn, local: lang.local}
	srv := grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}),
		grpc.UnknownServiceHandler(p.handle),
		grpc.MaxRecvMsgSize(maxMessageSize),
	)
	go func() { _ = srv.Serve(lis) }() // ends with the process

	// The first line of stdout is the port, as for every plugin; the host's later output follows it.
	fmt.Printf("%d\n", lis.Addr().(*net.TCPAddr).Port)
	h.relay(os.Stdout)
	os.Exit(h.wait(name))
}

func fatal(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
