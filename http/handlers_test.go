package http_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

const apiKey = "handlers-test-key-0123456789abcdef"

// offline is an HTTP client for whatsmeow that reaches nothing: tests must
// never dial WhatsApp.
func offline() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1:1")
		},
	}}
}

// server is the real API over a real manager and a real sessions
// directory whose clients cannot reach any network.
func server(t *testing.T) (*httptest.Server, *store.Dir) {
	t.Helper()
	dir, err := store.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := actors.NewManager(actors.Options{
		Registry:           dir,
		Opener:             whatsapp.NewStoreOpener(dir, whatsapp.Options{HTTPClient: offline(), Sink: whatsapp.DiscardEvents{}}),
		Backoff:            actors.Backoff{Min: time.Second, Max: time.Minute, Reset: time.Minute},
		RestoreConcurrency: 4, ConnectRate: 100, ConnectBurst: 10,
		RestartBudget: 3, RestartWindow: time.Minute, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(api.Options{
		Sessions: mgr, Messenger: mgr, APIKey: apiKey, Test: stubDriver{},
		Metrics: http.NotFoundHandler(), OpenAPI: api.OpenAPI(),
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = mgr.Shutdown(ctx)
		dir.Close()
	})
	return srv, dir
}

func do(t *testing.T, srv *httptest.Server, method, path, auth, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp, out
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// route is one request: a method, a path and a body.
type route struct{ method, path, body string }

// sessionRoutes are the routes on one session, each with a harmless body:
// a path is "/api/whatsapp/session/" + the id + the route's path.
var sessionRoutes = []route{
	{"GET", "/status", ""},
	{"POST", "", ""},
	{"DELETE", "", ""},
	{"GET", "/qr", ""},
	{"POST", "/pair-phone", `{"phone":"+15551234567"}`},
	{"POST", "/stop", ""},
	{"POST", "/logout", ""},
	{"POST", "/messages", `{"to":"+15551234567","text":"hi"}`},
	{"POST", "/messages/3EB0AB/read", `{"chat":"+15551234567"}`},
}

// onSession is each of sessionRoutes on session id.
func onSession(id string) []route {
	var out []route
	for _, r := range sessionRoutes {
		out = append(out, route{r.method, "/api/whatsapp/session/" + id + r.path, r.body})
	}
	return out
}

// routes is every /api route with a harmless request.
var routes = append(append([]route{
	{"POST", "/api/whatsapp/sessions/restore", ""},
	{"GET", "/api/whatsapp/sessions/status", ""},
}, onSession("alice")...), route{"POST", "/api/whatsapp/test/session/alice/drop", ""})

// needSession are the requests that need session id to exist.
func needSession(id string) []route {
	p := "/api/whatsapp/session/" + id
	return []route{
		{"GET", p + "/status", ""},
		{"GET", p + "/qr", ""},
		{"POST", p + "/stop", ""},
		{"POST", p + "/logout", ""},
		{"DELETE", p, ""},
	}
}

func TestEveryAPIRouteNeedsTheKey(t *testing.T) {
	srv, _ := server(t)
	for _, r := range routes {
		for _, tc := range []struct {
			name, auth string
			want       int
		}{
			{"no header", "", 401},
			{"basic", "Basic " + apiKey, 401},
			{"bearer without key", "Bearer ", 401},
			{"wrong key", "Bearer " + strings.Repeat("x", len(apiKey)), 401},
			{"key prefix", "Bearer " + apiKey[:len(apiKey)-1], 401},
			{"key in the scheme's place", apiKey, 401},
		} {
			t.Run(r.method+" "+r.path+" "+tc.name, func(t *testing.T) {
				resp, body := do(t, srv, r.method, r.path, tc.auth, r.body)
				if resp.StatusCode != tc.want || errorCode(body) != "unauthorized" {
					t.Errorf("status %d, body %v; want %d unauthorized", resp.StatusCode, body, tc.want)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate challenge")
				}
			})
		}
		// The scheme is case-insensitive (RFC 7235).
		for _, scheme := range []string{"Bearer ", "bearer ", "BEARER ", "Bearer   "} {
			t.Run(r.method+" "+r.path+" right key after "+strings.TrimSpace(scheme), func(t *testing.T) {
				resp, body := do(t, srv, r.method, r.path, scheme+apiKey, r.body)
				if resp.StatusCode == 401 || resp.StatusCode >= 500 {
					t.Errorf("with the key: status %d, body %v", resp.StatusCode, body)
				}
			})
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json"} {
		resp, _ := do(t, srv, "GET", path, "", "")
		if resp.StatusCode != 200 {
			t.Errorf("%s without a key: %d", path, resp.StatusCode)
		}
	}
}

func TestBadSenderIDsAreRejectedAndTouchNothing(t *testing.T) {
	srv, dir := server(t)
	before := listDir(t, dir.Root())
	bad := []string{"..", "a%2Fb", "%2E%2E", "a%20b", "", strings.Repeat("x", 65), "a.b", "%00"}
	for _, id := range bad {
		for _, r := range onSession(id) {
			t.Run(r.method+" "+r.path, func(t *testing.T) {
				resp, body := do(t, srv, r.method, r.path, "Bearer "+apiKey, r.body)
				if resp.StatusCode != 400 || errorCode(body) != "invalid_id" {
					t.Errorf("status %d, body %v; want 400 invalid_id", resp.StatusCode, body)
				}
			})
		}
	}
	resp, body := do(t, srv, "POST", "/api/whatsapp/sessions/restore", "Bearer "+apiKey, `{"senderIds":["ok","../../etc"]}`)
	if resp.StatusCode != 400 || errorCode(body) != "invalid_id" {
		t.Errorf("restore with a bad id: %d %v", resp.StatusCode, body)
	}
	if after := listDir(t, dir.Root()); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("files changed: before %v, after %v", before, after)
	}
}

func listDir(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestBadBodies(t *testing.T) {
	srv, _ := server(t)
	key := "Bearer " + apiKey
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"malformed JSON", "/api/whatsapp/sessions/restore", `{"senderIds":`, 400, "bad_request"},
		{"unknown field", "/api/whatsapp/sessions/restore", `{"ids":["a"]}`, 400, "bad_request"},
		{"two values", "/api/whatsapp/sessions/restore", `{} {}`, 400, "bad_request"},
		{"empty list", "/api/whatsapp/sessions/restore", `{"senderIds":[]}`, 400, "bad_request"},
		{"too large", "/api/whatsapp/sessions/restore", `{"senderIds":["` + strings.Repeat("a", 70<<10) + `"]}`, 413, "body_too_large"},
		{"unknown session named", "/api/whatsapp/sessions/restore", `{"senderIds":["ghost"]}`, 404, "not_found"},
		{"phone missing", "/api/whatsapp/session/alice/pair-phone", `{}`, 400, "bad_request"},
		{"phone local", "/api/whatsapp/session/alice/pair-phone", `{"phone":"0612345678"}`, 400, "bad_request"},
		{"phone letters", "/api/whatsapp/session/alice/pair-phone", `{"phone":"+1555CALLME"}`, 400, "bad_request"},
		{"phone too long", "/api/whatsapp/session/alice/pair-phone", `{"phone":"+1234567890123456"}`, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv, "POST", tc.path, key, tc.body)
			if resp.StatusCode != tc.status || errorCode(body) != tc.code {
				t.Errorf("status %d, body %v; want %d %s", resp.StatusCode, body, tc.status, tc.code)
			}
		})
	}
}

func TestRestoreAnswersWithTheSourceDocumentsTexts(t *testing.T) {
	srv, _ := server(t)
	resp, body := do(t, srv, "POST", "/api/whatsapp/sessions/restore", "Bearer "+apiKey, "")
	if resp.StatusCode != 202 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if body["message"] != "Session restoration initiated successfully" ||
		body["note"] != "Sessions are being restored in the background. Check individual session statuses for progress." {
		t.Errorf("body %v", body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content type %q", ct)
	}
}

func TestUnknownSessionIs404AndWrongStateIs409(t *testing.T) {
	srv, _ := server(t)
	key := "Bearer " + apiKey
	for _, r := range needSession("ghost") {
		resp, body := do(t, srv, r.method, r.path, key, "")
		if resp.StatusCode != 404 || errorCode(body) != "not_found" {
			t.Errorf("%s %s: %d %v", r.method, r.path, resp.StatusCode, body)
		}
	}
	// A stopped session is in the wrong state for a QR code or a logout.
	if resp, _ := do(t, srv, "POST", "/api/whatsapp/session/carol", key, ""); resp.StatusCode != 202 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	if resp, body := do(t, srv, "POST", "/api/whatsapp/session/carol/stop", key, ""); resp.StatusCode != 200 || body["state"] != "stopped" {
		t.Fatalf("stop: %d %v", resp.StatusCode, body)
	}
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/whatsapp/session/carol/qr"},
		{"POST", "/api/whatsapp/session/carol/stop"},
		{"POST", "/api/whatsapp/session/carol/logout"},
	} {
		resp, body := do(t, srv, r.method, r.path, key, "")
		if resp.StatusCode != 409 || errorCode(body) != "wrong_state" {
			t.Errorf("%s %s: %d %v", r.method, r.path, resp.StatusCode, body)
		}
	}
}
