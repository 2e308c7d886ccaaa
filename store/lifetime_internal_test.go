package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond every millisecond until it holds, or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
	}
}

// An idle store's connection closes after the idle timeout; one reopened
// within that timeout of its idle close keeps its next connection twice as
// long, up to maxIdleGrowth times; a store used steadily stays open, when
// idle, for half the time it was in use (within the same bound); one
// that stayed closed, or rested, starts again at the configured timeout.
func TestIdleTimeoutFollowsUse(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	const base = 100 * time.Millisecond
	opened := time.Now() // before Open's last use of the store
	s, err := d.Open(ctx, "life", OpenOptions{Create: true, IdleTimeout: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	use := func() {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	closed := func() bool { return !s.connector.isOpen() }

	// Unused after Open: closed after about base, not before.
	waitFor(t, "the idle connection closed", closed)
	if took := time.Since(opened); took < base {
		t.Fatalf("closed after %v, before the idle timeout %v", took, base)
	}
	// Reopened at once after that close: the timeout doubles, each time,
	// up to the bound.
	for _, want := range []time.Duration{2 * base, 2 * base} {
		use()
		if got := s.life.idleTimeout(); got != want {
			t.Fatalf("idle timeout %v after a reopen right after an idle close, want %v", got, want)
		}
		waitFor(t, "the idle connection closed", closed)
	}
	// Used more often than its timeout: it stays open.
	use()
	for range 10 {
		time.Sleep(base)
		if closed() {
			t.Fatal("a store used every 100 ms closed with a 200 ms idle timeout")
		}
		use()
	}
	waitFor(t, "the idle connection closed", closed)
	// Closed for longer than base: back to base.
	time.Sleep(2 * base)
	use()
	if got := s.life.idleTimeout(); got != base {
		t.Fatalf("idle timeout %v after staying closed, want %v", got, base)
	}
	// Rest closes it at once and starts the next one at base too.
	waitFor(t, "the idle connection closed", closed)
	use()
	if got := s.life.idleTimeout(); got != 2*base {
		t.Fatalf("idle timeout %v, want %v", got, 2*base)
	}
	s.Rest()
	if !closed() {
		t.Fatal("Rest left the idle connection open")
	}
	use()
	if got := s.life.idleTimeout(); got != base {
		t.Fatalf("idle timeout %v after Rest, want %v", got, base)
	}
	// In use for 3 × base: idle, it stays open for 1.5 × base (half that).
	for range 6 {
		time.Sleep(base / 2)
		use()
	}
	time.Sleep(base + base/4)
	if closed() {
		t.Fatal("a store in use for 300 ms closed after 125 ms idle")
	}
	waitFor(t, "the idle connection closed", closed)
	if got := s.life.idleTimeout(); got < 3*base/2 || got > 2*base {
		t.Fatalf("idle timeout %v after 300 ms of use, want about %v", got, 3*base/2)
	}
	// A connection in use past its timeout is not closed under its user.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * base)
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	waitFor(t, "the idle connection closed", closed)
}

// After a wave of closes (at least reclaimMin connections, half of the
// peak), the memory is given back once; a few closes do not.
func TestReclaimAfterAWaveOfCloses(t *testing.T) {
	r := newReclaimer()
	var freed atomic.Int32
	r.free = func() { freed.Add(1) }
	t.Cleanup(r.stop)
	for range 2 * reclaimMin {
		r.opened()
	}
	for range reclaimMin - 1 {
		r.closed()
	}
	time.Sleep(2 * reclaimQuiet)
	if n := freed.Load(); n != 0 {
		t.Fatalf("%d reclaims after %d of %d closed", n, reclaimMin-1, 2*reclaimMin)
	}
	r.closed() // the wave: half closed
	for range 10 {
		r.closed()
	}
	waitFor(t, "a reclaim", func() bool { return freed.Load() == 1 })
	time.Sleep(2 * reclaimQuiet)
	if n := freed.Load(); n != 1 {
		t.Fatalf("%d reclaims after one wave", n)
	}
	// The next wave is counted from what was open then, and waits for
	// reclaimEvery: stop cancels it.
	for range reclaimMin {
		r.opened()
	}
	for range reclaimMin + 20 {
		r.closed()
	}
	r.stop()
	if n := freed.Load(); n != 1 {
		t.Fatalf("%d reclaims; the second one should have waited", n)
	}
}
