package main

import (
	"net"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A new session while WhatsApp cannot be reached: real whatsmeow clients
// dialing a closed port. The session retries with the backoff and shows
// the dial error; it does not ask for a QR scan it cannot offer.
func TestNewSessionWhileWhatsAppIsUnreachable(t *testing.T) {
	// A fake's CA, so that the client trusts what it would reach; nothing
	// listens where it dials.
	cfg := e2e.Config(t.TempDir(), e2e.NewFake(t, fakeserver.Options{}))
	addr := closedAddr(t)
	cfg.FakeServerAddr, cfg.FakeControlURL = addr, "http://"+addr
	svc := e2e.Start(t, cfg)
	if code, st := svc.Call("POST", "/api/whatsapp/session/early", ""); code != 202 {
		t.Fatalf("create: %d %v", code, st)
	}
	st := svc.WaitState("early", "reconnecting", e2e.Wait)
	if e2e.ErrCode(st) != "dial_failed" || !strings.Contains(st.Error.Message, "refused") || st.UserAction != "wait" || st.NextRetryAt == nil {
		t.Errorf("a new session with WhatsApp unreachable: %v", st)
	}
	eventuallyOK(t, func() bool { r := svc.Status("early").Reconnects; return r >= 2 })
	if st := svc.Status("early"); st.State == "needs_pairing" {
		t.Errorf("gave up: %v", st)
	}
}
