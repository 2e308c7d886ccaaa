package app_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// A failure half-way through New (the API's port is taken) tears down what
// was made: the sessions directory's lock is released, so that a second
// New on the same directory starts, and no goroutine is left behind.
func TestNewTearsDownWhatItMadeOnAnError(t *testing.T) {
	defer goleak.VerifyNone(t,
		goleak.IgnoreAnyFunction("github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver.(*Server).acceptLoop"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := e2e.Config(t.TempDir(), nil)
	cfg.HTTPAddr = taken.Addr().String()
	if _, err := app.New(cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("New on a taken port: %v", err)
	}
	cfg.HTTPAddr = "127.0.0.1:0"
	a, err := app.New(cfg, io.Discard)
	if err != nil {
		t.Fatalf("New after a failed New on the same directory: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}

// -healthcheck answers for a running service and fails for a port nobody
// serves or a malformed HTTP_ADDR.
func TestCheckHealth(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), nil))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(svc.Base, "http://"))
	if err := app.CheckHealth(":" + port); err != nil {
		t.Errorf("CheckHealth of a running service: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if err := app.CheckHealth(closed); err == nil {
		t.Error("CheckHealth of a closed port succeeded")
	}
	if err := app.CheckHealth("no-port"); err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Errorf("CheckHealth of a malformed address: %v", err)
	}
}

// SESSIONS_DIR removed while the service runs, then made again (a backup
// restored into it): the service's lock stays on the old file, so a second
// service takes the new directory, and both would log in with the same
// keys. Run notices within a few seconds and returns ErrDirReplaced
// without closing (main then exits).
func TestRunEndsWhenTheSessionsDirectoryIsReplaced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessions")
	a, err := app.New(e2e.Config(dir, nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	ran := make(chan error, 1)
	go func() { ran <- a.Run(context.Background()) }()

	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	second, err := app.New(e2e.Config(dir, nil), io.Discard)
	if err != nil {
		t.Fatalf("a second service on the new directory: %v", err)
	}
	t.Cleanup(func() { second.Close() })

	select {
	case err := <-ran:
		if !errors.Is(err, store.ErrDirReplaced) {
			t.Fatalf("Run after SESSIONS_DIR was replaced = %v, want ErrDirReplaced", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run went on for 15 s after SESSIONS_DIR was replaced")
	}
}
