package http_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The fuzz targets drive the real router and handlers over a recording
// fake manager: whatever the input, the API must not panic, must answer
// only its documented codes with its JSON error body, and must let no id
// that breaks the senderId rule reach the manager (where it would become a
// path).

const fuzzKey = "fuzz-test-key-0123456789abcdef"

// recordingSessions is a fake session manager that records every senderId
// it is handed. Sessions whose id has an even length do not exist, so both
// 200 and 404 come back from it.
type recordingSessions struct {
	mu       sync.Mutex
	ids      []string
	restores [][]string
}

var _ sessions.Service = (*recordingSessions)(nil)

func (s *recordingSessions) saw(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, id)
}

// take returns and forgets what was recorded.
func (s *recordingSessions) take() (ids []string, restores [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids, restores = s.ids, s.restores
	s.ids, s.restores = nil, nil
	return ids, restores
}

func (s *recordingSessions) lookup(id string) (sessions.Status, error) {
	s.saw(id)
	if len(id)%2 == 0 {
		return sessions.Status{}, sessions.ErrNotFound
	}
	return sessions.Status{SenderID: id, State: sessions.StateConnected, Connected: true, UserAction: sessions.ActionNone}, nil
}

func (s *recordingSessions) Restore(_ context.Context, ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restores = append(s.restores, ids)
	s.ids = append(s.ids, ids...)
	return nil
}

func (s *recordingSessions) Status(_ context.Context, id string) (sessions.Status, error) {
	return s.lookup(id)
}

func (s *recordingSessions) Fleet(context.Context) (sessions.Fleet, error) {
	return sessions.Fleet{Sessions: []sessions.Status{}, Counts: map[sessions.State]int{}}, nil
}

func (s *recordingSessions) Create(_ context.Context, id string) (sessions.CreateResult, error) {
	st, err := s.lookup(id)
	return sessions.CreateResult{Status: st}, err
}

func (s *recordingSessions) Stop(_ context.Context, id string) (sessions.Status, error) {
	return s.lookup(id)
}

func (s *recordingSessions) Delete(_ context.Context, id string) error {
	_, err := s.lookup(id)
	return err
}

func (s *recordingSessions) Logout(_ context.Context, id string) (sessions.Status, error) {
	return s.lookup(id)
}

func (s *recordingSessions) QR(_ context.Context, id string) (sessions.QR, error) {
	_, err := s.lookup(id)
	return sessions.QR{Code: "2@fuzz"}, err
}

func (s *recordingSessions) PairPhone(_ context.Context, id, _ string) (string, error) {
	_, err := s.lookup(id)
	return "ABCD-EFGH", err
}

func (s *recordingSessions) Ping(context.Context) error { return nil }

func fuzzHandler() (http.Handler, *recordingSessions) {
	s := &recordingSessions{}
	return api.NewHandler(api.Options{Sessions: s, APIKey: fuzzKey}), s
}

// ruleID is ^[A-Za-z0-9_-]{1,64}$ by hand (not the package's regexp).
func ruleID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// checkJSONError checks an error answer: JSON, with a code and a message.
func checkJSONError(rec *httptest.ResponseRecorder) error {
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("%d with Content-Type %q", rec.Code, ct)
	}
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return fmt.Errorf("%d without a JSON error body: %q", rec.Code, rec.Body.Bytes())
	}
	return nil
}

// escapeAll percent-encodes every byte.
func escapeAll(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// readRequest parses a request the way net/http's server does, from its
// request line and headers, so that the handler sees exactly what it
// would see behind a real listener. ok is false when the server would
// have refused the request itself (400) before any handler ran.
func readRequest(method, target string, header http.Header, body []byte) (*http.Request, bool) {
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: api.test\r\n", method, target)
	for k, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&raw, "%s: %s\r\n", k, v)
		}
	}
	fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n", len(body))
	raw.Write(body)
	req, err := http.ReadRequest(bufio.NewReader(&raw))
	if err != nil || req.Method != method {
		return nil, false
	}
	return req, true
}

// FuzzSenderIDRoute sends GET /api/whatsapp/session/<id>/status with the
// fuzzed id escaped several ways.
func FuzzSenderIDRoute(f *testing.F) {
	for _, seed := range []string{
		"alice", "bob", "user_1-x", strings.Repeat("a", 64), strings.Repeat("a", 65), "",
		".", "..", "...", "../..", "%2e%2e", "%2E%2E", "%252e%252e", ".%2e", "%2e.",
		"..%2f..%2fetc", "..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "..\\..\\etc",
		"a%2Fb", "a%2fb", "a/b", "a%5Cb", "a\\b", "%00", "a%00", "a\x00b", "//", "/", "%2F",
		"a?b", "a#b", "a%3Fb", "a%23b", "a;b", "a b", "a%20b", "a+b", "%", "%zz", "%2",
		"ａｂｃ", "аdmin", "a\u2215b", "%C0%AE%C0%AE", "%c0%af", "\xc0\xae\xc0\xae",
		"session-x", "status", "restore", "a/status", "a/stop", "a/qr", "a/", "/a",
	} {
		f.Add(seed)
	}
	h, s := fuzzHandler()
	header := http.Header{"Authorization": {"Bearer " + fuzzKey}}

	f.Fuzz(func(t *testing.T, raw string) {
		targets := []string{
			raw,
			url.PathEscape(raw),
			url.QueryEscape(raw),
			escapeAll(raw),
			url.PathEscape(url.PathEscape(raw)),
			strings.NewReplacer(".", "%2e", "/", "%2f").Replace(raw),
		}
		for _, target := range targets {
			path := "/api/whatsapp/session/" + target + "/status"
			req, ok := readRequest(http.MethodGet, path, header, nil)
			if !ok {
				continue // net/http answers 400 before the router runs
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			ids, _ := s.take()
			if target == raw && ruleID(raw) && !slices.Equal(ids, []string{raw}) {
				t.Fatalf("GET %q: a valid id did not reach the manager (%d, saw %q)", path, rec.Code, ids)
			}
			if !slices.Contains([]int{200, 400, 404, 405}, rec.Code) {
				t.Fatalf("GET %q: %d %s", path, rec.Code, rec.Body)
			}
			for _, id := range ids {
				if !ruleID(id) {
					t.Fatalf("GET %q: the manager was handed %q, which breaks the senderId rule", path, id)
				}
			}
			if rec.Code != 200 {
				if err := checkJSONError(rec); err != nil {
					t.Fatalf("GET %q: %v", path, err)
				}
				continue
			}
			var st sessions.Status
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || len(ids) != 1 || st.SenderID != ids[0] {
				t.Fatalf("GET %q: 200 %s, manager saw %q", path, rec.Body, ids)
			}
		}
	})
}

// restoreIDs is what the handler should hand the manager for body, by a
// reading of the API's contract independent of the handler's code: no
// body (or only white space), "{}" and {"senderIds": [valid ids...]} (a
// non-empty list, every id valid) are accepted; anything else is 400. ok
// is false for a body that must be refused.
func restoreIDs(body []byte) (ids []string, ok bool) {
	if len(jsonTrim(body)) == 0 {
		return nil, true // no body, or only JSON's white space
	}
	// One JSON object (DESIGN.md: the optional body {"senderIds": [...]}),
	// nothing after it but JSON's white space.
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil || obj == nil || len(jsonTrim(body[dec.InputOffset():])) > 0 {
		return nil, false
	}
	// Keys are matched exactly and may not repeat (encoding/json alone
	// would match "SENDERIDS" and keep the last of two "senderIds").
	keys := topLevelKeys(body)
	if len(keys) > 1 || len(keys) == 1 && keys[0] != "senderIds" {
		return nil, false
	}
	list := obj["senderIds"]
	if list == nil {
		return nil, true // {}
	}
	if err := json.Unmarshal(list, &ids); err != nil || ids == nil || len(ids) == 0 {
		return nil, false // not a list of strings, null, or empty
	}
	var unique []string
	for _, id := range ids {
		if !ruleID(id) {
			return nil, false
		}
		if !slices.Contains(unique, id) {
			unique = append(unique, id)
		}
	}
	return unique, true
}

// topLevelKeys lists the keys of the JSON object in body, repeats included,
// as written once JSON's escapes are undone.
func topLevelKeys(body []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := tok.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return keys
		}
	}
	return keys
}

// jsonTrim drops JSON's white space (space, tab, CR, LF) at both ends.
func jsonTrim(b []byte) []byte { return bytes.Trim(b, " \t\r\n") }

// short quotes body for a failure message, cut to its first 200 bytes.
func short(body []byte) string {
	if len(body) <= 200 {
		return fmt.Sprintf("%q", body)
	}
	return fmt.Sprintf("%q... (%d bytes)", body[:200], len(body))
}

// FuzzRestoreBody posts fuzzed bodies to POST /api/whatsapp/sessions/restore.
// Only the seeds run under plain go test, so they hold the interesting
// cases: every accepted shape, each way to be refused, the size cap, and
// the inputs that broke it before.
func FuzzRestoreBody(f *testing.F) {
	for _, seed := range []string{
		"", " ", "\n\t ", "{}", " {} ", "{}\n",
		`{"senderIds":["alice"]}`, `{"senderIds":["alice","bob_2","c-3"]}`, `{"senderIds":["alice"]}` + "\n",
		`{"senderIds":[]}`, `{"senderIds":null}`, `null`, `{"senderIds":[null]}`, `{"senderIds":[""]}`,
		`{"senderIds":["../x"]}`, `{"senderIds":[".."]}`, `{"senderIds":["a/b"]}`, `{"senderIds":["a\\b"]}`,
		`{"senderIds":["\u002e\u002e"]}`, `{"senderIds":["a\u0000"]}`, `{"senderIds":["%2e%2e"]}`,
		`{"senderIds":["` + strings.Repeat("a", 65) + `"]}`, `{"senderIds":["` + strings.Repeat("a", 64) + `"]}`,
		`{"senderIds":"alice"}`, `{"senderIds":[1]}`, `{"senderIds":{"a":1}}`, `{"senderIds":[["a"]]}`,
		`{"SENDERIDS":["alice"]}`, `{"senderids":["alice"]}`, `{"sender_ids":["alice"]}`, `{"other":1}`,
		`{"senderIds":["alice"],"other":1}`, `{"senderIds":["alice"],"senderIds":["../x"]}`,
		`{"senderIds":["alice"],"SENDERIDS":["bob"]}`, `{"senderIds":["alice"],"senderIds":["alice"]}`,
		`{"sender\u0049ds":["alice"]}`, `{"senderIds":["alice","bob","alice"]}`,
		`{"senderIds":["../x"],"senderIds":["alice"]}`,
		`{"senderIds":["alice"]}{}`, `{"senderIds":["alice"]} x`, `{}{}`, `{} null`,
		`{"senderIds":["alice"]}}`, `{"senderIds":["../x"]}]`, `{} }`, `null ]`,
		`[]`, `["alice"]`, `"alice"`, `1`, `true`, `{`, `}`, `{"senderIds":["alice"]`, `{"senderIds":`,
		"\xff", "{\"senderIds\":[\"\xff\"]}", "\ufeff{}", "{}\v", "\v", "\u00a0",
	} {
		f.Add([]byte(seed), uint16(0))
	}
	// The body is capped at 64 KiB: pad lets the fuzzer reach the cap
	// with trailing spaces, without carrying (and minimising) 64 KiB
	// inputs. 2 + 65534 bytes is exactly the cap, one more is over it.
	f.Add([]byte("{}"), uint16(65534))
	f.Add([]byte("{}"), uint16(65535))
	f.Add([]byte(`{"senderIds":["alice"]}`), uint16(65535))
	f.Add([]byte("  "), uint16(65534))
	f.Add([]byte("   "), uint16(65534))
	h, s := fuzzHandler()

	f.Fuzz(func(t *testing.T, body []byte, pad uint16) {
		body = append(body, bytes.Repeat([]byte(" "), int(pad))...)
		req := httptest.NewRequest(http.MethodPost, "/api/whatsapp/sessions/restore", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+fuzzKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		ids, restores := s.take()
		for _, id := range ids {
			if !ruleID(id) {
				t.Fatalf("body %s: the manager was handed %q, which breaks the senderId rule", short(body), id)
			}
		}
		wantIDs, ok := restoreIDs(body)
		tooBig := len(body) > 64<<10
		switch {
		case tooBig:
			if rec.Code != 413 {
				t.Fatalf("body of %d bytes: %d, want 413", len(body), rec.Code)
			}
		case ok:
			if rec.Code != 202 || len(restores) != 1 || !slices.Equal(restores[0], wantIDs) {
				t.Fatalf("body %s: %d %s, restores %q; want 202 restoring %q", short(body), rec.Code, rec.Body, restores, wantIDs)
			}
			var out map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil ||
				out["message"] != "Session restoration initiated successfully" || out["note"] == "" {
				t.Fatalf("body %s: 202 with %q", short(body), rec.Body)
			}
			return
		default:
			if rec.Code != 400 {
				t.Fatalf("body %s: %d %s (manager restored %q), want 400", short(body), rec.Code, rec.Body, restores)
			}
		}
		if len(restores) != 0 {
			t.Fatalf("body %s: %d but the manager was asked to restore %q", short(body), rec.Code, restores)
		}
		if err := checkJSONError(rec); err != nil {
			t.Fatalf("body %s: %v", short(body), err)
		}
	})
}

// validAuth is the rule by hand: a case-insensitive "bearer", one or more
// spaces, the key.
func validAuth(auth string) bool {
	if len(auth) < len("bearer ") || !strings.EqualFold(auth[:len("bearer")], "bearer") || auth[len("bearer")] != ' ' {
		return false
	}
	return strings.TrimLeft(auth[len("bearer"):], " ") == fuzzKey
}

// FuzzAuthHeader sends fuzzed Authorization values to an /api route: only
// the scheme Bearer, in any case, then one or more spaces and exactly the
// key pass (RFC 7235).
func FuzzAuthHeader(f *testing.F) {
	for _, seed := range []string{
		"", "Bearer", "Bearer ", "Bearer  ", "Bearer " + fuzzKey, "bearer " + fuzzKey, "BEARER " + fuzzKey,
		"Bearer  " + fuzzKey, "Bearer " + fuzzKey + " ", " Bearer " + fuzzKey, "Bearer\t" + fuzzKey,
		"Bearer " + fuzzKey + "\x00", "Bearer " + fuzzKey + "\n", "Bearer " + fuzzKey[:len(fuzzKey)-1],
		"Bearer " + fuzzKey + "f", "Bearer " + strings.ToUpper(fuzzKey), "Basic " + fuzzKey, "Token " + fuzzKey,
		fuzzKey, "Bearer Bearer " + fuzzKey, "Bearer " + fuzzKey + ", Bearer x", "Bearer x, Bearer " + fuzzKey,
		"Bearer \u00a0" + fuzzKey, "Bearer " + strings.Repeat("k", 4096), "bEaReR   " + fuzzKey, "Bearer\t " + fuzzKey,
		"Bearer\x00 " + fuzzKey, "Bearerx " + fuzzKey, "Bear " + fuzzKey,
	} {
		f.Add(seed)
	}
	h, _ := fuzzHandler()

	f.Fuzz(func(t *testing.T, auth string) {
		for _, route := range []struct{ method, path string }{
			{http.MethodGet, "/api/whatsapp/sessions/status"},
			{http.MethodPost, "/api/whatsapp/session/alice/stop"},
		} {
			req := httptest.NewRequest(route.method, route.path, nil)
			req.Header["Authorization"] = []string{auth}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if validAuth(auth) {
				if rec.Code == 401 {
					t.Fatalf("%s %s with the right key: 401", route.method, route.path)
				}
				continue
			}
			if rec.Code != 401 {
				t.Fatalf("%s %s with Authorization %q: %d, want 401", route.method, route.path, auth, rec.Code)
			}
			if err := checkJSONError(rec); err != nil {
				t.Fatalf("Authorization %q: %v", auth, err)
			}
			if rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatalf("Authorization %q: 401 without WWW-Authenticate", auth)
			}
			if strings.Contains(rec.Body.String(), fuzzKey) {
				t.Fatalf("Authorization %q: the 401 shows the key", auth)
			}
		}
	})
}
