package webhooks_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// publishAll publishes n events for each sender, interleaved, and returns
// each sender's event ids in order.
func publishAll(t *testing.T, o *webhooks.Outbox, n int, senders ...string) map[string][]string {
	t.Helper()
	want := map[string][]string{}
	for i := range n {
		for _, s := range senders {
			ev := event(s, i)
			publish(t, o, ev)
			want[s] = append(want[s], ev.ID)
		}
	}
	return want
}

// The receiver is down (503) for a while: events wait, then arrive in
// order per session, each once.
func TestReceiverDownThenUp(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var down atomic.Bool
		down.Store(true)
		rcv.setAnswer(func(sessions.Event) int {
			if down.Load() {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		o := open(t, testOptions(dir, rcv.srv.URL))
		senders := []string{"alice", "bob", "carol"}
		want := publishAll(t, o, 10, senders...)
		waitFor(t, 10*time.Second, "every session's head to fail", func() (bool, string) {
			f := list(t, o, sessions.DeliveryFailed)
			return len(f) == len(senders), fmt.Sprint(len(f))
		})
		for _, d := range list(t, o, sessions.DeliveryFailed) {
			if d.Attempts < 1 || d.LastError != "answered 503 Service Unavailable" || d.NextTryAt == nil || d.LastTryAt == nil {
				t.Errorf("failed delivery %+v", d)
			}
		}
		if got := len(rcv.received()); got != 0 {
			t.Fatalf("%d received while the receiver was down", got)
		}
		down.Store(false)
		waitFor(t, 20*time.Second, "every event", func() (bool, string) {
			return len(rcv.received()) == 30 && o.Stats().Queued == 0, fmt.Sprint(len(rcv.received()))
		})
		for _, s := range senders {
			if got := rcv.idsOf(s); !slices.Equal(got, want[s]) {
				t.Errorf("%s received %v, want %v", s, got, want[s])
			}
		}
	})
}

// One session whose receiver side keeps failing blocks only its own later
// events; other sessions' events are delivered meanwhile.
func TestFailingSessionDoesNotBlockOthers(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		rcv.setAnswer(func(ev sessions.Event) int {
			if ev.SenderID == "stuck" {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		o := open(t, testOptions(dir, rcv.srv.URL))
		want := publishAll(t, o, 5, "stuck", "alice", "bob")
		// A 2xx is recorded a little after the receiver has the event: wait
		// for the records too.
		waitFor(t, 10*time.Second, "the other sessions' events, and stuck's head retried", func() (bool, string) {
			f, p := list(t, o, sessions.DeliveryFailed), list(t, o, sessions.DeliveryPending)
			return len(rcv.received()) == 10 && len(f) == 1 && f[0].Attempts >= 2 && len(p) == 4, fmt.Sprint(len(rcv.received()), f, len(p))
		})
		for _, s := range []string{"alice", "bob"} {
			if got := rcv.idsOf(s); !slices.Equal(got, want[s]) {
				t.Errorf("%s received %v, want %v", s, got, want[s])
			}
		}
		// stuck's head is retried; the rest wait behind it, never tried.
		failed := list(t, o, sessions.DeliveryFailed)
		if len(failed) != 1 || failed[0].EventID != want["stuck"][0] {
			t.Errorf("failed: %+v, want stuck's first event retried", failed)
		}
		pending := list(t, o, sessions.DeliveryPending)
		if len(pending) != 4 {
			t.Errorf("%d pending, want stuck's 4 later events", len(pending))
		}
		for _, d := range pending {
			if d.SenderID != "stuck" || d.Attempts != 0 {
				t.Errorf("pending %+v", d)
			}
		}
	})
}

// 500, then 200: delivered on the second attempt.
func TestServerErrorThenSuccess(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var calls atomic.Int32
		rcv.setAnswer(func(sessions.Event) int {
			if calls.Add(1) == 1 {
				return http.StatusInternalServerError
			}
			return http.StatusOK
		})
		obs := &observer{}
		opts := testOptions(dir, rcv.srv.URL)
		opts.Observer = obs
		o := open(t, opts)
		ev := event("alice", 1)
		publish(t, o, ev)
		waitFor(t, 10*time.Second, "the delivery", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDelivered)) == 1, ""
		})
		d := list(t, o, sessions.DeliveryDelivered)[0]
		if d.Attempts != 2 || d.LastError != "" || d.NextTryAt != nil || d.EventID != ev.ID || d.Endpoint != rcv.srv.URL {
			t.Errorf("delivered %+v", d)
		}
		if got := obs.snapshot(); got.results[webhooks.ResultFailed] != 1 || got.results[webhooks.ResultDelivered] != 1 || got.depth != 0 || got.maxDepth != 1 {
			t.Errorf("observed %+v", got)
		}
	})
}

// An endpoint slower than WEBHOOK_TIMEOUT is a failed attempt that says
// so; once it answers in time, the delivery is made.
func TestTimeout(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		slow := make(chan struct{})
		var once sync.Once
		fast := func() { once.Do(func() { close(slow) }) }
		t.Cleanup(fast)
		rcv.setAnswer(func(sessions.Event) int {
			select {
			case <-slow:
			case <-time.After(time.Second): // far beyond the timeout
			}
			return http.StatusOK
		})
		opts := testOptions(dir, rcv.srv.URL)
		opts.Timeout = 200 * time.Millisecond
		o := open(t, opts)
		publish(t, o, event("alice", 1))
		waitFor(t, 10*time.Second, "a timed-out attempt", func() (bool, string) {
			f := list(t, o, sessions.DeliveryFailed)
			return len(f) == 1 && f[0].LastError == "no answer within WEBHOOK_TIMEOUT (200ms)", fmt.Sprint(f)
		})
		fast()
		waitFor(t, 10*time.Second, "the delivery", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDelivered)) == 1, ""
		})
		if d := list(t, o, sessions.DeliveryDelivered)[0]; d.Attempts < 2 {
			t.Errorf("delivered after %d attempts, want at least 2", d.Attempts)
		}
	})
}

// A 301 (here to a private address) is not followed: a failed attempt
// with a clear error, and the redirect target never sees a request.
func TestRedirectNotFollowed(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { targetHits.Add(1) }))
	defer target.Close()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusMovedPermanently)
	}))
	defer redirect.Close()
	o := open(t, testOptions(t.TempDir(), redirect.URL))
	publish(t, o, event("alice", 1))
	waitFor(t, 10*time.Second, "a failed attempt", func() (bool, string) {
		return len(list(t, o, sessions.DeliveryFailed)) == 1, ""
	})
	d := list(t, o, sessions.DeliveryFailed)[0]
	if !strings.Contains(d.LastError, "301") || !strings.Contains(d.LastError, "redirects are not followed") {
		t.Errorf("lastError %q", d.LastError)
	}
	if n := targetHits.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

// Without WEBHOOK_ALLOW_PRIVATE, an endpoint whose name resolves to a
// loopback address is refused when connecting (the check is on the
// resolved address: "localhost" is a name), as is a literal private IP.
func TestPrivateTargetsRefused(t *testing.T) {
	rcv := newReceiver(t)
	u, _ := url.Parse(rcv.srv.URL)
	_, port, _ := net.SplitHostPort(u.Host)
	byName := "http://localhost:" + port + "/hook?token=secret-token"
	opts := testOptions(t.TempDir(), byName, rcv.srv.URL)
	opts.AllowPrivate = false
	o := open(t, opts)
	publish(t, o, event("alice", 1))
	waitFor(t, 10*time.Second, "both attempts refused", func() (bool, string) {
		return len(list(t, o, sessions.DeliveryFailed)) == 2, ""
	})
	for _, d := range list(t, o, sessions.DeliveryFailed) {
		if !strings.Contains(d.LastError, "refused to connect to") || !strings.Contains(d.LastError, "loopback") ||
			!strings.Contains(d.LastError, "WEBHOOK_ALLOW_PRIVATE") {
			t.Errorf("%s: lastError %q", d.Endpoint, d.LastError)
		}
		if strings.Contains(d.Endpoint, "secret-token") || strings.Contains(d.LastError, "secret-token") {
			t.Errorf("the URL's query shows: %+v", d)
		}
	}
	if n := rcv.hits.Load(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
}

// A delivery that never succeeds is dead after WEBHOOK_RETRY_FOR; it no
// longer blocks its session's later events; it is listed, and sent again
// by Retry or RetryDead.
func TestDeadRetryAndRetryDead(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var failing sync.Map // event id -> true
		rcv.setAnswer(func(ev sessions.Event) int {
			if _, bad := failing.Load(ev.ID); bad {
				return http.StatusBadGateway
			}
			return http.StatusOK
		})
		obs := &observer{}
		opts := testOptions(dir, rcv.srv.URL)
		// RetryFor is measured from the delivery's creation: on a loaded
		// 2-core CI host the first attempt came 207 ms after it, so a
		// 200 ms window left one attempt. A second gives dozens at the
		// 20 ms backoff and still ends in time.
		opts.RetryFor, opts.Observer = time.Second, obs
		o := open(t, opts)
		ctx := context.Background()

		a1, a2, a3, a4 := event("alice", 1), event("alice", 2), event("alice", 3), event("alice", 4)
		for _, ev := range []sessions.Event{a1, a3, a4} {
			failing.Store(ev.ID, true)
		}
		publish(t, o, a1, a2)
		waitFor(t, 10*time.Second, "a1 dead and a2 delivered after it", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDead)) == 1 && len(list(t, o, sessions.DeliveryDelivered)) == 1, fmt.Sprint(rcv.idsOf("alice"))
		})
		if got := rcv.idsOf("alice"); !slices.Equal(got, []string{a2.ID}) {
			t.Errorf("received %v, want a2 only", got)
		}
		dead := list(t, o, sessions.DeliveryDead)[0]
		if dead.EventID != a1.ID || dead.Attempts < 2 || dead.NextTryAt != nil || dead.LastError != "answered 502 Bad Gateway" {
			t.Errorf("dead %+v", dead)
		}
		if got := obs.snapshot(); got.results[webhooks.ResultDead] != 1 || got.depth != 0 {
			t.Errorf("observed %+v", got)
		}

		// Retry one.
		failing.Delete(a1.ID)
		d, err := o.Retry(ctx, dead.ID)
		if err != nil || d.State != sessions.DeliveryPending {
			t.Fatalf("retry: %+v %v", d, err)
		}
		waitFor(t, 10*time.Second, "a1 delivered after the retry", func() (bool, string) {
			return slices.Equal(rcv.idsOf("alice"), []string{a2.ID, a1.ID}) && len(list(t, o, sessions.DeliveryDelivered)) == 2, fmt.Sprint(rcv.idsOf("alice"))
		})
		if _, err := o.Retry(ctx, dead.ID); !errors.Is(err, sessions.ErrWrongState) {
			t.Errorf("retry of a delivered one: %v", err)
		}
		if _, err := o.Retry(ctx, "dlv_999999"); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("retry of an unknown one: %v", err)
		}
		if _, err := o.Retry(ctx, "nope"); !errors.Is(err, sessions.ErrInvalid) {
			t.Errorf("retry of a bad id: %v", err)
		}

		// Retry every dead one.
		publish(t, o, a3, a4)
		waitFor(t, 10*time.Second, "a3 and a4 dead", func() (bool, string) {
			return len(list(t, o, sessions.DeliveryDead)) == 2, ""
		})
		failing.Clear()
		if n, err := o.RetryDead(ctx); err != nil || n != 2 {
			t.Fatalf("retry dead: %d %v", n, err)
		}
		waitFor(t, 10*time.Second, "every event", func() (bool, string) {
			return len(rcv.idsOf("alice")) == 4 && o.Stats().Queued == 0, fmt.Sprint(rcv.idsOf("alice"))
		})
		if got := rcv.idsOf("alice"); !slices.Equal(got, []string{a2.ID, a1.ID, a3.ID, a4.ID}) {
			t.Errorf("received %v", got)
		}
		if n, err := o.RetryDead(ctx); err != nil || n != 0 {
			t.Errorf("retry dead with none dead: %d %v", n, err)
		}
	})
}

// List pages through deliveries in a state, oldest first, and refuses bad
// arguments.
func TestList(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		// A receiver that holds every request: the deliveries stay pending.
		hold := make(chan struct{})
		rcv := newReceiver(t)
		rcv.setAnswer(func(sessions.Event) int { <-hold; return http.StatusOK })
		o := open(t, testOptions(dir, rcv.srv.URL))
		defer close(hold)
		for i := range 5 {
			publish(t, o, event(fmt.Sprintf("s%d", i), i))
		}
		ctx := context.Background()
		var all []string
		after := ""
		for {
			page, err := o.List(ctx, sessions.DeliveryPending, after, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, d := range page {
				all = append(all, d.ID)
			}
			after = page[len(page)-1].ID
		}
		if want := []string{"dlv_1", "dlv_2", "dlv_3", "dlv_4", "dlv_5"}; !slices.Equal(all, want) {
			t.Errorf("listed %v, want %v", all, want)
		}
		for _, bad := range []struct {
			state sessions.DeliveryState
			after string
			limit int
		}{
			{"nope", "", 10}, {sessions.DeliveryDead, "x", 10}, {sessions.DeliveryDead, "", 0}, {sessions.DeliveryDead, "", webhooks.MaxListLimit + 1},
		} {
			if _, err := o.List(ctx, bad.state, bad.after, bad.limit); !errors.Is(err, sessions.ErrInvalid) {
				t.Errorf("List(%q, %q, %d): %v, want ErrInvalid", bad.state, bad.after, bad.limit, err)
			}
		}
	})
}

// A restart resumes: deliveries waiting at Close (one of them in flight,
// abandoned) are delivered by the next Open, in order.
func TestRestartResumes(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		rcv := newReceiver(t)
		var down atomic.Bool
		down.Store(true)
		inflight := make(chan struct{}, 1)
		rcv.setAnswer(func(ev sessions.Event) int {
			if down.Load() {
				if ev.SenderID == "bob" {
					select {
					case inflight <- struct{}{}:
					default:
					}
					time.Sleep(300 * time.Millisecond) // in flight when Close comes
				}
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		})
		opts := testOptions(dir, rcv.srv.URL)
		o, err := openStore(opts)
		if err != nil {
			t.Fatal(err)
		}
		want := publishAll(t, o, 5, "alice", "bob")
		<-inflight
		closeOutbox(t, o)
		if n := len(rcv.received()); n != 0 {
			t.Fatalf("%d received before the restart", n)
		}
		// Reopened while the receiver still answers 503, so that no
		// delivery can end before the queue depth is read.
		o = open(t, opts)
		if q := o.Stats().Queued; q != 10 {
			t.Errorf("queue depth after reopening: %d, want 10", q)
		}
		down.Store(false)
		// An attempt the closed outbox abandoned may still reach the
		// receiver after down flips (its request was on the wire): at
		// least once, so a session's head may arrive twice, with the same
		// webhook-id. Nothing else may.
		waitFor(t, 10*time.Second, "every event after the restart", func() (bool, string) {
			n := len(rcv.firstIDsOf("alice")) + len(rcv.firstIDsOf("bob"))
			return n == 10, fmt.Sprint(n)
		})
		for _, s := range []string{"alice", "bob"} {
			if got := rcv.firstIDsOf(s); !slices.Equal(got, want[s]) {
				t.Errorf("%s received %v, want %v", s, got, want[s])
			}
			if dup := rcv.duplicatesOf(s); len(dup) > 0 && !slices.Equal(dup, want[s][:1]) {
				t.Errorf("%s received %v twice; only its head was in flight at Close", s, dup)
			}
		}
	})
}

// Only the event types asked for are delivered, to every endpoint.
func TestEventsFilterAndEndpoints(t *testing.T) {
	eachStore(t, func(t *testing.T, dir string) {
		r1, r2 := newReceiver(t), newReceiver(t)
		opts := testOptions(dir, r1.srv.URL, r2.srv.URL)
		opts.Events = []sessions.EventType{sessions.EventMessageReceived}
		o := open(t, opts)
		state := event("alice", 1)
		state.Type, state.ID = sessions.EventSessionState, "st_1"
		msg := event("alice", 2)
		publish(t, o, state, msg)
		for _, r := range []*receiver{r1, r2} {
			waitFor(t, 10*time.Second, "the message event", func() (bool, string) {
				return len(r.received()) == 1, ""
			})
			if got := r.idsOf("alice"); !slices.Equal(got, []string{msg.ID}) {
				t.Errorf("received %v, want only the message", got)
			}
		}
	})
}

// observer records what the outbox reports.
type observer struct {
	mu  sync.Mutex
	obs observed
}

type observed struct {
	results         map[string]int
	depth, maxDepth int
}

func (o *observer) WebhookAttempt(result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.obs.results == nil {
		o.obs.results = map[string]int{}
	}
	o.obs.results[result]++
}

func (o *observer) WebhookQueueDepth(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.obs.depth, o.obs.maxDepth = n, max(o.obs.maxDepth, n)
}

func (o *observer) snapshot() observed {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.obs
}
