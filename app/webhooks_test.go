package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// hookReceiver verifies each delivery with the secret the service keeps
// in SESSIONS_DIR (read when the first request comes) and records the
// event ids it accepted; while failing, it answers 500.
type hookReceiver struct {
	srv       *httptest.Server
	dir       string
	failing   atomic.Bool
	mu        sync.Mutex
	ids       []string
	forged    int
	verifyErr error
}

func newHookReceiver(t *testing.T, dir string) *hookReceiver {
	r := &hookReceiver{dir: dir}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		secret, err := os.ReadFile(filepath.Join(r.dir, ".webhook-secret"))
		var wh *standardwebhooks.Webhook
		if err == nil {
			wh, err = standardwebhooks.NewWebhook(strings.TrimSpace(string(secret)))
		}
		if err == nil {
			err = wh.Verify(body, req.Header)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			r.forged++
			r.verifyErr = err
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.failing.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var ev sessions.Event
		_ = json.Unmarshal(body, &ev)
		r.ids = append(r.ids, ev.ID)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *hookReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids)
}

// publish hands evs to the service's event sink and waits for the commit.
func publishTo(t *testing.T, a *app.App, evs ...sessions.Event) {
	t.Helper()
	done := make(chan error, 1)
	a.Webhooks().Publish(evs, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func stateEvent(sender string, n int) sessions.Event {
	return sessions.Event{Type: sessions.EventSessionState, ID: fmt.Sprintf("st_%s_%d", sender, n), Timestamp: time.Now(),
		SenderID: sender, Data: json.RawMessage(`{"senderId":"` + sender + `","state":"connected"}`)}
}

// The service delivers what its sink commits to WEBHOOK_URL, signed with
// a secret it generated into SESSIONS_DIR; the deliveries API lists the
// dead ones and sends them again; metrics count the attempts; a restart
// keeps the secret and resumes what waited.
func TestWebhooksThroughTheService(t *testing.T) {
	dir := t.TempDir()
	rcv := newHookReceiver(t, dir)
	cfg := e2e.Config(dir, nil)
	cfg.TestMode = false
	cfg.WebhookURL = rcv.srv.URL
	cfg.WebhookRetryFor = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	start := func() (*app.App, *client.Client) {
		a, err := app.New(cfg, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return a, client.New("http://"+a.Addr(), a.APIKey())
	}
	a, c := start()
	fi, err := os.Stat(filepath.Join(dir, ".webhook-secret"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}

	publishTo(t, a, stateEvent("alice", 1))
	e2e.WaitFor(t, 10*time.Second, "the first delivery", func() (bool, string) {
		return slices.Equal(rcv.received(), []string{"st_alice_1"}), fmt.Sprint(rcv.received(), rcv.verifyErr)
	})

	// The receiver fails: the event dies after WEBHOOK_RETRY_FOR.
	rcv.failing.Store(true)
	publishTo(t, a, stateEvent("alice", 2))
	var dead []sessions.Delivery
	e2e.WaitFor(t, 10*time.Second, "a dead delivery", func() (bool, string) {
		dead, _, err = c.Deliveries(ctx, sessions.DeliveryDead, "", 0)
		return err == nil && len(dead) == 1, fmt.Sprint(dead, err)
	})
	if d := dead[0]; d.EventID != "st_alice_2" || d.LastError != "answered 500 Internal Server Error" || d.Endpoint != rcv.srv.URL {
		t.Errorf("dead delivery %+v", d)
	}
	fams, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := client.Sample(fams, "whatsapp_webhook_deliveries_total", "result", "dead"); v != 1 {
		t.Errorf("dead deliveries metric %v, want 1", v)
	}
	if v, _ := client.Sample(fams, "whatsapp_webhook_deliveries_total", "result", "delivered"); v != 1 {
		t.Errorf("delivered metric %v, want 1", v)
	}

	// API errors through the one table.
	var apiErr *client.Error
	if _, err := c.RetryDelivery(ctx, "dlv_999"); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("retry unknown: %v", err)
	}
	if _, err := c.RetryDelivery(ctx, "bogus"); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Errorf("retry bogus: %v", err)
	}
	delivered, _, err := c.Deliveries(ctx, sessions.DeliveryDelivered, "", 0)
	if err != nil || len(delivered) != 1 {
		t.Fatalf("delivered: %v %v", delivered, err)
	}
	if _, err := c.RetryDelivery(ctx, delivered[0].ID); !errors.As(err, &apiErr) || apiErr.Status != 409 || apiErr.Code != "wrong_state" {
		t.Errorf("retry delivered: %v", err)
	}
	for _, q := range []string{"", "state=nope", "state=dead&limit=0", "state=dead&limit=x", "state=dead&after=x"} {
		resp, err := c.Do(ctx, http.MethodGet, "/api/whatsapp/webhooks/deliveries?"+q, nil, nil)
		if err != nil || resp.Status != 400 {
			t.Errorf("list ?%s: %v %v, want 400", q, resp, err)
		}
	}

	// One retried through the API: it waits (the receiver still fails)
	// across a restart, which keeps the secret, then arrives.
	if d, err := c.RetryDelivery(ctx, dead[0].ID); err != nil || d.State != sessions.DeliveryPending {
		t.Fatalf("retry: %+v %v", d, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	rcv.failing.Store(false)
	cfg.WebhookRetryFor = time.Hour
	a, c = start()
	defer a.Close()
	e2e.WaitFor(t, 10*time.Second, "the retried event after a restart", func() (bool, string) {
		return slices.Equal(rcv.received(), []string{"st_alice_1", "st_alice_2"}), fmt.Sprint(rcv.received(), rcv.verifyErr)
	})
	if n, err := c.RetryDeadDeliveries(ctx); err != nil || n != 0 {
		t.Errorf("retry dead with none: %d %v", n, err)
	}
	if rcv.forged != 0 {
		t.Errorf("%d deliveries failed verification: %v", rcv.forged, rcv.verifyErr)
	}
}
