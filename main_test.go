package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

const testKey = "e2e-test-key-0123456789abcdef"

// logBuffer collects the service's log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fake is a fake WhatsApp server outside the service, so that a test can
// restart the service against the same "WhatsApp" and count connections.
type fake struct {
	*fakeserver.Server
	controlURL string
	caFile     string // its CA certificate, as cmd/fakewa -ca-out writes it
}

func newFake(t *testing.T) *fake {
	t.Helper()
	s, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctl := httptest.NewServer(s.ControlHandler())
	t.Cleanup(func() {
		ctl.Close()
		s.Close()
	})
	caFile := filepath.Join(t.TempDir(), "fakewa-ca.pem")
	if err := os.WriteFile(caFile, s.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fake{Server: s, controlURL: ctl.URL, caFile: caFile}
}

// service is one run of the whole service.
type service struct {
	t      *testing.T
	base   string
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
}

// testConfig is the service's configuration for a test on dir, in test
// mode against f, or against its own in-process fake WhatsApp if f is nil.
func testConfig(dir string, f *fake) config.Config {
	cfg := config.Config{
		HTTPAddr: "127.0.0.1:0", SessionsDir: dir, APIKey: testKey, AutoRestore: true,
		RestoreConcurrency: 64, ConnectRate: 1000, ConnectBurst: 100, StoreIdleTimeout: 2 * time.Second,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, BackoffReset: time.Minute,
		RestartBudget: 3, RestartWindow: time.Minute,
		RequestTimeout: 10 * time.Second, ShutdownTimeout: 10 * time.Second,
		DeviceName: "e2e", LogLevel: "info", LogFormat: "json",
		TestMode: true,
	}
	if f != nil {
		cfg.FakeServerAddr, cfg.FakeControlURL, cfg.FakeCAFile = f.Addr(), f.controlURL, f.caFile
	}
	return cfg
}

var listenLine = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)

// start runs the service and waits until it listens.
func start(t *testing.T, cfg config.Config) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{t: t, logs: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, cfg, s.logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listenLine.FindStringSubmatch(s.logs.String()); m != nil {
			s.base = "http://" + m[1]
			break
		}
		select {
		case err := <-s.done:
			t.Fatalf("run ended before listening: %v\n%s", err, s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not listen in time:\n%s", s.logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// stop shuts the service down and checks it exits cleanly.
func (s *service) stop() {
	s.t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			s.t.Errorf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		s.t.Errorf("service did not stop in time")
	}
}

func (s *service) call(method, path, body string) (int, map[string]any) {
	s.t.Helper()
	code, raw, _ := s.raw(method, path, body, nil)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			s.t.Fatalf("%s %s: not JSON: %q", method, path, raw)
		}
	}
	return code, out
}

func (s *service) raw(method, path, body string, header http.Header) (int, []byte, http.Header) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func (s *service) status(id string) map[string]any {
	s.t.Helper()
	code, st := s.call("GET", "/api/whatsapp/session/"+id+"/status", "")
	if code != 200 {
		s.t.Fatalf("status of %s: %d %v", id, code, st)
	}
	return st
}

// waitState polls a session's status until it is in state.
func (s *service) waitState(id, state string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, st := s.call("GET", "/api/whatsapp/session/"+id+"/status", "")
		if code == 200 && st["state"] == state {
			return st
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("session %s never reached %s; last %d %v\nlogs:\n%s", id, state, code, st, s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pair creates session id and completes its pairing as the phone would.
func (s *service) pair(id string) map[string]any {
	s.t.Helper()
	if code, st := s.call("POST", "/api/whatsapp/session/"+id, ""); code != 202 {
		s.t.Fatalf("create %s: %d %v", id, code, st)
	}
	s.waitState(id, "pairing")
	eventuallyOK(s.t, func() bool { code, _ := s.call("GET", "/api/whatsapp/session/"+id+"/qr", ""); return code == 200 })
	if code, out := s.call("POST", "/api/whatsapp/test/session/"+id+"/scan", ""); code != 200 {
		s.t.Fatalf("scan %s: %d %v", id, code, out)
	}
	return s.waitState(id, "connected")
}

func eventuallyOK(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connections is the fake server's live connection count for the
// session's device.
func connections(t *testing.T, f *fake, st map[string]any) int {
	t.Helper()
	jid, _ := st["jid"].(string)
	user, _, _ := strings.Cut(jid, "@")
	user, _, _ = strings.Cut(user, ":")
	n, err := f.Connections(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPairRestartAndComeBackWithoutPairing(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	svc := start(t, testConfig(dir, f))

	code, st := svc.call("POST", "/api/whatsapp/session/alice", "")
	if code != 202 || st["senderId"] != "alice" {
		t.Fatalf("create: %d %v", code, st)
	}
	svc.waitState("alice", "pairing")
	var qr map[string]any
	eventuallyOK(t, func() bool {
		var c int
		c, qr = svc.call("GET", "/api/whatsapp/session/alice/qr", "")
		return c == 200
	})
	if c, _ := qr["code"].(string); !strings.HasPrefix(c, "") || c == "" || qr["expiresAt"] == nil {
		t.Fatalf("qr: %v", qr)
	}
	code, body, hdr := svc.raw("GET", "/api/whatsapp/session/alice/qr?format=png", "", nil)
	if code != 200 || hdr.Get("Content-Type") != "image/png" {
		t.Fatalf("png: %d %s", code, hdr.Get("Content-Type"))
	}
	if img, err := png.Decode(bytes.NewReader(body)); err != nil || img.Bounds().Dx() < 100 {
		t.Fatalf("not a scannable PNG: %v", err)
	}
	if code, body, _ := svc.raw("GET", "/api/whatsapp/session/alice/qr", "", http.Header{"Accept": {"image/png"}}); code != 200 || !bytes.HasPrefix(body, []byte("\x89PNG")) {
		t.Fatalf("Accept: image/png gave %d", code)
	}
	if code, out := svc.call("POST", "/api/whatsapp/test/session/alice/scan", ""); code != 200 {
		t.Fatalf("scan: %d %v", code, out)
	}
	st = svc.waitState("alice", "connected")
	jid, _ := st["jid"].(string)
	if !strings.HasSuffix(jid, "@s.whatsapp.net") || st["loggedIn"] != true || st["userAction"] != "none" {
		t.Fatalf("after scan: %v", st)
	}
	if n := connections(t, f, st); n != 1 {
		t.Fatalf("%d live connections for one session", n)
	}
	// The phone sends the account's name after pairing (app state).
	eventuallyOK(t, func() bool { return svc.status("alice")["pushName"] != nil })
	// The phone lists the device under the configured name.
	user, _, _ := strings.Cut(jid, ":")
	if name := f.DeviceName(user); name != "e2e" {
		t.Errorf("the phone lists the device as %q, want DEVICE_NAME %q", name, "e2e")
	}
	// The QR code never reaches the logs.
	if strings.Contains(svc.logs.String(), qr["code"].(string)) {
		t.Error("the QR code was logged")
	}
	svc.stop()
	eventuallyOK(t, func() bool { return connections(t, f, st) == 0 }) // the server notices the close

	// A fresh process on the same directory restores it with no pairing.
	svc = start(t, testConfig(dir, f))
	st = svc.waitState("alice", "connected")
	if st["jid"] != jid {
		t.Errorf("jid changed across restart: %v != %s", st["jid"], jid)
	}
	if st["pushName"] == nil {
		t.Error("the push name stored at pairing is not shown after the restart")
	}
	if n := connections(t, f, st); n != 1 {
		t.Errorf("%d live connections after restore", n)
	}
	// Both connections (pairing, restore) came through TLS, as production's.
	if fst, err := f.Stats(context.Background()); err != nil || fst.TLSHandshakes < 2 {
		t.Errorf("fake server stats %+v, %v: want a TLS handshake per connection", fst, err)
	}
	logs := svc.logs.String()
	for _, line := range []string{
		"🔄 Found 1 stored session(s), restoring...",
		"🔄 Restoring session for alice from storage...",
		"✅ WhatsApp session alice restored and ready!",
	} {
		if !strings.Contains(logs, line) {
			t.Errorf("log line %q missing", line)
		}
	}
	code, fleet := svc.call("GET", "/api/whatsapp/sessions/status", "")
	restore, _ := fleet["restore"].(map[string]any)
	if code != 200 || restore["restored"] != 1.0 || restore["found"] != 1.0 {
		t.Errorf("fleet: %d %v", code, fleet)
	}
}

// The service trusts only the CA in FAKE_WA_CA_FILE: against a server whose
// certificate another CA issued, no session gets past TLS.
func TestTestModeTrustsOnlyTheFakesCA(t *testing.T) {
	f, other := newFake(t), newFake(t)
	cfg := testConfig(t.TempDir(), f)
	cfg.FakeCAFile = other.caFile
	svc := start(t, cfg)
	if code, st := svc.call("POST", "/api/whatsapp/session/alice", ""); code != 202 {
		t.Fatalf("create: %d %v", code, st)
	}
	eventuallyOK(t, func() bool { return strings.Contains(svc.logs.String(), "certificate signed by unknown authority") })
	if st, err := f.Stats(context.Background()); err != nil || st.TLSHandshakes != 0 || st.PendingPairings != 0 {
		t.Errorf("fake server stats %+v, %v: want no completed TLS handshake", st, err)
	}

	cfg.SessionsDir, cfg.FakeCAFile = t.TempDir(), filepath.Join(t.TempDir(), "missing.pem")
	if err := run(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "FAKE_WA_CA_FILE") {
		t.Errorf("run with a missing CA file = %v, want an error naming FAKE_WA_CA_FILE", err)
	}
}

func TestSecondProcessOnTheSameDirectoryRefuses(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	start(t, testConfig(dir, f))
	cfg := testConfig(dir, f)
	err := run(context.Background(), cfg, io.Discard)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second run = %v, want ErrLocked", err)
	}
}

func TestWhatsAppEndingALoginAndOtherFailures(t *testing.T) {
	f := newFake(t)
	svc := start(t, testConfig(t.TempDir(), f))
	for _, id := range []string{"unlinked", "replaced", "dropped", "banned", "outdated", "panicky", "bystander"} {
		svc.pair(id)
	}
	bystander := svc.status("bystander")
	act := func(id, action, body string) {
		t.Helper()
		if code, out := svc.call("POST", "/api/whatsapp/test/session/"+id+"/"+action, body); code != 200 {
			t.Fatalf("%s %s: %d %v", action, id, code, out)
		}
	}

	act("unlinked", "unlink", "")
	st := svc.waitState("unlinked", "needs_pairing")
	if e, _ := st["error"].(map[string]any); e["code"] != "logged_out" || st["userAction"] != "scan_qr" {
		t.Errorf("unlinked: %v", st)
	}

	act("replaced", "replace", "")
	st = svc.waitState("replaced", "conflict")
	if st["userAction"] != "restore" {
		t.Errorf("replaced: %v", st)
	}

	act("dropped", "drop", "")
	eventuallyOK(t, func() bool { s := svc.status("dropped"); return s["reconnects"] == 1.0 && s["state"] == "connected" })

	act("banned", "ban", `{"seconds":1}`)
	st = svc.waitState("banned", "banned")
	if st["nextRetryAt"] == nil || st["userAction"] != "wait" {
		t.Errorf("banned: %v", st)
	}
	svc.waitState("banned", "connected")

	act("outdated", "outdated", "")
	st = svc.waitState("outdated", "failed")
	if e, _ := st["error"].(map[string]any); e["code"] != "client_outdated" {
		t.Errorf("outdated: %v", st)
	}

	act("panicky", "panic", "")
	eventuallyOK(t, func() bool { s := svc.status("panicky"); return s["restarts"] == 1.0 && s["state"] == "connected" })

	// Conflict and failed wait for the operator; a restore brings them back.
	if code, _ := svc.call("POST", "/api/whatsapp/sessions/restore", `{"senderIds":["replaced","outdated"]}`); code != 202 {
		t.Fatalf("restore: %d", code)
	}
	svc.waitState("replaced", "connected")
	svc.waitState("outdated", "connected")
	// The unlinked one stays unpaired: nothing to restore.
	if st := svc.status("unlinked"); st["state"] != "needs_pairing" {
		t.Errorf("unlinked after restore: %v", st)
	}

	after := svc.status("bystander")
	if after["since"] != bystander["since"] || after["state"] != "connected" || after["reconnects"] != 0.0 {
		t.Errorf("bystander changed: %v -> %v", bystander, after)
	}
	if n := connections(t, f, after); n != 1 {
		t.Errorf("bystander has %d connections", n)
	}
	for _, id := range []string{"replaced", "dropped", "banned", "outdated", "panicky"} {
		if n := connections(t, f, svc.status(id)); n != 1 {
			t.Errorf("%s has %d live connections, want 1", id, n)
		}
	}
}

func TestLifecycleThroughTheAPI(t *testing.T) {
	f := newFake(t)
	dir := t.TempDir()
	svc := start(t, testConfig(dir, f))
	st := svc.pair("bob")

	if code, again := svc.call("POST", "/api/whatsapp/session/bob", ""); code != 200 || again["state"] != "connected" {
		t.Errorf("create of a running session: %d %v", code, again)
	}
	for _, path := range []string{"/qr", "/pair-phone"} {
		method, body := "GET", ""
		if path == "/pair-phone" {
			method, body = "POST", `{"phone":"+15551234567"}`
		}
		if code, out := svc.call(method, "/api/whatsapp/session/bob"+path, body); code != 409 {
			t.Errorf("%s on a connected session: %d %v", path, code, out)
		}
	}

	if code, out := svc.call("POST", "/api/whatsapp/session/bob/stop", ""); code != 200 || out["state"] != "stopped" {
		t.Fatalf("stop: %d %v", code, out)
	}
	eventuallyOK(t, func() bool { return connections(t, f, st) == 0 })
	// Stopped is remembered across a restart.
	svc.stop()
	svc = start(t, testConfig(dir, f))
	svc.waitState("bob", "stopped")
	if code, out := svc.call("POST", "/api/whatsapp/sessions/restore", ""); code != 202 {
		t.Fatalf("restore: %d %v", code, out)
	}
	if svc.status("bob")["state"] != "stopped" {
		t.Error("a plain restore started a stopped session")
	}
	if code, out := svc.call("POST", "/api/whatsapp/session/bob", ""); code != 202 {
		t.Fatalf("start: %d %v", code, out)
	}
	st = svc.waitState("bob", "connected")

	if code, out := svc.call("POST", "/api/whatsapp/session/bob/logout", ""); code != 200 || out["state"] != "needs_pairing" {
		t.Fatalf("logout: %d %v", code, out)
	}
	eventuallyOK(t, func() bool { return connections(t, f, st) == 0 })
	if code, out := svc.call("POST", "/api/whatsapp/session/bob/logout", ""); code != 409 {
		t.Errorf("second logout: %d %v", code, out)
	}
	// A new pairing after logout works.
	svc.call("POST", "/api/whatsapp/session/bob", "")
	svc.waitState("bob", "pairing")
	eventuallyOK(t, func() bool { code, _ := svc.call("GET", "/api/whatsapp/session/bob/qr", ""); return code == 200 })
	svc.call("POST", "/api/whatsapp/test/session/bob/scan", "")
	svc.waitState("bob", "connected")

	if code, out := svc.call("DELETE", "/api/whatsapp/session/bob", ""); code != 200 {
		t.Fatalf("delete: %d %v", code, out)
	}
	if code, _ := svc.call("GET", "/api/whatsapp/session/bob/status", ""); code != 404 {
		t.Errorf("status after delete: %d", code)
	}
	if code, _, _ := svc.raw("GET", "/metrics", "", nil); code != 200 {
		t.Errorf("metrics: %d", code)
	}
	_, metricsBody, _ := svc.raw("GET", "/metrics", "", nil)
	if bytes.Contains(metricsBody, []byte(`session="bob"`)) {
		t.Error("deleted session's series are still exported")
	}
}

func TestPairingByPhoneCode(t *testing.T) {
	f := newFake(t)
	svc := start(t, testConfig(t.TempDir(), f))
	svc.call("POST", "/api/whatsapp/session/carol", "")
	svc.waitState("carol", "pairing")
	eventuallyOK(t, func() bool { code, _ := svc.call("GET", "/api/whatsapp/session/carol/qr", ""); return code == 200 })
	code, out := svc.call("POST", "/api/whatsapp/session/carol/pair-phone", `{"phone":"+1 555 123 4567"}`)
	if code != 200 {
		t.Fatalf("pair-phone: %d %v", code, out)
	}
	pc, _ := out["code"].(string)
	if !regexp.MustCompile(`^[A-Z0-9]{4}-[A-Z0-9]{4}$`).MatchString(pc) {
		t.Fatalf("pairing code %q", pc)
	}
	if strings.Contains(svc.logs.String(), pc) || strings.Contains(svc.logs.String(), "5551234567") {
		t.Error("the pairing code or the phone number was logged")
	}
	if code, out := svc.call("POST", "/api/whatsapp/test/session/carol/scan", ""); code != 200 {
		t.Fatalf("enter code: %d %v", code, out)
	}
	st := svc.waitState("carol", "connected")
	if jid, _ := st["jid"].(string); !strings.HasPrefix(jid, "15551234567") {
		t.Errorf("jid %v", st["jid"])
	}
}

func TestConfigRefusesAWeakKey(t *testing.T) {
	cfg := testConfig(t.TempDir(), newFake(t))
	cfg.APIKey = "short"
	err := run(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "API_KEY is too short") {
		t.Fatalf("run with a weak key = %v", err)
	}
}

func TestQRCodesRunningOutLeaveNeedsPairingAndCreateStartsOver(t *testing.T) {
	f := newFake(t)
	svc := start(t, testConfig(t.TempDir(), f))
	svc.call("POST", "/api/whatsapp/session/dora", "")
	svc.waitState("dora", "pairing")
	var qr map[string]any
	eventuallyOK(t, func() bool {
		var code int
		code, qr = svc.call("GET", "/api/whatsapp/session/dora/qr", "")
		return code == 200
	})
	// The phone never scans: the server closes the pairing socket, as
	// WhatsApp does once the codes have run out.
	if err := f.ExpireQR(context.Background(), qr["code"].(string)); err != nil {
		t.Fatal(err)
	}
	st := svc.waitState("dora", "needs_pairing")
	if e, _ := st["error"].(map[string]any); e["code"] != "qr_timeout" || st["userAction"] != "scan_qr" {
		t.Errorf("after the codes ran out: %v", st)
	}
	if code, out := svc.call("GET", "/api/whatsapp/session/dora/qr", ""); code != 409 {
		t.Errorf("qr after expiry: %d %v", code, out)
	}
	if code, _ := svc.call("POST", "/api/whatsapp/session/dora", ""); code != 202 {
		t.Fatalf("create again: %d", code)
	}
	svc.waitState("dora", "pairing")
	eventuallyOK(t, func() bool { code, _ := svc.call("GET", "/api/whatsapp/session/dora/qr", ""); return code == 200 })
	svc.call("POST", "/api/whatsapp/test/session/dora/scan", "")
	svc.waitState("dora", "connected")
}
