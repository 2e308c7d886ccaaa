// Package events is the live event stream behind GET /api/whatsapp/events:
// a Hub keeps the last events the sessions published (session.state,
// message.received, message.ack) in a bounded in-memory ring, each with a
// sequence number, and hands them to subscribers: first what a
// reconnecting subscriber missed (or a reset when the ring no longer holds
// it), then every new event, through a bounded buffer per subscriber.
//
// Publishers never wait for subscribers: a subscriber whose buffer is full
// is cut off (its channel closes) and counted, and reconnects with the
// last sequence number it saw. The ring lives in memory only: after a
// restart sequence numbers start higher than any of the previous run, so
// that a subscriber coming back with an old one gets a reset.
package events

import (
	"cmp"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Defaults of Options.
const (
	// DefaultSize is how many events the ring holds.
	DefaultSize = 10_000
	// DefaultBuffer is how many events a subscriber may fall behind
	// before it is cut off.
	DefaultBuffer = 1024
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
	// Buffer is each subscriber's buffer (DefaultBuffer).
	Buffer int
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
	// id is the published event's id, for dropping a redelivered
	// duplicate.
	id string
}

// Hub is the ring and its subscribers. Its methods are safe for
// concurrent use, and Add never waits for a subscriber.
type Hub struct {
	size, buffer, maxClients int
	obs                      Observer

	mu     sync.Mutex
	ring   []Event // circular: the oldest at start, n of them
	start  int
	n      int
	next   uint64            // the next event's sequence number
	ids    map[string]uint64 // event id -> seq, for the events in the ring
	subs   map[*Subscription]struct{}
	closed bool
}

// New is an empty hub.
func New(opts Options) *Hub {
	first := opts.FirstSeq
	if first == 0 {
		first = uint64(time.Now().UnixMicro())
	}
	h := &Hub{
		size:       cmp.Or(opts.Size, DefaultSize),
		buffer:     cmp.Or(opts.Buffer, DefaultBuffer),
		maxClients: opts.MaxClients,
		obs:        opts.Observer,
		next:       first,
		ids:        map[string]uint64{},
		subs:       map[*Subscription]struct{}{},
	}
	h.ring = make([]Event, h.size)
	return h
}

// Add appends evs to the ring, in order, and hands each to the
// subscribers that want it. An event whose id the ring already holds (a
// redelivery) is dropped. A subscriber with no room left is cut off. After
// Close, Add does nothing.
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
		out = append(out, Event{Type: ev.Type, SenderID: ev.SenderID, Data: data, id: ev.ID})
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for _, ev := range out {
		if _, dup := h.ids[ev.id]; dup {
			continue
		}
		ev.Seq = h.next
		h.next++
		h.push(ev)
		for s := range h.subs {
			if !s.wants(ev.SenderID) {
				continue
			}
			select {
			case s.ch <- ev:
			default:
				s.dropped = true
				h.remove(s)
				if h.obs != nil {
					h.obs.StreamDropped()
				}
			}
		}
	}
}

// push puts ev in the ring, evicting the oldest event when it is full.
// h.mu is held.
func (h *Hub) push(ev Event) {
	if h.n == h.size {
		old := h.ring[h.start]
		if h.ids[old.id] == old.Seq {
			delete(h.ids, old.id)
		}
		h.ring[h.start] = Event{}
		h.start = (h.start + 1) % h.size
		h.n--
	}
	h.ring[(h.start+h.n)%h.size] = ev
	h.n++
	h.ids[ev.id] = ev.Seq
}

// at is the i-th oldest event in the ring. h.mu is held.
func (h *Hub) at(i int) Event { return h.ring[(h.start+i)%h.size] }

// Subscribe starts a subscription to the events about senderIDs (every
// session when empty). With lastEventID "" it starts live: only events
// added from now on. With the sequence number of the last event the
// subscriber saw, it first replays the later events the ring holds; when
// the ring no longer holds all of them, or lastEventID is not a sequence
// number this run gave out, the subscription says Reset instead and
// replays nothing. Close it when done.
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
	s.Newest = h.next - 1
	if lastEventID != "" {
		last, err := strconv.ParseUint(lastEventID, 10, 64)
		// Covered when the subscriber saw everything before the oldest
		// event held and nothing beyond the newest given out.
		oldest := h.next
		if h.n > 0 {
			oldest = h.at(0).Seq
		}
		if err != nil || last+1 < oldest || last >= h.next {
			s.Reset = true
		} else {
			for i := h.n - int(h.next-1-last); i < h.n; i++ {
				if ev := h.at(i); s.wants(ev.SenderID) {
					s.Replay = append(s.Replay, ev)
				}
			}
		}
	}
	s.ch = make(chan Event, h.buffer)
	s.C = s.ch
	h.subs[s] = struct{}{}
	if h.obs != nil {
		h.obs.StreamClients(len(h.subs))
	}
	return s, nil
}

// remove ends s: its channel closes. h.mu is held.
func (h *Hub) remove(s *Subscription) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	close(s.ch)
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

// Subscription is one subscriber's view of the stream.
type Subscription struct {
	// Reset says that the ring no longer holds everything after the
	// lastEventID given (or it was not this run's): the subscriber should
	// reload the whole state, then carry on with C.
	Reset bool
	// Newest is the sequence number of the newest event given out when
	// the subscription started (the first one's minus one if none): a
	// reset carries it as its id.
	Newest uint64
	// Replay is what the subscriber missed, oldest first, to be handled
	// before C.
	Replay []Event
	// C carries every later event the subscriber wants. It is closed
	// when the subscription ends: Close, the hub's Close, or the
	// subscriber fell a whole buffer behind (Dropped).
	C <-chan Event

	hub     *Hub
	filter  map[string]bool // nil: every session
	ch      chan Event
	dropped bool // guarded by hub.mu
}

// wants reports whether the subscriber wants events about senderID.
func (s *Subscription) wants(senderID string) bool {
	return s.filter == nil || s.filter[senderID]
}

// Dropped reports whether the subscription was cut off because its buffer
// was full.
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
