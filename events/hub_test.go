package events_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// first is the tests' first sequence number.
const first = 100

// state is a session.state event about id with a unique event id.
func state(id string, n int) sessions.Event {
	return sessions.Event{Type: sessions.EventSessionState, ID: fmt.Sprintf("st_%s_%d", id, n), SenderID: id,
		Timestamp: time.Unix(int64(n), 0).UTC(), Data: json.RawMessage(fmt.Sprintf(`{"senderId":%q,"n":%d}`, id, n))}
}

// deleted is the session.deleted event about id.
func deleted(id string) sessions.Event {
	return sessions.Event{Type: sessions.EventSessionDeleted, ID: "del_" + id, SenderID: id, Timestamp: time.Unix(9, 0).UTC(),
		Data: json.RawMessage(fmt.Sprintf(`{"senderId":%q,"deletedAt":"1970-01-01T00:00:09Z"}`, id))}
}

// seqs lists evs' sequence numbers.
func seqs(evs []events.Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		out = append(out, ev.Seq)
	}
	return out
}

// counter is an Observer.
type counter struct {
	mu      sync.Mutex
	clients int
	dropped int
}

func (c *counter) StreamClients(n int) { c.mu.Lock(); c.clients = n; c.mu.Unlock() }
func (c *counter) StreamDropped()      { c.mu.Lock(); c.dropped++; c.mu.Unlock() }

func newHub(t *testing.T, opts events.Options) *events.Hub {
	t.Helper()
	if opts.FirstSeq == 0 {
		opts.FirstSeq = first
	}
	h := events.New(opts)
	t.Cleanup(h.Close)
	return h
}

func subscribe(t *testing.T, h *events.Hub, ids []string, last string) *events.Subscription {
	t.Helper()
	s, err := h.Subscribe(ids, last)
	if err != nil {
		t.Fatalf("Subscribe(%v, %q): %v", ids, last, err)
	}
	t.Cleanup(s.Close)
	return s
}

// receive takes n events from s, failing after a deadline.
func receive(t *testing.T, s *events.Subscription, n int) []events.Event {
	t.Helper()
	var out []events.Event
	deadline := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case <-s.Ready():
			var open bool
			if out, open = s.Take(out, n-len(out)); !open {
				t.Fatalf("subscription ended after %d of %d events", len(out), n)
			}
		case <-deadline:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	return out
}

// waiting is every event s can take now.
func waiting(t *testing.T, s *events.Subscription) []events.Event {
	t.Helper()
	evs, open := s.Take(nil, 1<<30)
	if !open {
		t.Fatal("subscription ended")
	}
	return evs
}

// The ring keeps the newest Size events across its wrap-around, and a
// Last-Event-ID replays exactly those after it, or resets when the ring
// lost some of them.
func TestRingWrapAroundAndReplay(t *testing.T) {
	h := newHub(t, events.Options{Size: 5})
	for i := range 12 { // seqs 100..111; the ring keeps 107..111
		h.Add(state("a", i))
	}
	for _, tc := range []struct {
		last  string
		reset bool
		want  []uint64
	}{
		{last: "106", want: []uint64{107, 108, 109, 110, 111}},
		{last: "109", want: []uint64{110, 111}},
		{last: "111", want: nil},
		{last: "105", reset: true}, // 106 is gone
		{last: "0", reset: true},   // another run's
		{last: "112", reset: true}, // never given out: another run's
		{last: "99999999999", reset: true},
		{last: "abc", reset: true},
		{last: "-1", reset: true},
		{last: "", want: nil}, // live
	} {
		t.Run(tc.last, func(t *testing.T) {
			s := subscribe(t, h, nil, tc.last)
			if replay := waiting(t, s); s.Reset != tc.reset || !slices.Equal(seqs(replay), tc.want) {
				t.Errorf("reset %v, replay %v; want %v, %v", s.Reset, seqs(replay), tc.reset, tc.want)
			}
			if s.Newest != 111 {
				t.Errorf("newest %d, want 111", s.Newest)
			}
		})
	}
	// The replayed events are the ones added, in order.
	s := subscribe(t, h, nil, "108")
	for i, ev := range waiting(t, s) {
		var d struct{ N int }
		if err := json.Unmarshal(ev.Data, &d); err != nil || d.N != 9+i || ev.Type != sessions.EventSessionState || ev.SenderID != "a" {
			t.Errorf("replay %d: %+v (%s)", i, ev, ev.Data)
		}
	}
}

// A fresh hub covers the number just before its first; live events follow
// a replay without a gap or a repeat.
func TestEmptyRingAndLiveAfterReplay(t *testing.T) {
	h := newHub(t, events.Options{Size: 10})
	s := subscribe(t, h, nil, strconv.Itoa(first-1))
	if replay := waiting(t, s); s.Reset || len(replay) != 0 || s.Newest != first-1 {
		t.Fatalf("fresh hub: reset %v replay %d newest %d", s.Reset, len(replay), s.Newest)
	}
	if s := subscribe(t, h, nil, strconv.Itoa(first-2)); !s.Reset {
		t.Error("a number below the first one is another run's: want a reset")
	}
	h.Add(state("a", 1), state("a", 2))
	s2 := subscribe(t, h, nil, strconv.Itoa(first))
	h.Add(state("a", 3))
	if got := seqs(receive(t, s2, 2)); !slices.Equal(got, []uint64{101, 102}) {
		t.Errorf("replay then live: %v", got)
	}
	if got := seqs(receive(t, s, 3)); !slices.Equal(got, []uint64{100, 101, 102}) {
		t.Errorf("live: %v", got)
	}
}

// A filter keeps only the sessions named, in replay and live.
func TestFilter(t *testing.T) {
	h := newHub(t, events.Options{})
	h.Add(state("a", 1), state("b", 1), state("c", 1))
	s := subscribe(t, h, []string{"a", "c"}, strconv.Itoa(first-1))
	h.Add(state("b", 2), state("c", 2))
	got := receive(t, s, 3)
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.SenderID)
	}
	if !slices.Equal(ids, []string{"a", "c", "c"}) || !slices.Equal(seqs(got), []uint64{100, 102, 104}) {
		t.Errorf("filtered: %v %v", ids, seqs(got))
	}
	if more := waiting(t, s); len(more) > 0 {
		t.Errorf("unexpected %+v", more)
	}
}

// A redelivered event (same id) is kept once while the ring holds it, and
// its envelope is the data of a message or deletion event.
func TestDuplicatesAndEnvelopes(t *testing.T) {
	h := newHub(t, events.Options{Size: 2})
	msg := sessions.Event{Type: sessions.EventMessageReceived, ID: "msg_1", SenderID: "a", Data: json.RawMessage(`{"text": "hi"}`)}
	s := subscribe(t, h, nil, "")
	h.Add(msg, msg)
	h.Add(msg)
	got := receive(t, s, 1)
	h.Add(state("a", 1), state("a", 2)) // msg_1 leaves the ring
	got = append(got, receive(t, s, 2)...)
	h.Add(msg) // not recognised any more: kept again
	got = append(got, receive(t, s, 1)...)
	if !slices.Equal(seqs(got), []uint64{100, 101, 102, 103}) {
		t.Errorf("seqs %v", seqs(got))
	}
	var env sessions.Event
	if err := json.Unmarshal(got[0].Data, &env); err != nil || env.ID != "msg_1" || env.Type != sessions.EventMessageReceived || string(env.Data) != `{"text":"hi"}` {
		t.Errorf("message data %s: %v", got[0].Data, err)
	}
	if string(got[1].Data) != `{"senderId":"a","n":1}` {
		t.Errorf("state data %s: want the status itself", got[1].Data)
	}
	// A deletion's data is its envelope too.
	h.Add(deleted("a"))
	del := receive(t, s, 1)[0]
	var d sessions.DeletedData
	if err := json.Unmarshal(del.Data, &env); err != nil || env.Type != sessions.EventSessionDeleted || env.ID != "del_a" || env.SenderID != "a" ||
		json.Unmarshal(env.Data, &d) != nil || d.SenderID != "a" || !d.DeletedAt.Equal(time.Unix(9, 0)) || del.Type != sessions.EventSessionDeleted {
		t.Errorf("deletion %s %s: %v", del.Type, del.Data, err)
	}
}

// The ring recognises a redelivery without keeping the event's id: an id
// kept per event was one more small object left scattered through the heap
// after a burst. The event itself stays in the ring.
func TestRingDoesNotKeepEventIDs(t *testing.T) {
	h := newHub(t, events.Options{})
	collected := make(chan struct{})
	id := strings.Clone("msg_kept_once") // an allocation of its own
	runtime.AddCleanup(unsafe.StringData(id), func(struct{}) { close(collected) }, struct{}{})
	h.Add(sessions.Event{Type: sessions.EventMessageReceived, ID: id, SenderID: "a", Data: json.RawMessage(`{}`)})
	id = ""
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-collected:
		case <-time.After(10 * time.Millisecond):
			if time.Now().Before(deadline) {
				continue
			}
			t.Fatal("the event's id is still kept 10 s after it was added")
		}
		break
	}
	s := subscribe(t, h, nil, "")
	h.Add(sessions.Event{Type: sessions.EventMessageReceived, ID: "msg_kept_once", SenderID: "a", Data: json.RawMessage(`{}`)})
	h.Add(state("a", 1))
	if got := receive(t, s, 1); len(got) != 1 || got[0].Type != sessions.EventSessionState {
		t.Errorf("after a redelivery: %+v, want only the state event", got)
	}
}

// A subscriber that falls more than MaxLag events behind is cut off and
// counted; the others, and Add, carry on; it costs nothing while behind.
func TestSlowSubscriberIsCutOff(t *testing.T) {
	obs := &counter{}
	h := newHub(t, events.Options{MaxLag: 3, Observer: obs})
	slow := subscribe(t, h, nil, "")
	fast := subscribe(t, h, nil, "")
	if obs.clients != 2 {
		t.Errorf("clients %d, want 2", obs.clients)
	}
	for i := range 10 {
		h.Add(state("a", i))
		if got := receive(t, fast, 1); got[0].Seq != uint64(first+i) {
			t.Fatalf("fast got %d, want %d", got[0].Seq, first+i)
		}
		if cut := slow.Dropped(); cut != (i >= 3) {
			t.Fatalf("after %d events behind: dropped %v", i+1, cut)
		}
	}
	select {
	case <-slow.Ready():
	default:
		t.Error("the cut-off subscriber was not woken")
	}
	if evs, open := slow.Take(nil, 100); open || len(evs) > 0 {
		t.Errorf("after the cut: %d events, open %v", len(evs), open)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.dropped != 1 || obs.clients != 1 || h.Clients() != 1 {
		t.Errorf("dropped %d, clients %d (hub %d); want 1, 1", obs.dropped, obs.clients, h.Clients())
	}
	slow.Close() // after the cut, harmless
}

// MaxLag is at most the ring: a subscriber is cut off before the ring
// drops an event it has not read.
func TestMaxLagIsAtMostTheRing(t *testing.T) {
	h := newHub(t, events.Options{Size: 4, MaxLag: 100})
	s := subscribe(t, h, nil, "")
	for i := range 4 {
		h.Add(state("a", i))
	}
	if s.Dropped() {
		t.Fatal("dropped with the ring still holding everything")
	}
	h.Add(state("a", 4))
	if !s.Dropped() {
		t.Fatal("not dropped once the ring lost an unread event")
	}
}

// Close ends every subscription and refuses new ones; MaxClients caps
// them.
func TestCloseAndMaxClients(t *testing.T) {
	obs := &counter{}
	h := newHub(t, events.Options{MaxClients: 2, Observer: obs})
	a := subscribe(t, h, nil, "")
	subscribe(t, h, nil, "")
	if _, err := h.Subscribe(nil, ""); !errors.Is(err, events.ErrTooManyClients) {
		t.Errorf("third: %v, want ErrTooManyClients", err)
	}
	a.Close()
	a.Close()
	subscribe(t, h, nil, "")
	h.Close()
	if _, open := a.Take(nil, 1); open {
		t.Error("a closed subscription is open")
	}
	if _, err := h.Subscribe(nil, ""); !errors.Is(err, events.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	if obs.clients != 0 || obs.dropped != 0 {
		t.Errorf("after Close: clients %d dropped %d", obs.clients, obs.dropped)
	}
	h.Add(state("a", 1)) // does nothing, does not panic
}

// sink is an EventSink that commits (or fails) what it gets in order, on
// its own goroutine, like the outbox's committer.
type sink struct {
	fail  func(sessions.Event) error
	queue chan func()
	wg    sync.WaitGroup
}

func newSink(t *testing.T, fail func(sessions.Event) error) *sink {
	s := &sink{fail: fail, queue: make(chan func(), 100)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for f := range s.queue {
			f()
		}
	}()
	t.Cleanup(func() { close(s.queue); s.wg.Wait() })
	return s
}

func (s *sink) Publish(evs []sessions.Event, done func(error)) {
	s.queue <- func() {
		var err error
		for _, ev := range evs {
			if err == nil && s.fail != nil {
				err = s.fail(ev)
			}
		}
		done(err)
	}
}

// The feed adds what the outbox committed, in the order it was published,
// and a state or deletion event even when its commit failed, but not a
// message that WhatsApp will deliver again; the publisher hears the
// outbox's answer.
func TestFeed(t *testing.T) {
	h := newHub(t, events.Options{})
	next := newSink(t, func(ev sessions.Event) error {
		if ev.ID == "st_b_1" || ev.ID == "msg_bad" || ev.ID == "del_b" {
			return errors.New("disk full")
		}
		return nil
	})
	feed := h.Feed(next)
	s := subscribe(t, h, nil, "")
	msg := func(id string) sessions.Event {
		return sessions.Event{Type: sessions.EventMessageReceived, ID: id, SenderID: "a", Data: json.RawMessage(`{}`)}
	}
	errs := make(chan error, 10)
	feed.Publish([]sessions.Event{state("a", 1), msg("msg_ok")}, func(err error) { errs <- err })
	feed.Publish([]sessions.Event{state("b", 1)}, func(err error) { errs <- err })
	feed.Publish([]sessions.Event{msg("msg_bad")}, func(err error) { errs <- err })
	feed.Publish([]sessions.Event{state("a", 2)}, nil)
	feed.Publish([]sessions.Event{deleted("b")}, func(err error) { errs <- err })
	got := receive(t, s, 5)
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.SenderID+"/"+string(ev.Type))
	}
	want := []string{"a/session.state", "a/message.received", "b/session.state", "a/session.state", "b/session.deleted"}
	if !slices.Equal(ids, want) {
		t.Errorf("stream %v, want %v", ids, want)
	}
	for i, want := range []bool{true, false, false, false} {
		if err := <-errs; (err == nil) != want {
			t.Errorf("publish %d: done(%v)", i, err)
		}
	}
}
