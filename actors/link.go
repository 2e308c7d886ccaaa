package actors

import (
	"context"
	"sync"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// link is one opening of a session's store and client. The actor drops and
// closes a link when it stops, restarts or gives up; goroutines that were
// opening or dialing on it then find it closed and close what they opened,
// so no client or store outlives the actor that owned it (the manager waits
// for those goroutines, counted in the session's work, before it answers a
// stop or removes a directory). Results carry their link, and the actor
// ignores those of a link it no longer holds.
type link struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	client whatsapp.Client
	closed bool
}

func newLink() *link {
	ctx, cancel := context.WithCancel(context.Background())
	return &link{ctx: ctx, cancel: cancel}
}

// adopt hands c to the link; if the link is closed already, c is closed and
// adopt reports false.
func (l *link) adopt(c whatsapp.Client) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return false
	}
	l.client = c
	return true
}

// get returns the link's client, or nil before one was adopted or after
// close.
func (l *link) get() whatsapp.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client
}

// close cancels everything running on the link and closes its client
// (disconnect, then close the store). It does not wait for the link's
// goroutines: each ends soon, as the link's context has, and closes what
// it opened itself. It returns the client's close error.
func (l *link) close() error {
	l.cancel()
	l.mu.Lock()
	c := l.client
	l.client = nil
	l.closed = true
	l.mu.Unlock()
	var err error
	if c != nil {
		err = c.Close()
	}
	return err
}

// bound is ctx, also cancelled when the link closes: work an asker waits
// for ends with whichever comes first.
func (l *link) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
