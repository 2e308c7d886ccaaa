package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestRunServesControlAPIAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	var logs syncBuffer
	state := filepath.Join(t.TempDir(), "state.json")
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-control", "127.0.0.1:0", "-state", state}, &logs, func(a addrs) { ready <- a })
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
	// What the phone unlinks is kept in the -state file.
	if err := remote.Unlink(reqCtx, "15550000099", 2); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	if data, err := os.ReadFile(state); err != nil || !strings.Contains(string(data), `"15550000099:2"`) {
		t.Errorf("state file after an unlink: %q, %v", data, err)
	}

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
	var logs syncBuffer
	if err := run(context.Background(), []string{"-nope"}, &logs, nil); err == nil {
		t.Fatal("unknown flag accepted")
	}
}
