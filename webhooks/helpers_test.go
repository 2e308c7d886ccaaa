package webhooks_test

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// testSecret is the Standard Webhooks specification's example key.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// received is one request the receiver verified.
type received struct {
	WebhookID string
	Event     sessions.Event
}

// receiver is an httptest endpoint that verifies every request's
// signature with the Standard Webhooks library and records the verified
// ones; answer decides each answer's status (200 when nil).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	answer atomic.Pointer[func(sessions.Event) int]

	mu   sync.Mutex
	got  []received
	bad  int
	hits atomic.Int64
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		body, _ := io.ReadAll(req.Body)
		if err := wh.Verify(body, req.Header); err != nil {
			r.mu.Lock()
			r.bad++
			r.mu.Unlock()
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev sessions.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		status := http.StatusOK
		if f := r.answer.Load(); f != nil {
			status = (*f)(ev)
		}
		if status/100 == 2 {
			r.mu.Lock()
			r.got = append(r.got, received{WebhookID: req.Header.Get("webhook-id"), Event: ev})
			r.mu.Unlock()
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// setAnswer makes f decide every later answer.
func (r *receiver) setAnswer(f func(sessions.Event) int) { r.answer.Store(&f) }

// received lists the events answered 2xx, in order of arrival.
func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// idsOf lists the event ids received for sender, in order.
func (r *receiver) idsOf(sender string) []string {
	var ids []string
	for _, g := range r.received() {
		if g.Event.SenderID == sender {
			ids = append(ids, g.Event.ID)
		}
	}
	return ids
}

// firstIDsOf lists the event ids received for sender, each once, in the
// order of their first arrival.
func (r *receiver) firstIDsOf(sender string) []string {
	var ids []string
	for _, id := range r.idsOf(sender) {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids
}

// duplicatesOf lists the event ids received for sender more than once,
// each once, after checking that every copy carried the same webhook-id.
func (r *receiver) duplicatesOf(sender string) []string {
	seen := map[string]string{} // event id -> webhook-id
	var dup []string
	for _, g := range r.received() {
		if g.Event.SenderID != sender {
			continue
		}
		first, ok := seen[g.Event.ID]
		if !ok {
			seen[g.Event.ID] = g.WebhookID
			continue
		}
		if first != g.WebhookID {
			r.t.Errorf("event %s arrived with webhook-ids %s and %s", g.Event.ID, first, g.WebhookID)
		}
		if !slices.Contains(dup, g.Event.ID) {
			dup = append(dup, g.Event.ID)
		}
	}
	return dup
}

// clock is a real clock that tests can move forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func fixedBackoff(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

// testOptions are options for a test outbox in dir delivering to urls:
// private targets allowed (httptest listens on loopback), short waits.
func testOptions(dir string, urls ...string) webhooks.Options {
	return webhooks.Options{
		Path:         filepath.Join(dir, "outbox.db"),
		URLs:         urls,
		Secret:       testSecret,
		Timeout:      2 * time.Second,
		AllowPrivate: true,
		Backoff:      fixedBackoff(20 * time.Millisecond),
	}
}

// postgresDirs maps a test directory (eachStore's postgres run) to the
// Postgres database its outbox is in.
var postgresDirs sync.Map // string -> *sql.DB

// testNode is the node name of a test outbox in Postgres.
const testNode = "node-a"

// eachStore runs test on each kind of outbox: a SQLite file, and a real
// Postgres database migrated by pgstore. open (and testOptions) on dir
// open the test's outbox in that store (again after a Close: the same
// database).
func eachStore(t *testing.T, test func(t *testing.T, dir string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, t.TempDir()) })
	t.Run("postgres", func(t *testing.T) {
		db, _ := pgtest.Start(t).OpenMigrated(t)
		dir := t.TempDir()
		postgresDirs.Store(dir, db)
		t.Cleanup(func() { postgresDirs.Delete(dir) })
		test(t, dir)
	})
}

// openStore opens opts's outbox: in Postgres, as node testNode, when its
// directory is an eachStore postgres run's.
func openStore(opts webhooks.Options) (*webhooks.Outbox, error) {
	if db, ok := postgresDirs.Load(filepath.Dir(opts.Path)); ok {
		opts.Node = cmp.Or(opts.Node, testNode)
		opts.NodeTTL = cmp.Or(opts.NodeTTL, 10*time.Second)
		return webhooks.OpenPostgres(db.(*sql.DB), opts)
	}
	return webhooks.Open(opts)
}

// open opens an outbox closed at the test's end.
func open(t *testing.T, opts webhooks.Options) *webhooks.Outbox {
	t.Helper()
	o, err := openStore(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { closeOutbox(t, o) })
	return o
}

func closeOutbox(t *testing.T, o *webhooks.Outbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// event is a message.received event of sender numbered n.
func event(sender string, n int) sessions.Event {
	return sessions.Event{
		Type:      sessions.EventMessageReceived,
		ID:        fmt.Sprintf("msg_%s_%04d", sender, n),
		Timestamp: time.Now().UTC(),
		SenderID:  sender,
		Data:      json.RawMessage(fmt.Sprintf(`{"id":"M%d","chat":"c","from":"f","text":"hello %d"}`, n, n)),
	}
}

// publish publishes evs and waits for their commit.
func publish(t *testing.T, o *webhooks.Outbox, evs ...sessions.Event) {
	t.Helper()
	done := make(chan error, 1)
	o.Publish(evs, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("publish: not committed within 10s")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// list is every delivery in state.
func list(t *testing.T, o *webhooks.Outbox, state sessions.DeliveryState) []sessions.Delivery {
	t.Helper()
	ds, err := o.List(context.Background(), state, "", webhooks.MaxListLimit)
	if err != nil {
		t.Fatalf("list %s: %v", state, err)
	}
	return ds
}
