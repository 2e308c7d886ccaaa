package main

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRunServesControlAPIAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	var logs e2e.Logs
	state := filepath.Join(t.TempDir(), "state.json")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-state", state, "-ca-out", caFile}, &logs, func(a addrs) { ready <- a })
	}()

	var a addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("run ended early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("fakewa not ready")
	}
	reqCtx, reqCancel := context.WithTimeout(ctx, 10*time.Second)
	defer reqCancel()
	remote := fakeserver.NewRemote("http://"+a.Control, nil)
	st, err := remote.Stats(reqCtx)
	if err != nil || st != (fakeserver.Stats{}) {
		t.Fatalf("Stats = %+v, %v; want zero", st, err)
	}
	// The per-device connection record is served too (empty before any
	// login); the fake server's tests fill it.
	if rec, err := remote.ConnectionRecord(reqCtx); err != nil || len(rec) != 0 {
		t.Fatalf("ConnectionRecord = %+v, %v; want none", rec, err)
	}
	// What the phone unlinks is kept in the -state file.
	if err := remote.Unlink(reqCtx, "15550000099", 2); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	if data, err := os.ReadFile(state); err != nil || !strings.Contains(string(data), `"15550000099:2"`) {
		t.Errorf("state file after an unlink: %q, %v", data, err)
	}

	// The CA file is written before ready, and a client trusting it (and
	// only it) completes a TLS handshake for web.whatsapp.com.
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := fakeserver.CertPool(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := (&tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: fakeserver.ServerName}}).DialContext(reqCtx, "tcp", a.Server)
	if err != nil {
		t.Fatalf("TLS dial with the written CA: %v", err)
	}
	conn.Close()
	waitFor(t, func() bool {
		st, err := remote.Stats(reqCtx)
		return err == nil && st.TLSHandshakes == 1
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fakewa did not stop")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-nope"},
		{"-addr", "127.0.0.1:0", "-control", "127.0.0.1:0"}, // no -ca-out
		{"-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-ca-out", filepath.Join(dir, "missing", "ca.pem")},
	} {
		var logs e2e.Logs
		if err := run(context.Background(), args, &logs, nil); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, 10*time.Second, "a condition", func() (bool, string) { return cond(), "" })
}

// TestSeed: fakewa seed writes the sessions it names, each a store with a
// paired device, and refuses bad flags.
func TestSeed(t *testing.T) {
	dir := t.TempDir()
	var logs e2e.Logs
	if err := seed(context.Background(), []string{"-dir", dir, "-n", "2", "-prefix", "x", "-user-base", "1666"}, &logs); err != nil {
		t.Fatalf("seed: %v\n%s", err, logs.String())
	}
	for _, id := range []string{"x00000", "x00001"} {
		if fi, err := os.Stat(filepath.Join(dir, "session-"+id, "whatsapp.db")); err != nil || fi.Size() == 0 {
			t.Errorf("store of %s: %v", id, err)
		}
	}
	if got := seedUser("1666", 1); got != "16660000001" {
		t.Errorf("seedUser = %s", got)
	}
	for _, args := range [][]string{{"-n", "2"}, {"-dir", dir}, {"-dir", dir, "-n", "0"}, {"-nope"}} {
		if err := seed(context.Background(), args, &logs); err == nil {
			t.Errorf("seed(%q) succeeded", args)
		}
	}
}
