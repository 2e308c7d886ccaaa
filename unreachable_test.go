package main

import (
	"net"
	"strings"
	"testing"
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
	cfg := testConfig(t.TempDir(), newFake(t))
	addr := closedAddr(t)
	cfg.FakeServerAddr, cfg.FakeControlURL = addr, "http://"+addr
	svc := start(t, cfg)
	if code, st := svc.call("POST", "/api/whatsapp/session/early", ""); code != 202 {
		t.Fatalf("create: %d %v", code, st)
	}
	st := svc.waitState("early", "reconnecting")
	e, _ := st["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if e["code"] != "dial_failed" || !strings.Contains(msg, "refused") || st["userAction"] != "wait" || st["nextRetryAt"] == nil {
		t.Errorf("a new session with WhatsApp unreachable: %v", st)
	}
	eventuallyOK(t, func() bool { r, _ := svc.status("early")["reconnects"].(float64); return r >= 2 })
	if st := svc.status("early"); st["state"] == "needs_pairing" {
		t.Errorf("gave up: %v", st)
	}
}
