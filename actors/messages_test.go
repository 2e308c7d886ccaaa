package actors_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// testSink keeps every event published to it and reports each committed.
type testSink struct {
	mu     sync.Mutex
	events []sessions.Event
}

func (s *testSink) Publish(evs []sessions.Event, done func(error)) {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	s.mu.Unlock()
	if done != nil {
		done(nil)
	}
}

func (s *testSink) published() []sessions.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sessions.Event(nil), s.events...)
}

// messaging is a harness whose manager has metrics, a sink and an
// idempotency store (at idemPath, or a new one).
type messaging struct {
	*harness
	sink    *testSink
	reg     *prometheus.Registry
	idem    *idempotency.Store
	counter *prometheus.CounterVec
}

func newMessaging(t *testing.T, idemPath string) *messaging {
	t.Helper()
	if idemPath == "" {
		idemPath = filepath.Join(t.TempDir(), idempotency.File)
	}
	idem, err := idempotency.Open(idemPath, idempotency.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idem.Close() })
	m := &messaging{sink: &testSink{}, reg: prometheus.NewRegistry(), idem: idem}
	met := metrics.New(m.reg)
	m.harness = newHarness(t, func(o *actors.Options) {
		o.Metrics, o.Sink, o.Idempotency = met, m.sink, idem
	})
	return m
}

// messages is session id's whatsapp_session_messages_total{direction}.
func (m *messaging) messages(id string, d sessions.Direction) float64 {
	m.t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		m.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "whatsapp_session_messages_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["session"] == id && labels["direction"] == string(d) {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestSendAnswersOnceSentAndCounts(t *testing.T) {
	m := newMessaging(t, "")
	m.connected("alice")
	ctx := context.Background()
	sent, err := m.mgr.Send(ctx, "alice", sessions.SendRequest{To: "+4915112345678", Text: "hello", ReplyTo: "3EB0AA"})
	if err != nil {
		t.Fatal(err)
	}
	if sent.ID == "" || !sent.Timestamp.Equal(sentAt) {
		t.Errorf("answer %+v", sent)
	}
	out := m.opener.sentMessages()
	if len(out) != 1 || out[0].To != "+4915112345678" || out[0].Text != "hello" || out[0].ReplyTo != "3EB0AA" || out[0].ID != sent.ID {
		t.Errorf("sent %+v", out)
	}
	if n := m.messages("alice", sessions.DirectionOut); n != 1 {
		t.Errorf("messages out = %v, want 1", n)
	}
	// A received message (committed by the client) counts in.
	m.opener.last("alice").emit(whatsapp.MessageReceived{})
	eventually(t, func() bool { return m.messages("alice", sessions.DirectionIn) == 1 }, "messages in to be 1")
}

// The manager remembers a forwarded command until the actor must have read
// it, to fail it if the actor stops first. It must not keep the asker's
// context (for a send through the API, the whole HTTP request) or the
// payload alive meanwhile: after a burst of sends, those kept per session
// were scattered among the burst's garbage, and each pinned its heap span.
func TestAnsweredSendIsNotKeptAlive(t *testing.T) {
	m := newMessaging(t, "")
	m.connected("alice")
	type asker struct{ _ [256]byte }
	collected := make(chan struct{})
	send := func() {
		a := &asker{}
		runtime.AddCleanup(a, func(struct{}) { close(collected) }, struct{}{})
		ctx := context.WithValue(context.Background(), asker{}, a)
		if _, err := m.mgr.Send(ctx, "alice", sessions.SendRequest{To: "+4915112345678", Text: "hello"}); err != nil {
			t.Fatal(err)
		}
	}
	send()
	eventually(t, func() bool {
		runtime.GC()
		select {
		case <-collected:
			return true
		default:
			return false
		}
	}, "the answered send's context to be collected")
}

func TestSendErrors(t *testing.T) {
	m := newMessaging(t, "")
	m.connected("alice")
	m.stored("unpaired", false)
	m.restore()
	m.waitState("unpaired", sessions.StateNeedsPairing)
	ok := sessions.SendRequest{To: "+4915112345678", Text: "hi"}
	tests := []struct {
		name string
		id   string
		req  sessions.SendRequest
		want error
	}{
		{"not connected", "unpaired", ok, sessions.ErrWrongState},
		{"unknown session", "nobody", ok, sessions.ErrNotFound},
		{"bad session id", "../x", ok, store.ErrInvalidID},
		{"bad recipient", "alice", sessions.SendRequest{To: "bob", Text: "hi"}, sessions.ErrInvalid},
		{"group recipient", "alice", sessions.SendRequest{To: "123-456@g.us", Text: "hi"}, sessions.ErrInvalid},
		{"not on WhatsApp", "alice", sessions.SendRequest{To: "+9991234567", Text: "hi"}, sessions.ErrNoRecipient},
		{"empty text", "alice", sessions.SendRequest{To: "+4915112345678"}, sessions.ErrInvalid},
		{"oversized text", "alice", sessions.SendRequest{To: "+4915112345678", Text: strings.Repeat("x", sessions.MaxTextLength+1)}, sessions.ErrInvalid},
		{"bad key", "alice", sessions.SendRequest{To: "+4915112345678", Text: "hi", IdempotencyKey: "tab\t"}, sessions.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.mgr.Send(context.Background(), tt.id, tt.req)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Send = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "9991234567") || strings.Contains(err.Error(), "15112345678") {
				t.Errorf("error %q names the recipient", err)
			}
		})
	}
	if n := len(m.opener.sentMessages()); n != 0 {
		t.Errorf("%d messages went out", n)
	}
	if n := m.messages("alice", sessions.DirectionOut); n != 0 {
		t.Errorf("messages out = %v, want 0", n)
	}
	// A send WhatsApp refuses is ErrWhatsApp.
	m.opener.mu.Lock()
	m.opener.sendErr = sessions.Errorf(sessions.ErrWhatsApp, "refused")
	m.opener.mu.Unlock()
	if _, err := m.mgr.Send(context.Background(), "alice", ok); !errors.Is(err, sessions.ErrWhatsApp) {
		t.Errorf("refused send: %v", err)
	}
}

func TestIdempotentSendSendsOnceAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), idempotency.File)
	ctx := context.Background()
	req := sessions.SendRequest{To: "+4915112345678", Text: "pay 10 EUR", IdempotencyKey: "order-42"}

	m := newMessaging(t, path)
	m.connected("alice")
	first, err := m.mgr.Send(ctx, "alice", req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.mgr.Send(ctx, "alice", req)
	if err != nil || again != first {
		t.Fatalf("retry = %+v, %v; want the first answer %+v", again, err, first)
	}
	other := req
	other.Text = "pay 100 EUR"
	if _, err := m.mgr.Send(ctx, "alice", other); !errors.Is(err, sessions.ErrKeyReused) {
		t.Fatalf("the key with another request: %v, want ErrKeyReused", err)
	}
	if n := len(m.opener.sentMessages()); n != 1 {
		t.Fatalf("%d messages sent, want 1", n)
	}

	// A duplicate while the first send runs is refused, not sent.
	m.opener.mu.Lock()
	gate := make(chan struct{})
	m.opener.sendGate = gate
	m.opener.mu.Unlock()
	slow := req
	slow.IdempotencyKey = "order-43"
	done := make(chan error, 1)
	go func() {
		_, err := m.mgr.Send(ctx, "alice", slow)
		done <- err
	}()
	begun := m.opener.sending.Load()
	eventually(t, func() bool { return m.opener.sending.Load() > begun }, "the first send to be under way")
	if _, err := m.mgr.Send(ctx, "alice", slow); !errors.Is(err, sessions.ErrKeyInProgress) {
		t.Errorf("a duplicate while the first send runs: %v, want ErrKeyInProgress", err)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A send that failed is tried again, with the same message id.
	m.opener.mu.Lock()
	m.opener.sendGate = nil
	m.opener.sendErr = errors.New("network")
	m.opener.mu.Unlock()
	failing := req
	failing.IdempotencyKey = "order-44"
	if _, err := m.mgr.Send(ctx, "alice", failing); err == nil {
		t.Fatal("the failing send succeeded")
	}
	m.opener.mu.Lock()
	m.opener.sendErr = nil
	m.opener.mu.Unlock()
	if _, err := m.mgr.Send(ctx, "alice", failing); err != nil {
		t.Fatal(err)
	}
	if err := m.idem.Close(); err != nil {
		t.Fatal(err)
	}

	// A crash between recording a send and its answer: the send after the
	// restart carries the recorded id.
	crashed, err := idempotency.Open(path, idempotency.Options{})
	if err != nil {
		t.Fatal(err)
	}
	crash := req
	crash.IdempotencyKey = "order-45"
	if _, err := crashed.Begin(ctx, "alice", crash, func() string { return "3EB0CRASHED" }); err != nil {
		t.Fatal(err)
	}
	crashed.Close()

	// The service restarts: the answers are still there.
	m2 := newMessaging(t, path)
	m2.connected("alice")
	after, err := m2.mgr.Send(ctx, "alice", req)
	if err != nil || after.ID != first.ID || !after.Timestamp.Equal(first.Timestamp) {
		t.Fatalf("retry after a restart = %+v, %v; want %+v", after, err, first)
	}
	if n := len(m2.opener.sentMessages()); n != 0 {
		t.Fatalf("the retry after a restart sent %d messages", n)
	}
	resent, err := m2.mgr.Send(ctx, "alice", crash)
	if err != nil || resent.ID != "3EB0CRASHED" {
		t.Fatalf("retry of a send cut by a crash = %+v, %v; want id 3EB0CRASHED", resent, err)
	}
}

func TestMarkRead(t *testing.T) {
	m := newMessaging(t, "")
	m.connected("alice")
	ctx := context.Background()
	if err := m.mgr.MarkRead(ctx, "alice", sessions.ReadRequest{ID: "3EB0FF", Chat: "4915112345678@s.whatsapp.net"}); err != nil {
		t.Fatal(err)
	}
	m.opener.mu.Lock()
	read := strings.Join(m.opener.read, ",")
	m.opener.mu.Unlock()
	if read != "3EB0FF" {
		t.Errorf("read %q", read)
	}
	for _, tt := range []struct {
		id   string
		req  sessions.ReadRequest
		want error
	}{
		{"alice", sessions.ReadRequest{ID: "", Chat: "+4915112345678"}, sessions.ErrInvalid},
		{"alice", sessions.ReadRequest{ID: "3EB0FF", Chat: "nobody"}, sessions.ErrInvalid},
		{"ghost", sessions.ReadRequest{ID: "3EB0FF", Chat: "+4915112345678"}, sessions.ErrNotFound},
	} {
		if err := m.mgr.MarkRead(ctx, tt.id, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("MarkRead(%s, %+v) = %v, want %v", tt.id, tt.req, err, tt.want)
		}
	}
	if _, err := m.mgr.Stop(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := m.mgr.MarkRead(ctx, "alice", sessions.ReadRequest{ID: "3EB0FF", Chat: "+4915112345678"}); !errors.Is(err, sessions.ErrWrongState) {
		t.Errorf("stopped session: %v, want ErrWrongState", err)
	}
}

var stateID = regexp.MustCompile(`^st_[0-9a-f]{32}$`)

func TestStateChangesBecomeEvents(t *testing.T) {
	m := newMessaging(t, "")
	m.connected("alice")
	if _, err := m.mgr.Stop(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	var states []sessions.State
	seen := map[string]bool{}
	var last *sessions.Status
	for _, ev := range m.sink.published() {
		if ev.Type != sessions.EventSessionState || ev.SenderID != "alice" || !stateID.MatchString(ev.ID) || seen[ev.ID] {
			t.Fatalf("event %+v", ev)
		}
		seen[ev.ID] = true
		var st sessions.Status
		if err := json.Unmarshal(ev.Data, &st); err != nil {
			t.Fatal(err)
		}
		// The same status, whatever its since, is one state change.
		if last != nil {
			if prev := *last; func() bool { prev.Since = st.Since; return reflect.DeepEqual(prev, st) }() {
				t.Errorf("the same status announced twice: %s", ev.Data)
			}
		}
		last = &st
		if len(states) == 0 || states[len(states)-1] != st.State {
			states = append(states, st.State)
		}
	}
	got := make([]string, len(states))
	for i, s := range states {
		got[i] = string(s)
	}
	if want := "restoring,connecting,connected,stopped"; strings.Join(got, ",") != want {
		t.Errorf("states announced %v, want %s", got, want)
	}
}

var deletedID = regexp.MustCompile(`^del_[0-9a-f]{32}$`)

// A deleted session, running, stopped or only on disk, is announced once
// as session.deleted after its last state; a refused delete announces
// nothing; a session created again under the same id is announced anew.
func TestDeletionsBecomeEvents(t *testing.T) {
	m := newMessaging(t, "")
	ctx := context.Background()
	m.connected("alice")
	m.stored("bob", true)
	m.restore()
	m.waitState("bob", sessions.StateConnected)
	if _, err := m.mgr.Stop(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	m.stored("carol", false) // on disk, never restored
	for _, id := range []string{"alice", "bob", "carol"} {
		before := time.Now()
		if err := m.mgr.Delete(ctx, id); err != nil {
			t.Fatalf("delete %s: %v", id, err)
		}
		// Published before Delete answered.
		evs := m.sink.published()
		ev := evs[len(evs)-1]
		var d sessions.DeletedData
		if err := json.Unmarshal(ev.Data, &d); err != nil || ev.Type != sessions.EventSessionDeleted || ev.SenderID != id ||
			!deletedID.MatchString(ev.ID) || d.SenderID != id || d.DeletedAt.Before(before) || d.DeletedAt.After(time.Now()) ||
			!d.DeletedAt.Equal(ev.Timestamp) {
			t.Errorf("after deleting %s, the last event is %+v (%s): %v", id, ev, ev.Data, err)
		}
	}
	n := len(m.sink.published())
	if err := m.mgr.Delete(ctx, "alice"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("delete alice again: %v", err)
	}
	if got := len(m.sink.published()); got != n {
		t.Errorf("a refused delete published %d events", got-n)
	}
	var deleted []string
	for _, ev := range m.sink.published() {
		if ev.Type == sessions.EventSessionDeleted {
			deleted = append(deleted, ev.SenderID)
		}
	}
	if want := "alice,bob,carol"; strings.Join(deleted, ",") != want {
		t.Errorf("deletions announced %v, want %s", deleted, want)
	}
	// alice again: her first state is announced, although it may equal
	// one announced before the delete.
	if _, err := m.mgr.Create(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		evs := m.sink.published()
		return len(evs) > n && evs[n].Type == sessions.EventSessionState && evs[n].SenderID == "alice"
	}, "a state event for the new alice")
}
