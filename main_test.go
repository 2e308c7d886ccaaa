package main

import (
	"bytes"
	"context"
	"errors"
	"image/png"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// eventuallyOK polls cond for up to 10 s.
func eventuallyOK(t *testing.T, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, 10*time.Second, "a condition", func() (bool, string) { return cond(), "" })
}

// connections is the fake server's live connection count for the
// session's device.
func connections(t *testing.T, f *e2e.Fake, st sessions.Status) int {
	t.Helper()
	n, err := f.Connections(context.Background(), e2e.User(st))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPairRestartAndComeBackWithoutPairing(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	dir := t.TempDir()
	svc := e2e.Start(t, e2e.Config(dir, f))

	code, st := svc.Call("POST", "/api/whatsapp/session/alice", "")
	if code != 202 || st["senderId"] != "alice" {
		t.Fatalf("create: %d %v", code, st)
	}
	svc.WaitState("alice", "pairing", e2e.Wait)
	qr := svc.WaitQR("alice")
	if qr.Code == "" || qr.ExpiresAt.IsZero() {
		t.Fatalf("qr: %v", qr)
	}
	code, body, hdr := svc.Raw("GET", "/api/whatsapp/session/alice/qr?format=png", "", nil)
	if code != 200 || hdr.Get("Content-Type") != "image/png" {
		t.Fatalf("png: %d %s", code, hdr.Get("Content-Type"))
	}
	if img, err := png.Decode(bytes.NewReader(body)); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("not a scannable PNG: %v", err)
	}
	if code, body, _ := svc.Raw("GET", "/api/whatsapp/session/alice/qr", "", http.Header{"Accept": {"image/png"}}); code != 200 || !bytes.HasPrefix(body, []byte("\x89PNG")) {
		t.Fatalf("Accept: image/png gave %d", code)
	}
	if code, out := svc.Call("POST", "/api/whatsapp/test/session/alice/scan", ""); code != 200 {
		t.Fatalf("scan: %d %v", code, out)
	}
	paired := svc.WaitState("alice", "connected", e2e.Wait)
	jid := e2e.JID(paired)
	if !strings.HasSuffix(jid, "@s.whatsapp.net") || !paired.LoggedIn || paired.UserAction != "none" {
		t.Fatalf("after scan: %v", e2e.Show(paired))
	}
	if n := connections(t, f, paired); n != 1 {
		t.Fatalf("%d live connections for one session", n)
	}
	// The phone sends the account's name after pairing (app state).
	eventuallyOK(t, func() bool { return svc.Status("alice").PushName != nil })
	// The phone lists the device under the configured name.
	user, _, _ := strings.Cut(jid, ":")
	if name := f.DeviceName(user); name != "e2e" {
		t.Errorf("the phone lists the device as %q, want DEVICE_NAME %q", name, "e2e")
	}
	// The QR code never reaches the logs.
	if strings.Contains(svc.Logs.String(), qr.Code) {
		t.Error("the QR code was logged")
	}
	svc.Stop()
	eventuallyOK(t, func() bool { return connections(t, f, paired) == 0 }) // the server notices the close

	// A fresh process on the same directory restores it with no pairing.
	svc = e2e.Start(t, e2e.Config(dir, f))
	restored := svc.WaitState("alice", "connected", e2e.Wait)
	if e2e.JID(restored) != jid {
		t.Errorf("jid changed across restart: %v != %s", e2e.JID(restored), jid)
	}
	if restored.PushName == nil {
		t.Error("the push name stored at pairing is not shown after the restart")
	}
	if n := connections(t, f, restored); n != 1 {
		t.Errorf("%d live connections after restore", n)
	}
	// Both connections (pairing, restore) came through TLS, as production's.
	if fst, err := f.Stats(context.Background()); err != nil || fst.TLSHandshakes < 2 {
		t.Errorf("fake server stats %+v, %v: want a TLS handshake per connection", fst, err)
	}
	logs := svc.Logs.String()
	for _, line := range []string{
		"🔄 Found 1 stored session(s), restoring...",
		"🔄 Restoring session for alice from storage...",
		"✅ WhatsApp session alice restored and ready!",
	} {
		if !strings.Contains(logs, line) {
			t.Errorf("log line %q missing", line)
		}
	}
	code, fleet := svc.Call("GET", "/api/whatsapp/sessions/status", "")
	restore, _ := fleet["restore"].(map[string]any)
	if code != 200 || restore["restored"] != 1.0 || restore["found"] != 1.0 {
		t.Errorf("fleet: %d %v", code, fleet)
	}
}

// The service trusts only the CA in FAKE_WA_CA_FILE: against a server whose
// certificate another CA issued, no session gets past TLS.
func TestTestModeTrustsOnlyTheFakesCA(t *testing.T) {
	f, other := e2e.NewFake(t, fakeserver.Options{}), e2e.NewFake(t, fakeserver.Options{})
	cfg := e2e.Config(t.TempDir(), f)
	cfg.FakeCAFile = other.CAFile
	svc := e2e.Start(t, cfg)
	if code, st := svc.Call("POST", "/api/whatsapp/session/alice", ""); code != 202 {
		t.Fatalf("create: %d %v", code, st)
	}
	eventuallyOK(t, func() bool { return strings.Contains(svc.Logs.String(), "certificate signed by unknown authority") })
	if st, err := f.Stats(context.Background()); err != nil || st.TLSHandshakes != 0 || st.PendingPairings != 0 {
		t.Errorf("fake server stats %+v, %v: want no completed TLS handshake", st, err)
	}

	cfg.SessionsDir, cfg.FakeCAFile = t.TempDir(), filepath.Join(t.TempDir(), "missing.pem")
	if err := app.Run(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "FAKE_WA_CA_FILE") {
		t.Errorf("run with a missing CA file = %v, want an error naming FAKE_WA_CA_FILE", err)
	}
}

func TestSecondProcessOnTheSameDirectoryRefuses(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	dir := t.TempDir()
	e2e.Start(t, e2e.Config(dir, f))
	cfg := e2e.Config(dir, f)
	err := app.Run(context.Background(), cfg, io.Discard)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second run = %v, want ErrLocked", err)
	}
}

func TestWhatsAppEndingALoginAndOtherFailures(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	svc := e2e.Start(t, e2e.Config(t.TempDir(), f))
	for _, id := range []string{"unlinked", "replaced", "dropped", "banned", "outdated", "panicky", "bystander"} {
		svc.Pair(id)
	}
	bystander := svc.Status("bystander")
	act := func(id, action, body string) {
		t.Helper()
		if code, out := svc.Call("POST", "/api/whatsapp/test/session/"+id+"/"+action, body); code != 200 {
			t.Fatalf("%s %s: %d %v", action, id, code, out)
		}
	}

	act("unlinked", "unlink", "")
	st := svc.WaitState("unlinked", "needs_pairing", e2e.Wait)
	if e2e.ErrCode(st) != "logged_out" || st.UserAction != "scan_qr" {
		t.Errorf("unlinked: %v", st)
	}

	act("replaced", "replace", "")
	st = svc.WaitState("replaced", "conflict", e2e.Wait)
	if st.UserAction != "restore" {
		t.Errorf("replaced: %v", st)
	}

	act("dropped", "drop", "")
	eventuallyOK(t, func() bool { s := svc.Status("dropped"); return s.Reconnects == 1 && s.State == "connected" })

	act("banned", "ban", `{"seconds":1}`)
	st = svc.WaitState("banned", "banned", e2e.Wait)
	if st.NextRetryAt == nil || st.UserAction != "wait" {
		t.Errorf("banned: %v", st)
	}
	svc.WaitState("banned", "connected", e2e.Wait)

	act("outdated", "outdated", "")
	st = svc.WaitState("outdated", "failed", e2e.Wait)
	if e2e.ErrCode(st) != "client_outdated" {
		t.Errorf("outdated: %v", st)
	}

	act("panicky", "panic", "")
	eventuallyOK(t, func() bool { s := svc.Status("panicky"); return s.Restarts == 1 && s.State == "connected" })

	// Conflict and failed wait for the operator; a restore brings them back.
	if code, _ := svc.Call("POST", "/api/whatsapp/sessions/restore", `{"senderIds":["replaced","outdated"]}`); code != 202 {
		t.Fatalf("restore: %d", code)
	}
	svc.WaitState("replaced", "connected", e2e.Wait)
	svc.WaitState("outdated", "connected", e2e.Wait)
	// The unlinked one stays unpaired: nothing to restore.
	if st := svc.Status("unlinked"); st.State != "needs_pairing" {
		t.Errorf("unlinked after restore: %v", st)
	}

	after := svc.Status("bystander")
	if after.Since != bystander.Since || after.State != "connected" || after.Reconnects != 0 {
		t.Errorf("bystander changed: %v -> %v", bystander, after)
	}
	if n := connections(t, f, after); n != 1 {
		t.Errorf("bystander has %d connections", n)
	}
	for _, id := range []string{"replaced", "dropped", "banned", "outdated", "panicky"} {
		if n := connections(t, f, svc.Status(id)); n != 1 {
			t.Errorf("%s has %d live connections, want 1", id, n)
		}
	}
}

func TestLifecycleThroughTheAPI(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	dir := t.TempDir()
	svc := e2e.Start(t, e2e.Config(dir, f))
	st := svc.Pair("bob")

	if code, again := svc.Call("POST", "/api/whatsapp/session/bob", ""); code != 200 || again["state"] != "connected" {
		t.Errorf("create of a running session: %d %v", code, again)
	}
	for _, path := range []string{"/qr", "/pair-phone"} {
		method, body := "GET", ""
		if path == "/pair-phone" {
			method, body = "POST", `{"phone":"+15551234567"}`
		}
		if code, out := svc.Call(method, "/api/whatsapp/session/bob"+path, body); code != 409 {
			t.Errorf("%s on a connected session: %d %v", path, code, out)
		}
	}

	if code, out := svc.Call("POST", "/api/whatsapp/session/bob/stop", ""); code != 200 || out["state"] != "stopped" {
		t.Fatalf("stop: %d %v", code, out)
	}
	eventuallyOK(t, func() bool { return connections(t, f, st) == 0 })
	// Stopped is remembered across a restart.
	svc.Stop()
	svc = e2e.Start(t, e2e.Config(dir, f))
	svc.WaitState("bob", "stopped", e2e.Wait)
	if code, out := svc.Call("POST", "/api/whatsapp/sessions/restore", ""); code != 202 {
		t.Fatalf("restore: %d %v", code, out)
	}
	if svc.Status("bob").State != "stopped" {
		t.Error("a plain restore started a stopped session")
	}
	if code, out := svc.Call("POST", "/api/whatsapp/session/bob", ""); code != 202 {
		t.Fatalf("start: %d %v", code, out)
	}
	st = svc.WaitState("bob", "connected", e2e.Wait)

	if code, out := svc.Call("POST", "/api/whatsapp/session/bob/logout", ""); code != 200 || out["state"] != "needs_pairing" {
		t.Fatalf("logout: %d %v", code, out)
	}
	eventuallyOK(t, func() bool { return connections(t, f, st) == 0 })
	if code, out := svc.Call("POST", "/api/whatsapp/session/bob/logout", ""); code != 409 {
		t.Errorf("second logout: %d %v", code, out)
	}
	// A new pairing after logout works.
	svc.Call("POST", "/api/whatsapp/session/bob", "")
	svc.WaitState("bob", "pairing", e2e.Wait)
	eventuallyOK(t, func() bool { code, _ := svc.Call("GET", "/api/whatsapp/session/bob/qr", ""); return code == 200 })
	svc.Call("POST", "/api/whatsapp/test/session/bob/scan", "")
	svc.WaitState("bob", "connected", e2e.Wait)

	if code, out := svc.Call("DELETE", "/api/whatsapp/session/bob", ""); code != 200 {
		t.Fatalf("delete: %d %v", code, out)
	}
	if code, _ := svc.Call("GET", "/api/whatsapp/session/bob/status", ""); code != 404 {
		t.Errorf("status after delete: %d", code)
	}
	if code, _, _ := svc.Raw("GET", "/metrics", "", nil); code != 200 {
		t.Errorf("metrics: %d", code)
	}
	_, metricsBody, _ := svc.Raw("GET", "/metrics", "", nil)
	if bytes.Contains(metricsBody, []byte(`session="bob"`)) {
		t.Error("deleted session's series are still exported")
	}
}

func TestPairingByPhoneCode(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	svc := e2e.Start(t, e2e.Config(t.TempDir(), f))
	svc.Call("POST", "/api/whatsapp/session/carol", "")
	svc.WaitState("carol", "pairing", e2e.Wait)
	eventuallyOK(t, func() bool { code, _ := svc.Call("GET", "/api/whatsapp/session/carol/qr", ""); return code == 200 })
	code, out := svc.Call("POST", "/api/whatsapp/session/carol/pair-phone", `{"phone":"+1 555 123 4567"}`)
	if code != 200 {
		t.Fatalf("pair-phone: %d %v", code, out)
	}
	pc, _ := out["code"].(string)
	if !regexp.MustCompile(`^[A-Z0-9]{4}-[A-Z0-9]{4}$`).MatchString(pc) {
		t.Fatalf("pairing code %q", pc)
	}
	if strings.Contains(svc.Logs.String(), pc) || strings.Contains(svc.Logs.String(), "5551234567") {
		t.Error("the pairing code or the phone number was logged")
	}
	if code, out := svc.Call("POST", "/api/whatsapp/test/session/carol/scan", ""); code != 200 {
		t.Fatalf("enter code: %d %v", code, out)
	}
	st := svc.WaitState("carol", "connected", e2e.Wait)
	if jid := e2e.JID(st); !strings.HasPrefix(jid, "15551234567") {
		t.Errorf("jid %v", st.JID)
	}
}

func TestConfigRefusesAWeakKey(t *testing.T) {
	cfg := e2e.Config(t.TempDir(), e2e.NewFake(t, fakeserver.Options{}))
	cfg.APIKey = "short"
	err := app.Run(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "API_KEY is too short") {
		t.Fatalf("run with a weak key = %v", err)
	}
}

func TestQRCodesRunningOutLeaveNeedsPairingAndCreateStartsOver(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	svc := e2e.Start(t, e2e.Config(t.TempDir(), f))
	svc.Call("POST", "/api/whatsapp/session/dora", "")
	svc.WaitState("dora", "pairing", e2e.Wait)
	qr := svc.WaitQR("dora")
	// The phone never scans: the server closes the pairing socket, as
	// WhatsApp does once the codes have run out.
	if err := f.ExpireQR(context.Background(), qr.Code); err != nil {
		t.Fatal(err)
	}
	st := svc.WaitState("dora", "needs_pairing", e2e.Wait)
	if e2e.ErrCode(st) != "qr_timeout" || st.UserAction != "scan_qr" {
		t.Errorf("after the codes ran out: %v", st)
	}
	if code, out := svc.Call("GET", "/api/whatsapp/session/dora/qr", ""); code != 409 {
		t.Errorf("qr after expiry: %d %v", code, out)
	}
	if code, _ := svc.Call("POST", "/api/whatsapp/session/dora", ""); code != 202 {
		t.Fatalf("create again: %d", code)
	}
	svc.WaitState("dora", "pairing", e2e.Wait)
	eventuallyOK(t, func() bool { code, _ := svc.Call("GET", "/api/whatsapp/session/dora/qr", ""); return code == 200 })
	svc.Call("POST", "/api/whatsapp/test/session/dora/scan", "")
	svc.WaitState("dora", "connected", e2e.Wait)
}
