// Package events is the live event stream behind GET /api/whatsapp/events:
// a Hub keeps the last events the sessions published (session.state,
// session.deleted, message.received, message.ack) in a bounded in-memory
// ring, each with a sequence number, and hands them to subscribers: first
// what a reconnecting subscriber missed (or a reset when the ring no
// longer holds it), then every new event.
//
// Each subscriber reads the shared ring through its own cursor, so it
// costs no memory of its own however far behind it is. Publishers never
// wait for subscribers: one that falls more than MaxLag events behind the
// newest (at most the ring's size, so before the ring drops an event it
// has not read) is cut off and counted, and reconnects with the last
// sequence number it saw. The ring lives in memory only: after a restart
// sequence numbers start higher than any of the previous run, so that a
// subscriber coming back with an old one gets a reset.
package events

import (
	"cmp"
	"encoding/json"
	"errors"
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Defaults of Options.
const (
	// DefaultSize is how many events the ring holds.
	DefaultSize = 10_000
)

// Errors of Subscribe.
var (
	// ErrClosed: the hub is closed (the service is shutting down).
	ErrClosed = errors.New("the event stream is closed: the service is shutting down")
	// ErrTooManyClients: Options.MaxClients subscribers are connected.
	ErrTooManyClients = errors.New("too many event streams are open")
)

// Observer sees the subscribers come, go and be cut off; the metrics
// package implements it.
type Observer interface {
	// StreamClients reports how many subscribers are connected.
	StreamClients(n int)
	// StreamDropped counts a subscriber cut off because its buffer was
	// full.
	StreamDropped()
}

// Options configure a Hub; every field is optional.
type Options struct {
	// Size is how many events the ring holds (DefaultSize).
	Size int
	// MaxLag is how many events a subscriber may fall behind the newest
	// before it is cut off: Size when zero or more than Size.
	MaxLag int
	// MaxClients caps the subscribers connected at once (0: no cap).
	MaxClients int
	// FirstSeq is the first event's sequence number. Zero means the
	// microseconds since the Unix epoch when New runs, so that a run's
	// numbers start above every number an earlier run gave out (a run
	// would need more than one event per microsecond to catch up).
	FirstSeq uint64
	// Observer, when set, sees the subscribers.
	Observer Observer
}

// Event is one event of the stream.
type Event struct {
	// Seq is its sequence number: strictly increasing, never reused in a
	// run.
	Seq uint64
	// Type is the event's type.
	Type sessions.EventType
	// SenderID is the session it is about.
	SenderID string
	// Data is the event's data as one line of JSON: the session's Status
	// for session.state, the whole event envelope (as webhooks POST it)
	// for the other types.
	Data []byte
	// idHash is the hash of the published event's id, for dropping a
	// redelivered duplicate. The ring keeps the hash, not the id: an id
	// string per event, kept as long as the event is, was one more small
	// object scattered among a burst's garbage, keeping its heap span
	// resident after the burst.
	idHash uint64
}

// Hub is the ring and its subscribers. Its methods are safe for
// concurrent use, and Add never waits for a subscriber.
type Hub struct {
	size, maxLag, maxClients int
	obs                      Observer

	mu    sync.Mutex
	ring  []Event // circular: the oldest at start, n of them
	start int
	n     int
	next  uint64 // the next event's sequence number
	// ids maps the hash of each event id in the ring to its sequence
	// number. A new id's hash matches one of a full ring's 10,000 others
	// with a probability of 10,000 / 2^64 (5e-16): then that event is
	// dropped from the stream as a redelivery (never from the webhooks,
	// which the outbox feeds).
	ids    map[uint64]uint64
	idSeed maphash.Seed
	subs   map[*Subscription]struct{}
	closed bool
}

// New is an empty hub.
func New(opts Options) *Hub {
	first := opts.FirstSeq
	if first == 0 {
		first = uint64(time.Now().UnixMicro())
	}
	size := cmp.Or(opts.Size, DefaultSize)
	h := &Hub{
		size:       size,
		maxLag:     min(cmp.Or(opts.MaxLag, size), size),
		maxClients: opts.MaxClients,
		obs:        opts.Observer,
		next:       first,
		ids:        map[uint64]uint64{},
		idSeed:     maphash.MakeSeed(),
		subs:       map[*Subscription]struct{}{},
	}
	h.ring = make([]Event, h.size)
	return h
}

// Add appends evs to the ring, in order, and wakes the subscribers. An
// event whose id the ring already holds (a redelivery) is dropped. A
// subscriber now more than MaxLag events behind is cut off. After Close,
// Add does nothing.
func (h *Hub) Add(evs ...sessions.Event) {
	// Encoded before taking the lock: subscribers share the bytes.
	out := make([]Event, 0, len(evs))
	for _, ev := range evs {
		data := []byte(ev.Data)
		if ev.Type != sessions.EventSessionState {
			b, err := json.Marshal(ev)
			if err != nil {
				continue // the outbox refuses what does not encode, so this is not reached
			}
			data = b
		}
		out = append(out, Event{Type: ev.Type, SenderID: ev.SenderID, Data: data, idHash: maphash.String(h.idSeed, ev.ID)})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	added := false
	for _, ev := range out {
		if _, dup := h.ids[ev.idHash]; dup {
			continue
		}
		ev.Seq = h.next
		h.next++
		h.push(ev)
		added = true
	}
	if !added {
		return
	}
	for s := range h.subs {
		if h.next-s.next > uint64(h.maxLag) {
			s.dropped = true
			h.remove(s)
			if h.obs != nil {
				h.obs.StreamDropped()
			}
			continue
		}
		s.wake()
	}
}

// push puts ev in the ring, evicting the oldest event when it is full.
// h.mu is held.
func (h *Hub) push(ev Event) {
	if h.n == h.size {
		old := h.ring[h.start]
		if h.ids[old.idHash] == old.Seq {
			delete(h.ids, old.idHash)
		}
		h.ring[h.start] = Event{}
		h.start = (h.start + 1) % h.size
		h.n--
	}
	h.ring[(h.start+h.n)%h.size] = ev
	h.n++
	h.ids[ev.idHash] = ev.Seq
}

// bySeq is the event with sequence number seq, which the ring holds.
// h.mu is held.
func (h *Hub) bySeq(seq uint64) Event {
	oldest := h.next - uint64(h.n)
	return h.ring[(h.start+int(seq-oldest))%h.size]
}

// Subscribe starts a subscription to the events about senderIDs (every
// session when empty). With lastEventID "" it starts live: only events
// added from now on. With the sequence number of the last event the
// subscriber saw, it starts with the later events the ring holds; when
// the ring no longer holds all of them, or lastEventID is not a sequence
// number this run gave out, the subscription says Reset instead and starts
// live. Close it when done.
func (h *Hub) Subscribe(senderIDs []string, lastEventID string) (*Subscription, error) {
	s := &Subscription{hub: h}
	if len(senderIDs) > 0 {
		s.filter = make(map[string]bool, len(senderIDs))
		for _, id := range senderIDs {
			s.filter[id] = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.maxClients > 0 && len(h.subs) >= h.maxClients {
		return nil, ErrTooManyClients
	}
	s.Newest, s.next = h.next-1, h.next
	if lastEventID != "" {
		last, err := strconv.ParseUint(lastEventID, 10, 64)
		// Covered when the subscriber saw everything before the oldest
		// event held and nothing beyond the newest given out.
		oldest := h.next - uint64(h.n)
		if err != nil || last+1 < oldest || last >= h.next {
			s.Reset = true
		} else {
			s.next = last + 1
		}
	}
	s.ready = make(chan struct{}, 1)
	s.wake()
	h.subs[s] = struct{}{}
	if h.obs != nil {
		h.obs.StreamClients(len(h.subs))
	}
	return s, nil
}

// remove ends s and wakes its reader. h.mu is held.
func (h *Hub) remove(s *Subscription) {
	if s.ended {
		return
	}
	s.ended = true
	delete(h.subs, s)
	s.wake()
	if h.obs != nil {
		h.obs.StreamClients(len(h.subs))
	}
}

// Close ends every subscription and refuses new ones; later events are
// not kept. The service calls it when it starts shutting down, so that
// open streams do not hold the HTTP server's shutdown.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.remove(s)
	}
}

// Clients is how many subscribers are connected.
func (h *Hub) Clients() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Subscription is one subscriber's view of the stream: a cursor in the
// ring. Its reader waits for Ready, then calls Take.
type Subscription struct {
	// Reset says that the ring no longer holds everything after the
	// lastEventID given (or it was not this run's): the subscriber should
	// reload the whole state, then carry on with what Take gives.
	Reset bool
	// Newest is the sequence number of the newest event given out when
	// the subscription started (the first one's minus one if none): a
	// reset carries it as its id.
	Newest uint64

	hub    *Hub
	filter map[string]bool // nil: every session
	ready  chan struct{}   // holds a token while there may be something to take
	// Guarded by hub.mu:
	next    uint64 // the sequence number of the next event to look at
	ended   bool
	dropped bool
}

// wants reports whether the subscriber wants events about senderID.
func (s *Subscription) wants(senderID string) bool {
	return s.filter == nil || s.filter[senderID]
}

// wake tells the reader to call Take, without waiting.
func (s *Subscription) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// Ready receives when Take may have something: events, or the end.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take appends to buf up to max of the events waiting for the subscriber,
// oldest first, and reports whether the subscription is still open. Once
// it reports false (Close, the hub's Close, or the subscriber fell more
// than MaxLag events behind: Dropped), nothing more comes. When it leaves
// events waiting, Ready receives again.
func (s *Subscription) Take(buf []Event, max int) ([]Event, bool) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.ended {
		return buf, false
	}
	for n := 0; s.next < h.next && n < max; s.next++ {
		if ev := h.bySeq(s.next); s.wants(ev.SenderID) {
			buf = append(buf, ev)
			n++
		}
	}
	if s.next < h.next {
		s.wake()
	}
	return buf, true
}

// Dropped reports whether the subscription was cut off because it fell
// too far behind.
func (s *Subscription) Dropped() bool {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.dropped
}

// Close ends the subscription; it may be called more than once.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s)
}
