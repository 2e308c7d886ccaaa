package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// recorder is a Messenger that keeps what it was asked and answers well.
type recorder struct {
	mu    sync.Mutex
	sends []sessions.SendRequest
	reads []sessions.ReadRequest
}

func (r *recorder) Send(_ context.Context, _ string, req sessions.SendRequest) (sessions.SentMessage, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends = append(r.sends, req)
	return sessions.SentMessage{ID: "3EB0AB", Timestamp: time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)}, nil
}

func (r *recorder) MarkRead(_ context.Context, _ string, req sessions.ReadRequest) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, req)
	return nil
}

func messagesHandler(t *testing.T) (http.Handler, *recorder) {
	t.Helper()
	rec := &recorder{}
	return api.NewHandler(api.Options{Sessions: fakeSessions{}, Messenger: rec, APIKey: testKey}), rec
}

func post(h http.Handler, path, body string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSendRoute(t *testing.T) {
	h, rec := messagesHandler(t)
	const path = "/api/whatsapp/session/alice/messages"
	res := post(h, path, `{"to":"+15551234567","text":"hi","replyTo":"3EB0AA"}`, http.Header{"Idempotency-Key": {"order-42"}})
	if res.Code != http.StatusOK {
		t.Fatalf("send: %d %s", res.Code, res.Body)
	}
	var sent sessions.SentMessage
	if err := json.Unmarshal(res.Body.Bytes(), &sent); err != nil || sent.ID != "3EB0AB" || sent.Timestamp.IsZero() {
		t.Errorf("answer %s (%v)", res.Body, err)
	}
	want := sessions.SendRequest{To: "+15551234567", Text: "hi", ReplyTo: "3EB0AA", IdempotencyKey: "order-42"}
	if len(rec.sends) != 1 || rec.sends[0] != want {
		t.Errorf("sent %+v, want %+v", rec.sends, want)
	}

	// The longest text, in characters whose JSON escapes are longest,
	// fits the body cap.
	long := strings.Repeat(`\ud83d\ude00`, sessions.MaxTextLength)
	if res := post(h, path, `{"to":"+15551234567","text":"`+long+`"}`, nil); res.Code != http.StatusOK {
		t.Errorf("the longest text: %d %s", res.Code, res.Body)
	}

	for _, tt := range []struct {
		name, body string
		header     http.Header
		status     int
		code       string
	}{
		{"no body", "", nil, 400, "bad_request"},
		{"empty object", "{}", nil, 400, "bad_request"},
		{"unknown key", `{"to":"+15551234567","text":"hi","media":"x"}`, nil, 400, "bad_request"},
		{"key twice", `{"to":"+15551234567","text":"hi","text":"again"}`, nil, 400, "bad_request"},
		{"key in the body", `{"to":"+15551234567","text":"hi","IdempotencyKey":"k"}`, nil, 400, "bad_request"},
		{"not JSON", `to=+15551234567`, nil, 400, "bad_request"},
		{"two keys", `{"to":"+15551234567","text":"hi"}`, http.Header{"Idempotency-Key": {"a", "b"}}, 400, "bad_request"},
		{"empty key", `{"to":"+15551234567","text":"hi"}`, http.Header{"Idempotency-Key": {""}}, 400, "bad_request"},
		{"body over 1 MiB", `{"to":"+15551234567","text":"` + strings.Repeat("x", 1<<20) + `"}`, nil, 413, "body_too_large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := post(h, path, tt.body, tt.header)
			if body := decodeError(t, res); res.Code != tt.status || body.Code != tt.code {
				t.Errorf("%d %+v, want %d %s", res.Code, body, tt.status, tt.code)
			}
		})
	}
	if len(rec.sends) != 2 {
		t.Errorf("%d sends reached the messenger, want 2", len(rec.sends))
	}
}

func TestReadRoute(t *testing.T) {
	h, rec := messagesHandler(t)
	res := post(h, "/api/whatsapp/session/alice/messages/3EB0%2BAB/read", `{"chat":"15551234567@s.whatsapp.net"}`, nil)
	if res.Code != http.StatusOK || !strings.Contains(res.Body.String(), `"status":"read"`) {
		t.Fatalf("read: %d %s", res.Code, res.Body)
	}
	want := sessions.ReadRequest{ID: "3EB0+AB", Chat: "15551234567@s.whatsapp.net"}
	if len(rec.reads) != 1 || rec.reads[0] != want {
		t.Errorf("read %+v, want %+v", rec.reads, want)
	}
	for _, tt := range []struct{ name, path, body string }{
		{"no chat", "/api/whatsapp/session/alice/messages/3EB0AB/read", ""},
		{"unknown key", "/api/whatsapp/session/alice/messages/3EB0AB/read", `{"chat":"+15551234567","id":"x"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := post(h, tt.path, tt.body, nil)
			if body := decodeError(t, res); res.Code != 400 || body.Code != "bad_request" {
				t.Errorf("%d %+v, want 400 bad_request", res.Code, body)
			}
		})
	}
}
