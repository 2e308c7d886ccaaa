package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/relay"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one node of the test: its outbox in the shared Postgres, its hub
// fed by that outbox (as app wires them), and its relay.
type node struct {
	name string
	hub  *events.Hub
	sink sessions.EventSink
}

// Two nodes on one Postgres, alice's session on node-a and bob's on
// node-b: node-a's stream gets bob's events from node-b, and each
// session's events come once each, in the order they were committed.
func TestEventsOfOtherNodesReachTheStream(t *testing.T) {
	db, _ := pgtest.Start(t).OpenMigrated(t)
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	defer running.Wait()
	defer cancel()

	nodes := map[string]*node{}
	for _, name := range []string{"node-a", "node-b"} {
		o, err := webhooks.OpenPostgres(db, webhooks.Options{Node: name, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			if err := o.Close(cctx); err != nil {
				t.Error(err)
			}
		})
		hub := events.New(events.Options{})
		t.Cleanup(hub.Close)
		n := &node{name: name, hub: hub, sink: hub.Feed(o)}
		nodes[name] = n
		running.Add(1)
		go func() {
			defer running.Done()
			relay.Run(ctx, db, name, hub, slog.New(slog.DiscardHandler))
		}()
	}
	a, b := nodes["node-a"], nodes["node-b"]
	subA, err := a.hub.Subscribe(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()

	// The relays listen once their connections are up: publish on b until
	// a probe arrives at a, then the events proper.
	e2e.WaitFor(t, 10*time.Second, "the relay to listen", func() (bool, string) {
		publish(t, b, event("probe", 0))
		return len(take(subA)) > 0, ""
	})
	want, got := map[string][]string{}, map[string][]string{}
	for i := range 40 {
		sender, on := "alice", a
		if i%3 != 0 {
			sender, on = "bob", b
		}
		ev := event(sender, i)
		publish(t, on, ev)
		want[sender] = append(want[sender], ev.ID)
	}
	e2e.WaitFor(t, 10*time.Second, "every event on node-a's stream", func() (bool, string) {
		for _, ev := range take(subA) {
			if ev.SenderID != "probe" {
				got[ev.SenderID] = append(got[ev.SenderID], idOf(t, ev))
			}
		}
		return len(got["alice"])+len(got["bob"]) >= 40, fmt.Sprint(got)
	})
	for _, sender := range []string{"alice", "bob"} {
		if !slices.Equal(got[sender], want[sender]) {
			t.Errorf("node-a streamed %s's events %v, want %v (each once, in commit order)", sender, got[sender], want[sender])
		}
	}
}

// publish publishes ev through n's sink and waits for its commit.
func publish(t *testing.T, n *node, ev sessions.Event) {
	t.Helper()
	done := make(chan error, 1)
	n.sink.Publish([]sessions.Event{ev}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

var probes int

// event is a message.received event of sender numbered i (probes get a
// new number each time, so that the hub does not drop them as repeats).
func event(sender string, i int) sessions.Event {
	if sender == "probe" {
		probes++
		i = probes
	}
	return sessions.Event{
		Type: sessions.EventMessageReceived, ID: fmt.Sprintf("evt_%s_%03d", sender, i),
		Timestamp: time.Now().UTC(), SenderID: sender,
		Data: json.RawMessage(fmt.Sprintf(`{"id":"M%d","text":"hello %d"}`, i, i)),
	}
}

// take is what the subscription has now.
func take(s *events.Subscription) []events.Event {
	evs, _ := s.Take(nil, 1000)
	return evs
}

// idOf is the event id in a streamed message event's envelope.
func idOf(t *testing.T, ev events.Event) string {
	t.Helper()
	var env struct{ ID string }
	if err := json.Unmarshal(ev.Data, &env); err != nil || !strings.HasPrefix(env.ID, "evt_") {
		t.Fatalf("streamed %s: %v", ev.Data, err)
	}
	return env.ID
}
