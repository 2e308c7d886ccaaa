// Package etcdtest starts a real etcd server for tests: Debian's etcd
// (package etcd-server, /usr/bin/etcd; ETCD_BIN overrides it), a temporary
// data directory, client and peer URLs on free loopback ports, plain or
// (StartTLS) https with client certificates. Without the binary a test
// skips, except in CI (CI set), where it fails: .ci/run installs it.
package etcdtest

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/testcerts"
)

// Server is one running single-member etcd, stopped when the test that
// started it ends.
type Server struct {
	// Endpoint is the client URL (http://127.0.0.1:port, or https:// from
	// StartTLS).
	Endpoint string
	// Dir holds its data directory and log.
	Dir string
	// client is what the health check dials with.
	client *http.Client
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
	return start(tb, nil)
}

// StartTLS is Start with etcd's client URL on https: its server
// certificate is signed by ca, and it asks every client for a certificate
// signed by ca too (--client-cert-auth), as a production etcd does.
func StartTLS(tb testing.TB, ca *testcerts.CA) *Server {
	tb.Helper()
	return start(tb, ca)
}

func start(tb testing.TB, ca *testcerts.CA) *Server {
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
	client := "http://" + freeaddr.For(tb)
	peer := "http://" + freeaddr.For(tb)
	args := []string{"--name", "test",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer,
		"--unsafe-no-fsync", "--log-level", "warn"}
	hc := &http.Client{Timeout: time.Second}
	if ca != nil {
		client = "https://" + freeaddr.For(tb)
		cert, key, err := ca.Node(filepath.Join(dir, "server"), "etcd")
		if err != nil {
			tb.Fatal(err)
		}
		args = append(args, "--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca.File, "--client-cert-auth")
		hc.Transport = &http.Transport{TLSClientConfig: clientTLS(tb, ca, cert, key)}
	}
	args = append(args, "--listen-client-urls", client, "--advertise-client-urls", client)
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
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
	s := &Server{Endpoint: client, Dir: dir, client: hc}
	tb.Cleanup(hc.CloseIdleConnections)
	if err := s.waitHealthy(30*time.Second, exited); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		tb.Fatalf("etcdtest: %v\n%s", err, log)
	}
	return s
}

// waitHealthy polls /health until etcd says it is healthy, it exits, or
// the deadline passes.
func (s *Server) waitHealthy(timeout time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := s.client.Get(s.Endpoint + "/health")
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

// clientTLS trusts ca and presents the certificate in certFile (its
// server certificate serves for client use too).
func clientTLS(tb testing.TB, ca *testcerts.CA, certFile, keyFile string) *tls.Config {
	tb.Helper()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}
