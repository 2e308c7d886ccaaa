package cluster_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/cluster"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
)

// TestOwnedElsewhereTellsTheHolder: a session waiting on node b for a
// lease node a holds tells a, which settles it at once (the sweeps run
// once an hour here): when b is the session's rendezvous choice, a hands
// it over now; when a is, b releases its waiting copy. Nothing is ever
// connected twice.
func TestOwnedElsewhereTellsTheHolder(t *testing.T) {
	etcd := etcdtest.Start(t)
	d := newDB() // no stored sessions: the sweeps adopt nothing
	o := memberOpts{provider: etcdProvider(t, etcd.Endpoint), sweep: time.Hour}
	a := startMember(t, d, "a", o)
	b := startMember(t, d, "b", o)
	c := startMember(t, d, "c", o)
	waitMembers(t, 3, a, b, c)

	peers := []cluster.Peer{}
	d.mu.Lock()
	for name, row := range d.nodes {
		peers = append(peers, cluster.Peer{Name: name, Address: row.address})
	}
	d.mu.Unlock()
	placedOn := func(node string) string {
		for i := 0; ; i++ {
			if id := fmt.Sprintf("x%03d", i); cluster.RendezvousOf(id, peers...) == node {
				return id
			}
		}
	}
	// held makes a hold id's lease and run it, connected.
	held := func(id string) {
		d.mu.Lock()
		d.holders[id] = a.name
		d.hosts[id]++
		d.maxHosts = max(d.maxHosts, d.hosts[id])
		d.mu.Unlock()
		a.local.mu.Lock()
		a.local.hosted[id] = true
		a.local.mu.Unlock()
	}

	t.Run("the asker is the placement: handed over now", func(t *testing.T) {
		id := placedOn("b")
		held(id)
		b.local.wait(id)
		start := time.Now()
		if !b.node.OwnedElsewhere(id, a.node.Address()) {
			t.Fatal("not told")
		}
		eventually(t, 5*time.Second, id+" moved to b", func() bool {
			return d.holder(id) == "b" && !b.local.isWaiting(id) && !a.local.isHosted(id)
		})
		t.Logf("handed over in %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("the holder is the placement: the waiting copy is released", func(t *testing.T) {
		id := placedOn("a")
		held(id)
		b.local.wait(id)
		if !b.node.OwnedElsewhere(id, a.node.Address()) {
			t.Fatal("not told")
		}
		eventually(t, 5*time.Second, "b released its waiting copy of "+id, func() bool {
			return !b.local.isHosted(id)
		})
		if d.holder(id) != "a" || !a.local.isHosted(id) {
			t.Fatalf("a no longer runs %s (holder %q)", id, d.holder(id))
		}
	})

	t.Run("a third node is the placement: the waiting copy is released, the holder keeps it", func(t *testing.T) {
		id := placedOn("c")
		held(id)
		b.local.wait(id)
		if !b.node.OwnedElsewhere(id, a.node.Address()) {
			t.Fatal("not told")
		}
		eventually(t, 5*time.Second, "b released its waiting copy of "+id, func() bool {
			return !b.local.isHosted(id)
		})
		if d.holder(id) != "a" {
			t.Fatalf("holder %q, want a (its own sweep moves it to c)", d.holder(id))
		}
	})

	t.Run("an unreachable holder changes nothing", func(t *testing.T) {
		id := placedOn("a")
		b.local.wait(id)
		if !b.node.OwnedElsewhere(id, freeaddr.For(t)) {
			t.Fatal("not told")
		}
		time.Sleep(100 * time.Millisecond) // nothing to poll for: nothing may happen
		if !b.local.isWaiting(id) {
			t.Fatal("b dropped its waiting copy without an answer")
		}
	})

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.maxHosts > 1 {
		t.Fatalf("a session was connected on %d nodes at once", d.maxHosts)
	}
}
