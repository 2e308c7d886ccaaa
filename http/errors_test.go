package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	api "github.com/whatsapp-sessions/whatsapp-sessions/http"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// failing is a sessions.Service and a test driver whose every call fails
// with err.
type failing struct{ err error }

var (
	_ sessions.Service    = failing{}
	_ sessions.TestDriver = failing{}
	_ sessions.Messenger  = failing{}
)

func (f failing) Send(context.Context, string, sessions.SendRequest) (sessions.SentMessage, error) {
	return sessions.SentMessage{}, f.err
}
func (f failing) MarkRead(context.Context, string, sessions.ReadRequest) error { return f.err }

func (f failing) Restore(context.Context, []string) error { return f.err }
func (f failing) Status(context.Context, string) (sessions.Status, error) {
	return sessions.Status{}, f.err
}
func (f failing) Fleet(context.Context) (sessions.Fleet, error) { return sessions.Fleet{}, f.err }
func (f failing) Create(context.Context, string) (sessions.CreateResult, error) {
	return sessions.CreateResult{}, f.err
}
func (f failing) Stop(context.Context, string) (sessions.Status, error) {
	return sessions.Status{}, f.err
}
func (f failing) Delete(context.Context, string) error { return f.err }
func (f failing) Logout(context.Context, string) (sessions.Status, error) {
	return sessions.Status{}, f.err
}
func (f failing) QR(context.Context, string) (sessions.QR, error) { return sessions.QR{}, f.err }
func (f failing) PairPhone(context.Context, string, string) (string, error) {
	return "", f.err
}
func (f failing) Ping(context.Context) error { return f.err }
func (f failing) Act(context.Context, string, string, sessions.TestParams) (any, error) {
	return nil, f.err
}

// Every error a service returns becomes the status, code and sentence of
// the one error table, on every route (handlers_test.go's routes, which
// reach the service): each sentinel of sessions and store,
// bare, wrapped, or carrying its own sentence.
func TestEveryErrorMapsToItsStatusOnEveryRoute(t *testing.T) {
	const secret = "open /data/session-alice/store.db: 15551234567"
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		// msg is the sentence on a route naming alice; plain, when set, on
		// the others.
		msg, plain string
	}{
		{"not found", sessions.ErrNotFound, 404, "not_found", "session not found: alice", "session not found"},
		{"not found naming ids", fmt.Errorf("%w: a, b", sessions.ErrNotFound), 404, "not_found", "session not found: alice", "session not found: a, b"},
		{"store not found", fmt.Errorf("open: %w", store.ErrNotFound), 404, "not_found", "session not found: alice", "open: " + store.ErrNotFound.Error()},
		{"not found with its own sentence", sessions.Errorf(sessions.ErrNotFound, "unknown test action: use scan"), 404, "not_found", "unknown test action: use scan", ""},
		{"invalid id", fmt.Errorf("restore: %w", store.ErrInvalidID), 400, "invalid_id", "restore: " + store.ErrInvalidID.Error(), ""},
		{"invalid", sessions.Errorf(sessions.ErrInvalid, "ban needs seconds"), 400, "bad_request", "ban needs seconds", ""},
		{"wrong state", sessions.WrongState(sessions.StatePairing, "session alice is pairing"), 409, "wrong_state", "session alice is pairing", ""},
		{"wrong state wrapped", fmt.Errorf("logout: %w", sessions.WrongState(sessions.StateStopped, "session alice is stopped")), 409, "wrong_state", "session alice is stopped", ""},
		{"bare wrong state", sessions.ErrWrongState, 409, "wrong_state", "wrong state", ""},
		{"timeout", fmt.Errorf("%w: %v", sessions.ErrTimeout, context.DeadlineExceeded), 504, "timeout", "the session did not answer in time; try again", ""},
		{"WhatsApp refusal", fmt.Errorf("%w: logout: 401", sessions.ErrWhatsApp), 502, "whatsapp_error", sessions.ErrWhatsApp.Error() + ": logout: 401", ""},
		{"recipient not on WhatsApp", fmt.Errorf("send: %w", sessions.ErrNoRecipient), 404, "recipient_not_found", "the recipient is not on WhatsApp", ""},
		{"idempotency key reused", sessions.ErrKeyReused, 422, "idempotency_key_reused", "this Idempotency-Key was used with a different request: use a new key for a new request", ""},
		{"idempotency key in progress", sessions.ErrKeyInProgress, 409, "idempotency_in_progress", "a request with this Idempotency-Key is still being sent: retry once it has answered", ""},
		{"shutting down", sessions.ErrShuttingDown, 503, "shutting_down", sessions.ErrShuttingDown.Error(), ""},
		{"store unavailable", fmt.Errorf("%w: disk full", store.ErrUnavailable), 500, "store_error", store.ErrUnavailable.Error() + ": disk full", ""},
		{"store corrupt", fmt.Errorf("%w: bad page", store.ErrCorrupt), 500, "store_error", store.ErrCorrupt.Error() + ": bad page", ""},
		{"anything else", errors.New(secret), 500, "internal", "internal error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := failing{err: tt.err}
			h := api.NewHandler(api.Options{Sessions: f, Test: f, Messenger: f, APIKey: testKey})
			for _, r := range routes {
				req := httptest.NewRequest(r.method, r.path, strings.NewReader(r.body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				if r.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				body := decodeError(t, rec)
				want := tt.msg
				if forID := strings.Contains(r.path, "/alice"); !forID && tt.plain != "" {
					want = tt.plain
				}
				if rec.Code != tt.status || body.Code != tt.code || body.Message != want {
					t.Errorf("%s %s: %d %s %q, want %d %s %q", r.method, r.path, rec.Code, body.Code, body.Message, tt.status, tt.code, want)
				}
				if strings.Contains(rec.Body.String(), "15551234567") {
					t.Errorf("%s %s: the body shows an internal error's words: %s", r.method, r.path, rec.Body)
				}
			}
		})
	}
}

type errorFields struct{ Code, Message string }

// decodeError reads the JSON error body every failure carries.
func decodeError(t *testing.T, rec *httptest.ResponseRecorder) errorFields {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json; body %s", ct, rec.Body)
	}
	var body struct{ Error errorFields }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body %s: %v", rec.Body, err)
	}
	return body.Error
}

// The readiness probe says the manager does not answer, whatever the error.
func TestReadyzIs503WhenTheServiceDoesNotAnswer(t *testing.T) {
	h := api.NewHandler(api.Options{Sessions: failing{err: fmt.Errorf("%w: deadline", sessions.ErrTimeout)}, APIKey: testKey})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if body := decodeError(t, rec); rec.Code != http.StatusServiceUnavailable || body.Code != "not_ready" {
		t.Errorf("readyz: %d %+v, want 503 not_ready", rec.Code, body)
	}
}
