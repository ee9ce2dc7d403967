package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// host is the language host the proxy started and speaks for.
type host struct {
	cmd     *exec.Cmd
	port    int
	stdout  *bufio.Reader // the host's stdout, after the port line
	relayed chan struct{} // closed when the host's stdout is passed on to its end
	exited  chan struct{} // closed when the host has exited; err is then set
	err     error
}

// startHost starts the language host at path and reads the port it prints on the first line of stdout.
//
// The host's stdin and stderr are the proxy's. It stays in the proxy's process group: the CLI stops a
// plugin by interrupting its group (SIGINT) and, 5 s later, killing it (SIGKILL), which then reaches the
// host and whatever the host runs (node) as it did without the proxy. Should the proxy die on its own, the
// kernel sends the host SIGKILL (Linux parent-death signal; it is tied to the thread that started the host,
// and Go only ends threads that a goroutine locked, which nothing here does).
func startHost(path string, args, env []string) (*host, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Catch the signals before the host starts: a signal the proxy inherited as ignored (a parent that
	// ignores SIGINT, as a shell does for a command it runs in the background) would otherwise be ignored
	// by the host too, and the CLI's SIGINT would not end it. Caught here, exec gives the host the default.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, w, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	_ = w.Close() // the host has its own copy
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	h := &host{cmd: cmd, stdout: bufio.NewReader(r), relayed: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		h.err = cmd.Wait()
		close(h.exited)
	}()
	h.forwardSignals(signals)

	line, err := h.stdout.ReadString('\n')
	if err != nil {
		h.kill()
		return nil, fmt.Errorf("%s printed no port: %s", path, h.status())
	}
	h.port, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil || h.port <= 0 || h.port > 65535 {
		h.kill()
		return nil, fmt.Errorf("%s printed %q where its port was expected", path, strings.TrimSpace(line))
	}
	return h, nil
}

// forwardSignals passes SIGTERM and SIGHUP sent to the proxy on to the host. SIGINT normally reaches the
// host already, because the CLI (and a terminal) interrupt the whole process group: a second one would
// cut the host's own shutdown short. It is passed on only when the host is still running 2 s later (the
// signal was sent to the proxy alone).
func (h *host) forwardSignals(signals <-chan os.Signal) {
	go func() {
		for sig := range signals {
			if sig == syscall.SIGINT {
				select {
				case <-h.exited:
					return
				case <-time.After(2 * time.Second):
				}
			}
			_ = h.cmd.Process.Signal(sig)
		}
	}()
}

// relay copies the rest of the host's stdout (what the programs it runs print, for the CLI to show) to w.
func (h *host) relay(w io.Writer) {
	go func() {
		_, _ = io.Copy(w, h.stdout)
		close(h.relayed)
	}()
}

// wait waits for the host to exit and returns the exit status the proxy should exit with: the host's,
// or 128+N for a host ended by signal N (as shells report it).
func (h *host) wait(name string) int {
	<-h.exited
	// What the host wrote last is still in the pipe. A process it started may hold the pipe open, so
	// this wait is bounded.
	select {
	case <-h.relayed:
	case <-time.After(time.Second):
	}
	if h.err == nil {
		return 0
	}
	if exit, ok := errors.AsType[*exec.ExitError](h.err); ok {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return exit.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, h.err)
	return 1
}

// kill ends the host at once (when the proxy cannot start) and waits for it.
func (h *host) kill() {
	_ = h.cmd.Process.Kill()
	<-h.exited
}

// status describes how the host ended, or that it is still running.
func (h *host) status() string {
	select {
	case <-h.exited:
	default:
		return "it is still running"
	}
	if h.err == nil {
		return "it exited with status 0"
	}
	return h.err.Error()
}
