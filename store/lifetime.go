package store

import (
	"sync"
	"sync/atomic"
	"time"
)

// maxIdleGrowth bounds how far a store's idle timeout may grow with use:
// at most this many times OpenOptions.IdleTimeout.
const maxIdleGrowth = 2

// lifetime closes a store's connection once it has been idle for its idle
// timeout, a timeout that follows the store's use. It starts at the
// configured one (base), and grows two ways, up to maxIdleGrowth × base:
//   - a connection in use for a while stays open, when idle, for half the
//     time it has been in use (from its opening to its last use);
//   - a store whose connection is opened again within base of its idle
//     close was closed too early: its next connection's timeout is twice
//     the last one's.
//
// One that stays closed for longer than base, or rests (Session.Rest),
// starts again at base. So a session that sends or receives every few
// seconds keeps its store, its statement cache and its schema open instead
// of paying for a reopen (SQLite's open, the schema parse, every statement
// prepared anew, a checkpoint at each close) on every message, while one
// used once in a while still closes after base, as before.
//
// database/sql's own SetConnMaxIdleTime is not used: its cleaner looks
// only every max(timeout, 1 s), so a connection idle for 2 s closed
// after 2 to 4 s, and it cannot follow use.
type lifetime struct {
	base time.Duration
	// closeIdle closes the store's connection if no one uses it; open
	// reports whether a connection is open (in use, or opened since).
	closeIdle func()
	open      func() bool
	// now is the clock (time.Now; tests set their own).
	now func() time.Time

	// lastUse is when a statement or transaction last started (Unix ns).
	lastUse atomic.Int64

	mu       sync.Mutex
	timeout  time.Duration // the current connection's idle timeout, before its use
	openedAt time.Time     // the current connection's
	closedAt time.Time     // of the last idle close; zero if the last close was not one
	timer    *time.Timer
	stopped  bool
}

func newLifetime(base time.Duration) *lifetime {
	return &lifetime{base: base, timeout: base, now: time.Now}
}

// used records a statement or transaction starting now.
func (l *lifetime) used() { l.lastUse.Store(l.now().UnixNano()) }

// opened is told of each connection that opened: it sets the connection's
// idle timeout from how soon after the last idle close it came, and
// starts watching it.
func (l *lifetime) opened() {
	now := l.now()
	l.lastUse.Store(now.UnixNano())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if !l.closedAt.IsZero() {
		if now.Sub(l.closedAt) <= l.base {
			l.timeout = min(2*l.timeout, maxIdleGrowth*l.base)
		} else {
			l.timeout = l.base
		}
		l.closedAt = time.Time{}
	}
	l.openedAt = now
	if l.timer == nil {
		l.timer = time.AfterFunc(l.timeout, l.check)
	} else {
		l.timer.Reset(l.timeout)
	}
}

// check runs when the connection may have been idle for its timeout: it
// closes it if so, else looks again when it could be.
func (l *lifetime) check() {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return
	}
	last := time.Unix(0, l.lastUse.Load())
	// The timeout may have grown with use since the timer was set.
	l.timeout = min(max(l.timeout, last.Sub(l.openedAt)/2), maxIdleGrowth*l.base)
	if idle := l.now().Sub(last); idle < l.timeout {
		l.timer.Reset(l.timeout - idle)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	// Not under mu: closing takes the Session's lock, under which Rest
	// calls rested.
	l.closeIdle()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if l.open() {
		// In use (a transaction still running), or opened again meanwhile.
		l.timer.Reset(l.timeout)
		return
	}
	l.closedAt = l.now()
}

// rested is told that the store's connection was closed on purpose (a
// session done with its store for now): the next one starts at base.
func (l *lifetime) rested() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timeout, l.closedAt = l.base, time.Time{}
}

// stop ends the watching, for good.
func (l *lifetime) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
}

// idleTimeout is the current connection's idle timeout, for tests.
func (l *lifetime) idleTimeout() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.timeout
}
