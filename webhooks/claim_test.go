package webhooks_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
)

// Two nodes on one Postgres outbox: node-b claims the undelivered rows of
// the session whose lease it took (alice), and of a session nobody holds
// once node-a is no longer eligible (bob); node-b then delivers each
// session's events, every one, in order, node-a's late results change
// nothing, and node-a's queue depth follows.
func TestClaimAcrossNodes(t *testing.T) {
	db, _ := pgtest.Start(t).OpenMigrated(t)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`INSERT INTO ws_nodes (name, address, heartbeat_at) VALUES ('node-a', 'a', now()), ('node-b', 'b', now())`)
	exec(`INSERT INTO ws_sessions (sender_id) VALUES ('alice'), ('bob')`)

	rcv := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	rcv.setAnswer(func(sessions.Event) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	openNode := func(node string) *webhooks.Outbox {
		opts := testOptions(t.TempDir(), rcv.srv.URL)
		opts.Node, opts.NodeTTL, opts.ClaimEvery = node, 10*time.Second, 50*time.Millisecond
		o, err := webhooks.OpenPostgres(db, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeOutbox(t, o) })
		return o
	}
	a, b := openNode("node-a"), openNode("node-b")
	exec(`INSERT INTO ws_leases (sender_id, owner, token, expires_at) VALUES ('alice', 'node-a', 1, now() + interval '1 minute')`)
	want := publishAll(t, a, 10, "alice", "bob")
	nodeOf := func(sender string) map[string]int {
		rows, err := db.Query(`SELECT node, count(*) FROM ws_deliveries WHERE sender_id = $1 AND state IN ('pending', 'failed') GROUP BY node`, sender)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]int{}
		for rows.Next() {
			var node string
			var n int
			if err := rows.Scan(&node, &n); err != nil {
				t.Fatal(err)
			}
			out[node] = n
		}
		return out
	}
	waitFor(t, 10*time.Second, "node-a to try both sessions' heads", func() (bool, string) {
		f := list(t, a, sessions.DeliveryFailed)
		return len(f) == 2, fmt.Sprint(len(f))
	})
	if got := nodeOf("alice"); got["node-a"] != 10 || len(got) != 1 {
		t.Fatalf("alice's deliveries by node before the hand-over: %v", got)
	}

	// alice moves to node-b (its lease); node-a stops being eligible, and
	// bob has no lease: node-b claims both.
	exec(`UPDATE ws_leases SET owner = 'node-b', token = 2 WHERE sender_id = 'alice'`)
	exec(`UPDATE ws_nodes SET heartbeat_at = now() - interval '1 hour' WHERE name = 'node-a'`)
	for _, s := range []string{"alice", "bob"} {
		waitFor(t, 10*time.Second, s+"'s deliveries claimed by node-b", func() (bool, string) {
			got := nodeOf(s)
			return got["node-b"] == 10 && len(got) == 1, fmt.Sprint(got)
		})
	}
	waitFor(t, 10*time.Second, "node-b's queue depth", func() (bool, string) {
		return b.Stats().Queued == 20, fmt.Sprint(b.Stats().Queued)
	})
	down.Store(false)
	waitFor(t, 20*time.Second, "every event", func() (bool, string) {
		d := list(t, b, sessions.DeliveryDelivered)
		return len(d) == 20 && b.Stats().Queued == 0, fmt.Sprint(len(d))
	})
	// node-a's attempt in flight at the claim may still arrive after down
	// flips: at least once, so a session's head may arrive twice (with its
	// webhook-id). Nothing else may.
	for _, s := range []string{"alice", "bob"} {
		if got := rcv.firstIDsOf(s); !slices.Equal(got, want[s]) {
			t.Errorf("%s received %v, want %v", s, got, want[s])
		}
		if dup := rcv.duplicatesOf(s); len(dup) > 0 && !slices.Equal(dup, want[s][:1]) {
			t.Errorf("%s received %v twice; only its head was in flight at the claim", s, dup)
		}
	}
	var byA int
	if err := db.QueryRow(`SELECT count(*) FROM ws_deliveries WHERE node = 'node-a'`).Scan(&byA); err != nil || byA != 0 {
		t.Errorf("%d deliveries left with node-a (%v)", byA, err)
	}
	// node-a learns of the claim at its next recount (every ClaimEvery).
	waitFor(t, 10*time.Second, "node-a's queue depth to drop to 0 after the claim", func() (bool, string) {
		return a.Stats().Queued == 0, fmt.Sprint(a.Stats().Queued)
	})
}
