package clusterproof_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// TestOutboxFollowsTheSession: a session's messages arrive on node A while
// the webhook receiver is down, so their deliveries wait in Postgres with
// A's name; A is stopped with SIGTERM and the session moves to B; the
// receiver comes back: B claimed the deliveries and delivers every message,
// in the order received, none lost.
func TestOutboxFollowsTheSession(t *testing.T) {
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rcv := e2e.NewReceiver(t, secret)
	c := e2e.StartCluster(t, e2e.ClusterOptions{Bin: serviceBin, FakeBin: fakeBin, Nodes: 2,
		Tune: func(_ int, cfg *config.Config) { cfg.WebhookURL, cfg.WebhookSecret = rcv.URL, secret }})
	defer c.CheckNeverTwice()
	const id = "alice"
	if _, err := pairOne(c.Nodes[0], id); err != nil {
		t.Fatal(err)
	}
	on := connectedOn(t, c.Nodes[0], 1)
	a, b := c.Nodes[0], c.Nodes[1]
	if on[id] == b.Name {
		a, b = b, a
	}
	st, err := a.Client.Status(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	user := e2e.User(st)

	rcv.Down()
	const n = 20
	var want []string
	for i := range n {
		text := fmt.Sprintf("m%02d", i)
		if _, err := c.Fake.ContactSend(context.Background(), user, "+15550002001", text, ""); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	count := func(q string, args ...any) int {
		var k int
		if err := c.DB.QueryRow(q, args...).Scan(&k); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return k
	}
	const waiting = `SELECT count(*) FROM ws_deliveries d JOIN ws_events e ON e.seq = d.event_seq
		WHERE d.sender_id = $1 AND d.node = $2 AND e.type = 'message.received' AND d.state IN ('pending', 'failed')`
	e2e.WaitFor(t, 30*time.Second, "the messages' deliveries waiting on node A", func() (bool, string) {
		k := count(waiting, id, a.Name)
		return k == n, fmt.Sprint(k)
	}, a.Logs)

	a.Term()
	e2e.WaitFor(t, 30*time.Second, "the session connected on B and its deliveries claimed by B", func() (bool, string) {
		st, err := b.Client.Status(context.Background(), id)
		if err != nil {
			return false, err.Error()
		}
		k := count(waiting, id, b.Name)
		return st.State == sessions.StateConnected && k == n, fmt.Sprintf("%s, %d claimed", e2e.Show(st), k)
	}, b.Logs)
	rcv.Up()
	var got []string
	e2e.WaitFor(t, 45*time.Second, "every message delivered by B", func() (bool, string) {
		got = got[:0]
		seen := map[string]bool{}
		for _, m := range rcv.Messages() {
			if m.Event.SenderID == id && !seen[m.Event.ID] {
				seen[m.Event.ID] = true
				got = append(got, m.Text)
			}
		}
		return len(got) == n, fmt.Sprint(len(got))
	}, b.Logs)
	if !slices.Equal(got, want) {
		t.Errorf("received %v, want %v (in order)", got, want)
	}
	// B records each 2xx in its next group commit, a little after the
	// receiver has the message.
	e2e.WaitFor(t, 10*time.Second, "every delivery of the session recorded delivered", func() (bool, string) {
		k := count(`SELECT count(*) FROM ws_deliveries WHERE sender_id = $1 AND state IN ('pending', 'failed')`, id)
		return k == 0, fmt.Sprintf("%d waiting", k)
	}, b.Logs)
}
