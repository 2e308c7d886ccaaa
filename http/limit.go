package http

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnObserver sees what a connection cap does; the metrics package
// implements it. listener names the capped listener ("api", "metrics").
type ConnObserver interface {
	// HTTPConnections reports the number of open connections.
	HTTPConnections(listener string, open int)
	// HTTPConnectionRefused counts a new connection closed at once because
	// every connection was in the middle of a request.
	HTTPConnectionRefused(listener string)
	// HTTPConnectionEvicted counts an idle connection closed to make room
	// for a new one.
	HTTPConnectionEvicted(listener string)
}

// ConnLimit caps a server's open connections, so that clients (with or
// without a key) cannot take every file descriptor the sessions need.
//
// netutil.LimitListener would make the excess wait in the kernel's accept
// queue, where a few idle keep-alive sockets would starve every real client
// until the idle timeout. Here a connection over the cap is accepted, and
// room is made by closing the connection that has waited longest without a
// request in progress: idle between requests, or not having sent a full
// request yet. An attacker's idle sockets are thus the first to go, and a
// request in progress is never cut. Only when every connection is serving a
// request is the new one closed at once (refused), which a client sees
// immediately instead of hanging. Both outcomes are counted.
type ConnLimit struct {
	name string
	max  int
	obs  ConnObserver

	mu    sync.Mutex
	conns map[net.Conn]*connEntry
}

// connEntry is what the cap knows of one connection.
type connEntry struct {
	// busy is true while a request is read past its headers or served.
	busy bool
	// waiting is when the connection last started waiting for a request.
	waiting time.Time
}

// NewConnLimit caps at max open connections; obs may be nil.
func NewConnLimit(name string, max int, obs ConnObserver) *ConnLimit {
	return &ConnLimit{name: name, max: max, obs: obs, conns: map[net.Conn]*connEntry{}}
}

// Max is the cap.
func (l *ConnLimit) Max() int { return l.max }

// Listener applies the cap to the connections ln accepts. The server that
// serves it must report to ConnState (NewServer does).
func (l *ConnLimit) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, limit: l}
}

type limitListener struct {
	net.Listener
	limit *ConnLimit
}

func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.limit.admit(c) {
			return c, nil
		}
		_ = c.Close()
	}
}

// admit makes room for c and reports whether it may be served.
func (l *ConnLimit) admit(c net.Conn) bool {
	l.mu.Lock()
	var victim net.Conn
	if len(l.conns) >= l.max {
		var oldest time.Time
		for vc, e := range l.conns {
			if !e.busy && (victim == nil || e.waiting.Before(oldest)) {
				victim, oldest = vc, e.waiting
			}
		}
		if victim == nil {
			l.mu.Unlock()
			if l.obs != nil {
				l.obs.HTTPConnectionRefused(l.name)
			}
			return false
		}
		delete(l.conns, victim)
	}
	l.conns[c] = &connEntry{waiting: time.Now()}
	open := len(l.conns)
	l.mu.Unlock()
	if victim != nil {
		// The server's goroutine for it sees the close and ends.
		_ = victim.Close()
		if l.obs != nil {
			l.obs.HTTPConnectionEvicted(l.name)
		}
	}
	if l.obs != nil {
		l.obs.HTTPConnections(l.name, open)
	}
	return true
}

// ConnState is the http.Server's ConnState hook: it tells the cap which
// connections are serving a request and which are waiting for one.
func (l *ConnLimit) ConnState(c net.Conn, state http.ConnState) {
	l.mu.Lock()
	e := l.conns[c]
	open := -1
	switch {
	case e == nil:
		// Not admitted through the listener, or already evicted.
	case state == http.StateActive:
		e.busy = true
	case state == http.StateIdle:
		e.busy, e.waiting = false, time.Now()
	case state == http.StateClosed, state == http.StateHijacked:
		delete(l.conns, c)
		open = len(l.conns)
	}
	l.mu.Unlock()
	if open >= 0 && l.obs != nil {
		l.obs.HTTPConnections(l.name, open)
	}
}

// MaxConns is the default cap on the API's connections for a process
// allowed nofile descriptors with sessions stored sessions: half of what
// is left once the sessions' worst case (4 descriptors each: the WhatsApp
// socket, and the store with its -wal and -shm while it is open) and 256
// for the process itself (listeners, logs, the Go runtime) are set aside,
// and at least 64 and at most 1024. Half, so that sessions created later
// still find descriptors; at most 1024, since a REST API for a few
// backends needs no more and each connection costs memory too.
func MaxConns(nofile uint64, sessions int) int {
	const reserved, perSession, floor, ceiling = 256, 4, 64, 1024
	left := int64(nofile) - reserved - perSession*int64(sessions)
	if nofile > 1<<40 { // RLIM_INFINITY
		left = 1 << 40
	}
	return int(min(max(left/2, floor), ceiling))
}
