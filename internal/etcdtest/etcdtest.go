// Package etcdtest starts a real etcd server for tests: Debian's etcd
// (package etcd-server, /usr/bin/etcd; ETCD_BIN overrides it), a temporary
// data directory, client and peer URLs on free loopback ports. Without the
// binary a test skips, except in CI (CI set), where it fails: .ci/run
// installs it.
package etcdtest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Server is one running single-member etcd, stopped when the test that
// started it ends.
type Server struct {
	// Endpoint is the client URL (http://127.0.0.1:port).
	Endpoint string
	// Dir holds its data directory and log.
	Dir string
}

// Bin is the etcd binary's path: ETCD_BIN, or /usr/bin/etcd.
func Bin() string {
	if b := os.Getenv("ETCD_BIN"); b != "" {
		return b
	}
	return "/usr/bin/etcd"
}

// Start starts an etcd for tb, healthy when Start returns, killed and its
// directory removed in tb's cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Bin()
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("etcdtest: %s not found; CI must install etcd-server", bin)
		}
		tb.Skipf("etcdtest: %s not found (Debian package etcd-server)", bin)
	}
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	client := "http://" + freeAddr(tb)
	peer := "http://" + freeAddr(tb)
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test="+peer,
		"--unsafe-no-fsync", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary that dies (a panic, a timeout) runs no cleanup: the
	// kernel kills etcd with it instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		tb.Fatalf("etcdtest: start %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	s := &Server{Endpoint: client, Dir: dir}
	if err := s.waitHealthy(30*time.Second, exited); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		tb.Fatalf("etcdtest: %v\n%s", err, log)
	}
	return s
}

// waitHealthy polls /health until etcd says it is healthy, it exits, or
// the deadline passes.
func (s *Server) waitHealthy(timeout time.Duration, exited <-chan struct{}) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := hc.Get(s.Endpoint + "/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd exited before it was healthy")
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd not healthy after %v: %v", timeout, err)
		}
	}
}

// freeAddr is a loopback host:port nothing listens on now.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
