package app_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
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
