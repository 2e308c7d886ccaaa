package http_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
)

// rawDo sends a request with exactly the headers given and returns the
// answer with its raw body.
func rawDo(t *testing.T, srv *httptest.Server, method, path string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func withKey(h http.Header) http.Header {
	out := http.Header{"Authorization": {"Bearer " + apiKey}}
	for k, v := range h {
		out[k] = v
	}
	return out
}

func TestBodiesMustBeSentAsJSON(t *testing.T) {
	srv, _ := server(t)
	const path = "/api/whatsapp/sessions/restore"
	for _, tc := range []struct {
		name, contentType, body string
		want                    int
	}{
		{"no content type", "", `{"senderIds":["ghost"]}`, 415},
		{"a form, as curl -d sends", "application/x-www-form-urlencoded", `{"senderIds":["ghost"]}`, 415},
		{"text", "text/plain", `{}`, 415},
		{"JSON with a charset", "application/json; charset=utf-8", `{}`, 202},
		{"JSON in capitals", "Application/JSON", `{}`, 202},
		{"no body, no content type", "", "", 202},
		{"no body, a form content type", "application/x-www-form-urlencoded", "", 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.contentType != "" {
				h.Set("Content-Type", tc.contentType)
			}
			resp, body := rawDo(t, srv, "POST", path, withKey(h), tc.body)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if tc.want == 415 && !strings.Contains(body, `"unsupported_media_type"`) {
				t.Errorf("415 body %s", body)
			}
		})
	}
	// The pair-phone and test routes take bodies too.
	for _, path := range []string{"/api/whatsapp/session/alice/pair-phone", "/api/whatsapp/test/session/alice/ban"} {
		if resp, body := rawDo(t, srv, "POST", path, withKey(nil), `{"phone":"+15551234567"}`); resp.StatusCode != 415 {
			t.Errorf("POST %s without a content type: %d %s", path, resp.StatusCode, body)
		}
	}
}

func TestDuplicateAndCaseVariantKeysAreRefused(t *testing.T) {
	srv, _ := server(t)
	for _, tc := range []struct {
		name, path, body, message string
	}{
		{"case variant beside the key", "/api/whatsapp/sessions/restore", `{"senderIds":["alice"],"SENDERIDS":["../x"]}`,
			`unknown key "SENDERIDS": keys are case-sensitive, use "senderIds"`},
		{"case variant alone", "/api/whatsapp/sessions/restore", `{"senderids":["alice"]}`,
			`unknown key "senderids": keys are case-sensitive, use "senderIds"`},
		{"the key twice", "/api/whatsapp/sessions/restore", `{"senderIds":["alice"],"senderIds":["bob"]}`,
			`key "senderIds" appears more than once`},
		{"the key twice, once escaped", "/api/whatsapp/sessions/restore", `{"senderIds":["alice"],"sender\u0049ds":["bob"]}`,
			`key "senderIds" appears more than once`},
		{"phone twice", "/api/whatsapp/session/alice/pair-phone", `{"phone":"+15551234567","phone":"+15557654321"}`,
			`key "phone" appears more than once`},
		{"Phone", "/api/whatsapp/session/alice/pair-phone", `{"Phone":"+15551234567"}`,
			`unknown key "Phone": keys are case-sensitive, use "phone"`},
		{"unknown key", "/api/whatsapp/session/alice/pair-phone", `{"number":"+15551234567"}`,
			`unknown key "number": use "phone"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, srv, "POST", tc.path, "Bearer "+apiKey, tc.body)
			msg, _ := body["error"].(map[string]any)["message"].(string)
			if resp.StatusCode != 400 || errorCode(body) != "bad_request" || !strings.Contains(msg, tc.message) {
				t.Errorf("status %d, body %v; want 400 saying %q", resp.StatusCode, body, tc.message)
			}
		})
	}
}

func TestWrongMethodIs405WithAllowAfterTheKey(t *testing.T) {
	srv, _ := server(t)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"GET", "/api/whatsapp/sessions/restore", "POST"},
		{"DELETE", "/api/whatsapp/sessions/status", "GET"},
		{"PUT", "/api/whatsapp/session/alice", "POST, DELETE"},
		{"POST", "/api/whatsapp/session/alice/status", "GET"},
		{"GET", "/api/whatsapp/session/alice/stop", "POST"},
		{"GET", "/api/whatsapp/test/session/alice/scan", "POST"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, body := rawDo(t, srv, tc.method, tc.path, nil, "")
			if resp.StatusCode != 401 || resp.Header.Get("Allow") != "" {
				t.Errorf("without the key: %d (Allow %q) %s, want 401 revealing nothing", resp.StatusCode, resp.Header.Get("Allow"), body)
			}
			resp, body = rawDo(t, srv, tc.method, tc.path, withKey(nil), "")
			if resp.StatusCode != 405 || resp.Header.Get("Allow") != tc.allow || !strings.Contains(body, `"method_not_allowed"`) {
				t.Errorf("with the key: %d (Allow %q) %s, want 405 with Allow %q", resp.StatusCode, resp.Header.Get("Allow"), body, tc.allow)
			}
		})
	}
	// Outside /api no key is needed to learn it.
	resp, _ := rawDo(t, srv, "POST", "/healthz", nil, "")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /healthz: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// An unknown path under /api is 401 without the key, 404 with it.
	if resp, _ := rawDo(t, srv, "GET", "/api/whatsapp/nothing", nil, ""); resp.StatusCode != 401 {
		t.Errorf("unknown /api path without the key: %d", resp.StatusCode)
	}
	if resp, _ := rawDo(t, srv, "GET", "/api/whatsapp/nothing", withKey(nil), ""); resp.StatusCode != 404 {
		t.Errorf("unknown /api path with the key: %d", resp.StatusCode)
	}
}

func TestAnswersWithoutAKeyCloseTheConnection(t *testing.T) {
	srv, _ := server(t)
	resp, _ := rawDo(t, srv, "GET", "/api/whatsapp/sessions/status", nil, "")
	if resp.StatusCode != 401 || !resp.Close {
		t.Errorf("401 keeps the connection open (status %d, Close %v)", resp.StatusCode, resp.Close)
	}
	resp, _ = rawDo(t, srv, "GET", "/api/whatsapp/sessions/status", withKey(nil), "")
	if resp.StatusCode != 200 || resp.Close {
		t.Errorf("with the key: status %d, Close %v", resp.StatusCode, resp.Close)
	}
}

func TestErrorMessagesAreNotHTMLEscaped(t *testing.T) {
	srv, _ := server(t)
	resp, body := rawDo(t, srv, "GET", "/api/whatsapp/sessions/status", nil, "")
	if resp.StatusCode != 401 || !strings.Contains(body, "Bearer <API_KEY>") || strings.Contains(body, `\u003c`) {
		t.Errorf("401 body %s: want < and > as they are", body)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
}

func TestNotFoundNamesTheSessions(t *testing.T) {
	srv, _ := server(t)
	key := "Bearer " + apiKey
	for _, r := range needSession("ghost1") {
		resp, body := do(t, srv, r.method, r.path, key, "")
		msg, _ := body["error"].(map[string]any)["message"].(string)
		if resp.StatusCode != 404 || msg != "session not found: ghost1" {
			t.Errorf("%s %s: %d %q", r.method, r.path, resp.StatusCode, msg)
		}
	}

	// A restore naming unknown ids names each once, at most ten of them.
	var ids []string
	for i := range 15 {
		ids = append(ids, fmt.Sprintf(`"g%02d"`, i), fmt.Sprintf(`"g%02d"`, i))
	}
	resp, body := do(t, srv, "POST", "/api/whatsapp/sessions/restore", key, `{"senderIds":[`+strings.Join(ids, ",")+`]}`)
	msg, _ := body["error"].(map[string]any)["message"].(string)
	want := "session not found: g00, g01, g02, g03, g04, g05, g06, g07, g08, g09 and 5 more"
	if resp.StatusCode != 404 || msg != want {
		t.Errorf("restore of 15 unknown ids, each twice: %d %q, want %q", resp.StatusCode, msg, want)
	}
	resp, body = do(t, srv, "POST", "/api/whatsapp/sessions/restore", key, `{"senderIds":["g1","g1","g2"]}`)
	if msg, _ := body["error"].(map[string]any)["message"].(string); resp.StatusCode != 404 || msg != "session not found: g1, g2" {
		t.Errorf("restore of g1 twice and g2: %d %q", resp.StatusCode, msg)
	}
}

func TestMetricsNeedTheKeyOnTheAPIPort(t *testing.T) {
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "whatsapp_sessions 1\n") })
	srv := httptest.NewServer(api.NewHandler(api.Options{Sessions: fakeSessions{}, APIKey: apiKey, Metrics: metrics}))
	defer srv.Close()
	if resp, body := rawDo(t, srv, "GET", "/metrics", nil, ""); resp.StatusCode != 401 || strings.Contains(body, "whatsapp_sessions") {
		t.Errorf("/metrics without the key: %d %s", resp.StatusCode, body)
	}
	if resp, body := rawDo(t, srv, "GET", "/metrics", withKey(nil), ""); resp.StatusCode != 200 || body != "whatsapp_sessions 1\n" {
		t.Errorf("/metrics with the key: %d %s", resp.StatusCode, body)
	}

	// Metrics on their own listener: GET /metrics alone, no key.
	msrv := httptest.NewServer(api.NewMetricsHandler(metrics, nil))
	defer msrv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"POST", "/metrics", 405},
		{"GET", "/", 404},
		{"GET", "/metrics/x", 404},
		{"GET", "/healthz", 404},
		{"GET", "/api/whatsapp/sessions/status", 404},
		{"POST", "/api/whatsapp/sessions/restore", 404},
	} {
		resp, body := rawDo(t, msrv, tc.method, tc.path, nil, "")
		if resp.StatusCode != tc.want {
			t.Errorf("metrics listener: %s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
		if tc.want == 405 && resp.Header.Get("Allow") != "GET" {
			t.Errorf("metrics listener: 405 with Allow %q", resp.Header.Get("Allow"))
		}
	}
}
