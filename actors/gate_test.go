package actors_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// leaseTable is the fake Gates' one lease store: who owns each session,
// with the checks the real thing must pass recorded as violations.
type leaseTable struct {
	mu     sync.Mutex
	owner  map[string]string
	nodes  map[string]*harness // node -> its harness, to check its clients
	broken []string
}

func newLeaseTable() *leaseTable {
	return &leaseTable{owner: map[string]string{}, nodes: map[string]*harness{}}
}

// gate is node's view of the table.
func (lt *leaseTable) gate(node string) actors.Gate { return &fakeGate{lt: lt, node: node} }

// set makes node the owner of id ("" frees it), as another node's
// acquisition or an expiry would.
func (lt *leaseTable) set(id, node string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.owner[id] = node
}

func (lt *leaseTable) ownerOf(id string) string {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return lt.owner[id]
}

// violate records v once; lt.mu is held.
func (lt *leaseTable) violate(v string) {
	if !slices.Contains(lt.broken, v) {
		lt.broken = append(lt.broken, v)
	}
}

func (lt *leaseTable) violations() []string {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	return slices.Clone(lt.broken)
}

// fakeGate grants a lease that is free or already node's, and checks at
// each release that none of node's clients of the session is connected.
type fakeGate struct {
	lt   *leaseTable
	node string
}

func (g *fakeGate) Acquire(_ context.Context, id string) error {
	g.lt.mu.Lock()
	defer g.lt.mu.Unlock()
	if o := g.lt.owner[id]; o != "" && o != g.node {
		return fmt.Errorf("lease held by node %s: %w", o, sessions.ErrOwnedElsewhere)
	}
	g.lt.owner[id] = g.node
	return nil
}

func (g *fakeGate) Release(_ context.Context, ids ...string) error {
	g.lt.mu.Lock()
	defer g.lt.mu.Unlock()
	for _, id := range ids {
		// Connected, not merely open: after a restart the new link may
		// have opened its client (it dials only once it holds the lease,
		// which waits for this release) while the old link releases.
		if h := g.lt.nodes[g.node]; h != nil && h.opener.connected(id) != 0 {
			g.lt.violate(fmt.Sprintf("%s released %s with a client connected", g.node, id))
		}
		if g.lt.owner[id] == g.node {
			g.lt.owner[id] = ""
		}
	}
	return nil
}

// node is a harness whose sessions connect through the table's Gate.
func (lt *leaseTable) node(t *testing.T, name string) *harness {
	t.Helper()
	h := newHarness(t, func(o *actors.Options) {
		o.Gate = lt.gate(name)
		o.LeaseRetry = 40 * time.Millisecond
	})
	lt.mu.Lock()
	lt.nodes[name] = h
	lt.mu.Unlock()
	// Checked last (registered first): no release ever found a client open,
	// and no session of this node connected without its lease.
	t.Cleanup(func() {
		for _, v := range lt.violations() {
			t.Error(v)
		}
	})
	return h
}

// watchOwnership fails the test if a node has a client of id connected
// while the table does not name it the owner, polling until the test ends.
func watchOwnership(t *testing.T, lt *leaseTable, id string, nodes map[string]*harness) {
	t.Helper()
	t.Cleanup(everyMillisecond(func() {
		for name, h := range nodes {
			// Read the owner after the client: a client connected now was
			// connected under the owner read next.
			if h.opener.connected(id) > 0 && lt.ownerOf(id) != name {
				lt.mu.Lock()
				lt.violate(fmt.Sprintf("%s has %s connected without its lease", name, id))
				lt.mu.Unlock()
			}
		}
	}))
}

// everyMillisecond runs check every millisecond on a goroutine of its own
// until the returned stop is called; stop returns once check no longer
// runs.
func everyMillisecond(check func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			check()
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// waitCode polls until session id shows error code c in state.
func (h *harness) waitCode(id string, state sessions.State, c sessions.Code) sessions.Status {
	h.t.Helper()
	var last sessions.Status
	eventually(h.t, func() bool {
		st, err := h.mgr.Status(context.Background(), id)
		last = st
		return err == nil && st.State == state && st.Error != nil && st.Error.Code == c
	}, "session %s to be %s with %s (last: %+v)", id, state, c, &last)
	return last
}

// TestLeaseHeldElsewhereWaitsThenTakesOver: a session whose lease another
// node holds never dials; it shows connecting with owned_elsewhere, and
// connects once the holder hands it over (Release), which disconnects
// there, releases the lease and forgets the session without recording a
// stop.
func TestLeaseHeldElsewhereWaitsThenTakesOver(t *testing.T) {
	lt := newLeaseTable()
	a, b := lt.node(t, "a"), lt.node(t, "b")
	watchOwnership(t, lt, "s1", map[string]*harness{"a": a, "b": b})
	ctx := context.Background()

	a.connected("s1")
	b.stored("s1", true)
	b.restore()
	st := b.waitCode("s1", sessions.StateConnecting, sessions.CodeOwnedElsewhere)
	if st.Connected {
		t.Fatalf("status %+v", st)
	}
	// Several retries later, b still never dialed.
	time.Sleep(200 * time.Millisecond)
	if c := b.opener.last("s1"); c == nil || c.connects.Load() != 0 {
		t.Fatalf("b dialed a session whose lease a holds")
	}
	if st := b.status("s1"); st.State != sessions.StateConnecting || st.Error == nil || st.Error.Code != sessions.CodeOwnedElsewhere {
		t.Fatalf("b's status while waiting: %+v", st)
	}

	if err := a.mgr.Release(ctx, []string{"s1"}); err != nil {
		t.Fatal(err)
	}
	// Done when Release returns: client closed, lease free or b's already.
	if n := a.opener.live("s1"); n != 0 {
		t.Fatalf("%d clients open on a after the hand-over", n)
	}
	if o := lt.ownerOf("s1"); o == "a" {
		t.Fatal("a still owns the lease after the hand-over")
	}
	if _, err := a.mgr.Status(ctx, "s1"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("a still shows s1: %v", err)
	}
	if stored, _ := a.dir.Discover(); len(stored) != 1 || stored[0].Stopped {
		t.Fatalf("the hand-over recorded a stop: %+v", stored)
	}
	st = b.waitState("s1", sessions.StateConnected)
	if st.Error != nil || lt.ownerOf("s1") != "b" {
		t.Fatalf("b connected: %+v, owner %q", st, lt.ownerOf("s1"))
	}
}

// TestLeasesLostDisconnectAtOnce: sessions told their lease is lost close
// their clients at once, wait while another node holds it, and connect
// again once it is free.
func TestLeasesLostDisconnectAtOnce(t *testing.T) {
	lt := newLeaseTable()
	a := lt.node(t, "a")
	a.connected("s1")
	a.connected("s2")
	first := a.opener.last("s1")
	// The lease expired and node b took it; a's keeper says so.
	lt.set("s1", "b")
	a.mgr.LeasesLost([]string{"s1", "unknown"})
	eventually(t, func() bool { return first.closed.Load() }, "s1's client to close")
	st := a.waitCode("s1", sessions.StateReconnecting, sessions.CodeOwnedElsewhere)
	if st.Connected {
		t.Fatalf("status %+v", st)
	}
	a.waitCode("s1", sessions.StateConnecting, sessions.CodeOwnedElsewhere)
	if a.opener.connected("s1") != 0 {
		t.Fatal("s1 connected while b holds its lease")
	}
	if st := a.status("s2"); st.State != sessions.StateConnected {
		t.Fatalf("s2 was disturbed: %+v", st)
	}
	lt.set("s1", "")
	a.waitState("s1", sessions.StateConnected)
	if lt.ownerOf("s1") != "a" {
		t.Fatalf("owner %q", lt.ownerOf("s1"))
	}
}

// TestEndingASessionReleasesItsLease: stop, logout and delete release the
// lease, each after the client closed (the table checks); a restart after a
// panic keeps it.
func TestEndingASessionReleasesItsLease(t *testing.T) {
	lt := newLeaseTable()
	a := lt.node(t, "a")
	ctx := context.Background()
	ends := map[string]func(id string) error{
		"stop":   func(id string) error { _, err := a.mgr.Stop(ctx, id); return err },
		"logout": func(id string) error { _, err := a.mgr.Logout(ctx, id); return err },
		"delete": func(id string) error { return a.mgr.Delete(ctx, id) },
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			id := "end-" + name
			a.connected(id)
			if lt.ownerOf(id) != "a" {
				t.Fatalf("owner %q while connected", lt.ownerOf(id))
			}
			if err := end(id); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return lt.ownerOf(id) == "" }, "%s's lease to be released", id)
		})
	}
	a.connected("p")
	if err := a.mgr.Panic(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return a.status("p").Restarts == 1 && a.status("p").State == sessions.StateConnected },
		"p to restart and connect")
	if lt.ownerOf("p") != "a" {
		t.Fatalf("owner %q after a restart", lt.ownerOf("p"))
	}
}

// TestAdoptReleaseHosted: Adopt hosts stored sessions as a restore would
// (a stopped one shown stopped), leaves hosted ones alone and ignores
// unknown ids; Release forgets them; Hosted lists what is hosted.
func TestAdoptReleaseHosted(t *testing.T) {
	lt := newLeaseTable()
	a := lt.node(t, "a")
	ctx := context.Background()
	a.stored("run", true)
	a.stored("halt", true)
	if err := a.dir.SetStopped("halt", true); err != nil {
		t.Fatal(err)
	}
	a.stored("other", true) // stored, not adopted
	if err := a.mgr.Adopt(ctx, []string{"run", "halt", "nope"}); err != nil {
		t.Fatal(err)
	}
	a.waitState("run", sessions.StateConnected)
	a.waitState("halt", sessions.StateStopped)
	hosted, err := a.mgr.Hosted(ctx)
	if err != nil || !slices.Equal(hosted, []string{"halt", "run"}) {
		t.Fatalf("hosted %v, %v; want [halt run]", hosted, err)
	}
	if a.opener.live("halt") != 0 {
		t.Fatal("a stopped session was opened")
	}
	opens := a.opener.opens.Load()
	if err := a.mgr.Adopt(ctx, []string{"run"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // nothing should happen; give it the chance
	if a.opener.opens.Load() != opens || a.status("run").State != sessions.StateConnected {
		t.Fatal("adopting a hosted session touched it")
	}

	if err := a.mgr.Release(ctx, []string{"run", "halt", "nope"}); err != nil {
		t.Fatal(err)
	}
	if hosted, _ := a.mgr.Hosted(ctx); len(hosted) != 0 {
		t.Fatalf("hosted after release: %v", hosted)
	}
	stored, _ := a.dir.Discover()
	for _, s := range stored {
		if s.Stopped != (s.ID == "halt") {
			t.Errorf("stored %+v after the hand-over", s)
		}
	}
	if lt.ownerOf("run") != "" || a.opener.live("run") != 0 {
		t.Fatalf("run: owner %q, %d clients open", lt.ownerOf("run"), a.opener.live("run"))
	}
	fleet, err := a.mgr.Fleet(ctx)
	if err != nil || len(fleet.Sessions) != 0 {
		t.Fatalf("fleet after release: %+v, %v", fleet, err)
	}
}
