package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// nextEvent reads the next event of s, failing the test on an error.
func nextEvent(t *testing.T, s *client.EventStream) client.StreamEvent {
	t.Helper()
	ev, err := s.Next()
	if err != nil {
		t.Fatalf("event stream after %s: %v", s.LastEventID(), err)
	}
	return ev
}

// stateOf decodes a session.state event.
func stateOf(t *testing.T, ev client.StreamEvent) sessions.Status {
	t.Helper()
	if ev.Type != string(sessions.EventSessionState) {
		t.Fatalf("event %s: type %s, want session.state (%s)", ev.ID, ev.Type, ev.Data)
	}
	st, err := ev.Status()
	if err != nil {
		t.Fatalf("event %s: %v", ev.ID, err)
	}
	return st
}

// deletedOn reads s up to the session.deleted event about id, which only
// id's session.state events may precede, and checks its envelope; it
// returns the event and its envelope.
func deletedOn(t *testing.T, s *client.EventStream, id string) (client.StreamEvent, sessions.Event) {
	t.Helper()
	for {
		ev := nextEvent(t, s)
		if ev.Type == string(sessions.EventSessionState) {
			if st := stateOf(t, ev); st.SenderID != id {
				t.Fatalf("a state of %s while waiting for %s's deletion", st.SenderID, id)
			}
			continue
		}
		env, err := ev.Event()
		var d sessions.DeletedData
		if err == nil {
			err = json.Unmarshal(env.Data, &d)
		}
		if ev.Type != string(sessions.EventSessionDeleted) || err != nil || env.Type != sessions.EventSessionDeleted ||
			env.SenderID != id || d.SenderID != id || time.Since(d.DeletedAt) > time.Minute || !strings.HasPrefix(env.ID, "del_") {
			t.Fatalf("event %s %s %s, want %s's session.deleted: %v", ev.ID, ev.Type, ev.Data, id, err)
		}
		return ev, env
	}
}

// Through the real service in test mode: a stream sees a new session's
// states up to connected, in order, each as GET .../status shows it; a
// stream reopened with Last-Event-ID gets exactly what it missed, then
// the live events; a deleted session's streams and the webhook receiver
// get a session.deleted event; an unknown id gets a reset; a filtered
// stream sees its session only; and the streams end when the service
// stops, without holding its shutdown.
func TestEventStreamThroughTheService(t *testing.T) {
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rcv := e2e.NewReceiver(t, secret)
	cfg := e2e.Config(t.TempDir(), nil)
	cfg.WebhookURL, cfg.WebhookSecret = rcv.URL, secret
	svc := e2e.Start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := client.New(svc.Base, svc.Config.APIKey) // no client timeout: it would cut the streams

	ref, err := c.Events(ctx, client.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	first, err := c.Events(ctx, client.EventsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bobOnly, err := c.Events(ctx, client.EventsOptions{SenderIDs: []string{"bob"}})
	if err != nil {
		t.Fatal(err)
	}
	defer bobOnly.Close()

	svc.Pair("alice")
	var states []sessions.State
	var last sessions.Status
	var seen []client.StreamEvent // what ref saw
	for last.State != sessions.StateConnected {
		ev := nextEvent(t, first)
		if r := nextEvent(t, ref); r.ID != ev.ID || string(r.Data) != string(ev.Data) {
			t.Fatalf("two streams differ: %s %s / %s %s", ev.ID, ev.Data, r.ID, r.Data)
		}
		seen = append(seen, ev)
		st := stateOf(t, ev)
		if st.SenderID != "alice" {
			t.Fatalf("event about %s, only alice exists", st.SenderID)
		}
		if st.Since.Before(last.Since) {
			t.Errorf("since went back: %s after %s", st.Since, last.Since)
		}
		states, last = append(states, st.State), st
	}
	t.Logf("alice's states on the stream: %v", states)
	if !slices.Contains(states, sessions.StatePairing) {
		t.Errorf("states %v: no pairing before connected", states)
	}
	for i := 1; i < len(seen); i++ {
		a, _ := strconv.ParseUint(seen[i-1].ID, 10, 64)
		b, _ := strconv.ParseUint(seen[i].ID, 10, 64)
		if b <= a {
			t.Errorf("ids not increasing: %s then %s", seen[i-1].ID, seen[i].ID)
		}
	}
	if now := svc.Status("alice"); now.State != last.State || !now.Since.Equal(last.Since) || now.Connected != last.Connected {
		t.Errorf("last event %s, GET status %s", e2e.Show(last), e2e.Show(now))
	}

	// first goes away; alice stops and starts again (no scan: paired)
	// while ref watches.
	lastID := first.LastEventID()
	first.Close()
	if _, err := c.Stop(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("alice", sessions.StateStopped, e2e.Wait)
	if _, _, err := c.Create(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	var missed []client.StreamEvent
	for st := (sessions.Status{}); st.State != sessions.StateConnected; {
		ev := nextEvent(t, ref)
		missed = append(missed, ev)
		st = stateOf(t, ev)
	}
	again, err := c.Events(ctx, client.EventsOptions{LastEventID: lastID})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	for i, want := range missed {
		got := nextEvent(t, again)
		if got.ID != want.ID || got.Type != want.Type || string(got.Data) != string(want.Data) {
			t.Fatalf("replayed event %d: %s %s %s, want %s %s %s", i, got.ID, got.Type, got.Data, want.ID, want.Type, want.Data)
		}
	}
	// Then live, with nothing extra in between: bob's first event is the
	// next on both, and the only kind bobOnly ever sees.
	svc.StartPairing("bob")
	want := nextEvent(t, ref)
	if got := nextEvent(t, again); got.ID != want.ID || stateOf(t, got).SenderID != "bob" {
		t.Errorf("after the replay: %s %s, want bob's %s", got.ID, got.Data, want.ID)
	}
	if got := nextEvent(t, bobOnly); got.ID != want.ID {
		t.Errorf("senderId=bob: %s %s, want %s", got.ID, got.Data, want.ID)
	}
	if n := svc.Metric("whatsapp_events_stream_clients"); n != 3 {
		t.Errorf("whatsapp_events_stream_clients %v, want 3 (ref, bobOnly, again)", n)
	}

	// bob is deleted: every stream that shows bob says so, after his
	// last state, and so does the webhook.
	if err := c.Delete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	del, env := deletedOn(t, ref, "bob")
	for name, s := range map[string]*client.EventStream{"again": again, "bobOnly": bobOnly} {
		if got, _ := deletedOn(t, s, "bob"); got.ID != del.ID || string(got.Data) != string(del.Data) {
			t.Errorf("%s: %s %s, want %s %s", name, got.ID, got.Data, del.ID, del.Data)
		}
	}
	e2e.WaitFor(t, e2e.Wait, "bob's session.deleted delivered", func() (bool, string) {
		got := rcv.Of(sessions.EventSessionDeleted)
		return len(got) == 1 && got[0].Event.ID == env.ID && string(got[0].Event.Data) == string(env.Data), fmt.Sprint(got)
	}, svc.Logs)
	want = del
	// An id this run never gave out (another run's): a reset first.
	old, err := c.Events(ctx, client.EventsOptions{LastEventID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, old)
	newest, _ := strconv.ParseUint(ev.ID, 10, 64)
	if last, _ := strconv.ParseUint(want.ID, 10, 64); ev.Type != "reset" || string(ev.Data) != "{}" || newest < last {
		t.Errorf("Last-Event-ID 1: %s %s %s, want a reset with the newest id (at least %s)", ev.ID, ev.Type, ev.Data, want.ID)
	}
	old.Close()

	start := time.Now()
	svc.Stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s with streams open", took)
	}
	for {
		if _, err := ref.Next(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Errorf("the stream ended with %v, want EOF", err)
			}
			break
		}
	}
}
