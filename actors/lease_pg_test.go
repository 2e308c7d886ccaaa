package actors_test

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// pgNode is a harness whose Gate is a real lease.Keeper on Postgres, its
// OnLost wired to the manager as the app does.
type pgNode struct {
	*harness
	keeper *lease.Keeper
}

func newPGNode(t *testing.T, name, url string, ttl time.Duration) *pgNode {
	t.Helper()
	db, err := pgstore.Open(context.Background(), url, pgstore.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	n := &pgNode{}
	var mgr *actors.Manager
	var mu sync.Mutex
	n.keeper = lease.New(db, lease.Options{Node: name, Address: name + ":1", TTL: ttl, OnLost: func(ids []string) {
		mu.Lock()
		m := mgr
		mu.Unlock()
		if m != nil {
			m.LeasesLost(ids)
		}
	}})
	n.harness = newHarness(t, func(o *actors.Options) {
		o.Gate = n.keeper
		o.LeaseRetry = 100 * time.Millisecond
	})
	mu.Lock()
	mgr = n.mgr
	mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = n.keeper.Run(ctx)
	}()
	// Registered after the manager's: runs before its shutdown, so the
	// sessions' releases at shutdown find the lease rows unrenewed, which
	// is fine, and the keeper's goroutine ends with the test.
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return n
}

// TestRealLeasesOneConnectionPerSession: two nodes on one Postgres, each
// with its own fake WhatsApp clients. Every session is connected on
// exactly one node at any moment: the second node waits (owned_elsewhere);
// a node cut off from Postgres disconnects its sessions before their
// leases expire by the database's clock, the other takes them after; a
// hand-over moves a session back at once.
func TestRealLeasesOneConnectionPerSession(t *testing.T) {
	srv := pgtest.Start(t)
	db, url := srv.OpenMigrated(t)
	ctx := context.Background()
	ids := []string{"p1", "p2", "p3"}
	if _, err := db.Exec(`INSERT INTO ws_sessions (sender_id) SELECT unnest($1::text[])`, ids); err != nil {
		t.Fatal(err)
	}
	proxy := srv.NewProxy(t)
	const ttl = 2 * time.Second
	a := newPGNode(t, "a", proxy.URL(url[strings.LastIndex(url, "/")+1:strings.Index(url, "?")]), ttl)
	b := newPGNode(t, "b", url, ttl)
	stopWatch := watchSingleConnection(t, ids, a.harness, b.harness)
	defer stopWatch()

	for _, id := range ids {
		a.stored(id, true)
		b.stored(id, true)
	}
	a.restore()
	for _, id := range ids {
		a.waitState(id, sessions.StateConnected)
	}
	b.restore()
	for _, id := range ids {
		b.waitCode(id, sessions.StateConnecting, sessions.CodeOwnedElsewhere)
	}

	proxy.Cut()
	for _, id := range ids {
		eventually(t, func() bool { return a.opener.connected(id) == 0 }, "a to disconnect %s", id)
	}
	disconnected := time.Now()
	expires := firstExpiry(t, db, ids)
	if !disconnected.Before(expires) {
		t.Fatalf("a disconnected at %v, not before the first lease expiry %v", disconnected, expires)
	}
	t.Logf("a cut off: every session disconnected %v before its lease expired", expires.Sub(disconnected))
	for _, id := range ids {
		b.waitState(id, sessions.StateConnected)
	}
	proxy.Restore()
	for _, id := range ids {
		a.waitCode(id, sessions.StateConnecting, sessions.CodeOwnedElsewhere)
	}

	// A hand-over moves p1 back to a without waiting for an expiry.
	start := time.Now()
	if err := b.mgr.Release(ctx, []string{"p1"}); err != nil {
		t.Fatal(err)
	}
	a.waitState("p1", sessions.StateConnected)
	t.Logf("hand-over of p1 from b to a: connected on a %v after Release began", time.Since(start))
}

// firstExpiry is the earliest lease expiry of ids, by the database.
func firstExpiry(t *testing.T, db *sql.DB, ids []string) time.Time {
	t.Helper()
	var x time.Time
	if err := db.QueryRow(`SELECT min(expires_at) FROM ws_leases WHERE sender_id = ANY($1)`, ids).Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// watchSingleConnection fails the test if any of ids is ever connected on
// two of nodes at once; the returned func stops watching.
func watchSingleConnection(t *testing.T, ids []string, nodes ...*harness) func() {
	t.Helper()
	var failures []string // only the check writes it until stop returns
	stop := everyMillisecond(func() {
		for _, id := range ids {
			n := 0
			for _, h := range nodes {
				n += h.opener.connected(id)
			}
			if n > 1 {
				failures = append(failures, fmt.Sprintf("%s connected %d times at %v", id, n, time.Now().Format(time.StampMicro)))
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			for _, f := range failures[:min(len(failures), 5)] {
				t.Error(f)
			}
		})
	}
}
