package store

import (
	"context"
	"sync"
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

// clock is a test's time: it moves only when the test says.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// An idle store's connection closes after the idle timeout; one reopened
// within that timeout of its idle close keeps its next connection twice as
// long, up to maxIdleGrowth times; a store used steadily stays open, when
// idle, for half the time it was in use (within the same bound); one
// that stayed closed, or rested, starts again at the configured timeout.
//
// The lifetime's clock is the test's, and the test runs its check as the
// timer would: the real timers, set an hour ahead, never fire, so a busy
// machine cannot change what the test sees.
func TestIdleTimeoutFollowsUse(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	const base = time.Hour
	s, err := d.Open(ctx, "life", OpenOptions{Create: true, IdleTimeout: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c := &clock{t: time.Now()}
	s.life.now = c.now
	use := func() {
		t.Helper()
		if _, err := s.db.ExecContext(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	closed := func() bool { return !s.connector.isOpen() }
	// after moves the clock by d, then runs the timer's check, and says
	// whether the connection is closed.
	after := func(d time.Duration) bool {
		c.advance(d)
		s.life.check()
		return closed()
	}
	timeout := func(want time.Duration, when string) {
		t.Helper()
		if got := s.life.idleTimeout(); got != want {
			t.Fatalf("idle timeout %v %s, want %v", got, when, want)
		}
	}

	// Unused after Open: closed after base, not before.
	use()
	if after(base - time.Second) {
		t.Fatal("closed before the idle timeout")
	}
	if !after(time.Second) {
		t.Fatal("still open after the idle timeout")
	}
	// Reopened at once after that close: the timeout doubles, up to the
	// bound.
	for range 2 {
		use()
		timeout(2*base, "after a reopen right after an idle close")
		if after(2*base - time.Second) {
			t.Fatal("closed before its grown idle timeout")
		}
		if !after(time.Second) {
			t.Fatal("still open after its grown idle timeout")
		}
	}
	// Used more often than its timeout: it stays open.
	use()
	for range 10 {
		if after(base) {
			t.Fatalf("a store used every %v closed with a %v idle timeout", base, 2*base)
		}
		use()
	}
	if !after(2 * base) {
		t.Fatal("still open after its idle timeout")
	}
	// Closed for longer than base: back to base.
	c.advance(2 * base)
	use()
	timeout(base, "after staying closed")
	// Rest closes it at once and starts the next one at base too.
	if !after(base) {
		t.Fatal("still open after the idle timeout")
	}
	use()
	timeout(2*base, "after a reopen right after an idle close")
	s.Rest()
	if !closed() {
		t.Fatal("Rest left the idle connection open")
	}
	use()
	timeout(base, "after Rest")
	// In use for 3 × base: idle, it stays open for 1.5 × base (half that).
	for range 6 {
		c.advance(base / 2)
		use()
	}
	if after(base + base/4) {
		t.Fatalf("a store in use for %v closed after %v idle", 3*base, base+base/4)
	}
	timeout(3*base/2, "after 3 × base of use")
	if !after(base / 4) {
		t.Fatalf("still open %v after its last use", 3*base/2)
	}
	// A connection in use past its timeout is not closed under its user.
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after(3 * base) {
		t.Fatal("a connection in use was closed")
	}
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if !after(2 * base) {
		t.Fatal("still open after its user let it go and it idled")
	}
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
