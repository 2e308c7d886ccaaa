package fakeserver

import (
	"slices"
	"sync"

	waBinary "go.mau.fi/whatsmeow/binary"
)

// WhatsApp's offline queue: what the server delivers to a device (a
// contact's message, a contact's receipt) stays queued for that device
// until the device acknowledges it, and is sent again, the same stanza,
// whenever the device goes active after a login. whatsmeow acknowledges
// a message with a <receipt> (an <ack> if it gives up on it) and a receipt
// with an <ack>, only once its event handlers succeeded when SynchronousAck
// is on.

// stanzaKey names a queued stanza: its tag ("message" or "receipt"), ID
// and, for receipts, type ("" for delivery).
type stanzaKey struct {
	class, id, typ string
}

// queued is one stanza waiting for a device's acknowledgement.
type queued struct {
	key  stanzaKey
	node waBinary.Node
	// sentOn is the connection it was last sent on: it is sent again
	// only on another one.
	sentOn *conn
	// For a contact's message: the contact, whether it is a prekey
	// message (the session is established once it is acknowledged), and
	// its record.
	contact *primary
	prekey  bool
	record  *receivedEntry // guarded by s.rmu
}

// deviceQueue is one device's queue. mu is held while a stanza is
// encrypted, queued and sent, so the device gets its stanzas in order and
// each once per connection; it is taken before s.mu and a primary's lock.
type deviceQueue struct {
	mu    sync.Mutex
	items []*queued
}

// queueOf returns device d's queue, creating it.
func (s *Server) queueOf(d deviceRef) *deviceQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[d]
	if q == nil {
		q = &deviceQueue{}
		s.queues[d] = q
	}
	return q
}

// activeConn is the logged-in connection of device d that went active,
// or nil.
func (s *Server) activeConn(d deviceRef) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[d.user]; u != nil {
		for c := range u.live {
			if c.device == d.device && c.active.Load() {
				return c
			}
		}
	}
	return nil
}

// enqueue queues item for device d and sends it if d is online.
func (s *Server) enqueue(d deviceRef, q *deviceQueue, item *queued) {
	q.items = append(q.items, item)
	if c := s.activeConn(d); c != nil {
		s.sendQueuedLocked(c, item)
	}
}

// sendQueuedLocked sends item on c unless it was sent there already; q.mu
// is held.
func (s *Server) sendQueuedLocked(c *conn, item *queued) {
	if item.sentOn == c {
		return
	}
	if err := c.send(item.node); err != nil {
		c.log.Debug("queued stanza not sent", "err", err)
		return
	}
	item.sentOn = c
	if item.record != nil {
		s.rmu.Lock()
		item.record.Deliveries++
		s.rmu.Unlock()
	}
}

// goActive marks c active and sends it everything queued for its device,
// in order. It runs on c's goroutine when the client sends its
// passive/active iq after login.
func (c *conn) goActive() {
	s := c.srv
	q := s.queueOf(deviceRef{user: c.user, device: c.device})
	q.mu.Lock()
	defer q.mu.Unlock()
	c.active.Store(true)
	for _, item := range q.items {
		s.sendQueuedLocked(c, item)
	}
}

// acknowledge removes the stanza key from device d's queue and returns it,
// or nil if it was not queued.
func (s *Server) acknowledge(d deviceRef, key stanzaKey) *queued {
	q := s.queueOf(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.IndexFunc(q.items, func(it *queued) bool { return it.key == key })
	if i < 0 {
		return nil
	}
	item := q.items[i]
	q.items = slices.Delete(q.items, i, i+1)
	if item.prekey && item.contact != nil {
		// Lock order: the queue, then the primary.
		item.contact.established(d)
	}
	return item
}

// dropQueue forgets what waits for device d, which was unlinked: it will
// never log in again.
func (s *Server) dropQueue(d deviceRef) {
	q := s.queueOf(d)
	q.mu.Lock()
	items := q.items
	q.items = nil
	q.mu.Unlock()
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for _, item := range items {
		if item.record != nil {
			item.record.Pending--
		}
	}
}
