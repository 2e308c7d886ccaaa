package http

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// EventStream is the live event stream GET /api/whatsapp/events serves;
// *events.Hub implements it.
type EventStream interface {
	Subscribe(senderIDs []string, lastEventID string) (*events.Subscription, error)
}

var _ EventStream = (*events.Hub)(nil)

// DefaultHeartbeat is how often an event stream with nothing to say sends
// a comment line, so that proxies and load balancers do not close it as
// idle.
const DefaultHeartbeat = 15 * time.Second

// streamWriteTimeout bounds each write to an event stream: a client that
// stops reading for that long is disconnected. The server's WriteTimeout
// (which would end every stream 30 s after it started) is replaced by it.
const streamWriteTimeout = 30 * time.Second

// streamBatch is how many events a stream takes from the ring at a time.
const streamBatch = 256

// streamFlushEvery is the least time between two flushes of a stream
// (the most an event waits for the next flush), and streamFlushBytes how
// much is written at once regardless.
const (
	streamFlushEvery = 20 * time.Millisecond
	streamFlushBytes = 64 << 10
)

// eventsRoute is GET /api/whatsapp/events?senderId=a&senderId=b: Server-Sent
// Events, with Last-Event-ID replay or reset. It returns (ending the
// stream) when the client goes, the stream is cut off for being slow, or
// the service shuts down.
func (h *handlers) eventsRoute(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if k != "senderId" {
			return badRequest(fmt.Sprintf("unknown query parameter %q: only senderId (repeatable) is taken", k))
		}
	}
	ids := q["senderId"]
	for _, id := range ids {
		if err := store.ValidateID(id); err != nil {
			return err
		}
	}
	sub, err := h.events.Subscribe(ids, r.Header.Get("Last-Event-ID"))
	switch {
	case errors.Is(err, events.ErrClosed):
		return &Error{Status: http.StatusServiceUnavailable, Code: "shutting_down", Message: err.Error()}
	case errors.Is(err, events.ErrTooManyClients):
		return &Error{Status: http.StatusServiceUnavailable, Code: "too_many_streams",
			Message: "too many event streams are open; close some, or raise HTTP_MAX_CONNS (half of it may be streams)"}
	case err != nil:
		return err
	}
	defer sub.Close()

	// The server's ReadTimeout does not end the stream: net/http lifts
	// the read deadline once a request without a body is read. Its
	// WriteTimeout would: each write sets its own deadline instead.
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	var lastFlush time.Time
	pending := false // events are in buf, waiting for pace
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	flush := func() bool {
		pending, lastFlush = false, time.Now()
		pace.Stop()
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	if sub.Reset {
		fmt.Fprintf(&buf, "id: %d\nevent: reset\ndata: {}\n\n", sub.Newest)
	}
	// Also sends the headers: the client knows it is subscribed. Replayed
	// events follow at once.
	if !flush() {
		return nil
	}
	lastFlush = time.Time{}

	beat := time.NewTicker(h.heartbeat)
	defer beat.Stop()
	var evs []events.Event
	for {
		// Flushes are at least streamFlushEvery apart: an event after a
		// quiet spell goes out at once, and a burst (a fleet restoring)
		// goes out in a few large writes instead of one write per event
		// and client. While a flush is pending, new events wait in the
		// ring (the subscription's cursor stays behind).
		ready := sub.Ready()
		if pending {
			ready = nil
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-beat.C:
			buf.WriteString(": ping\n\n")
			if !pending && !flush() {
				return nil
			}
			continue
		case <-pace.C:
		case <-ready:
		}
		var open bool
		for open = true; open && buf.Len() < streamFlushBytes; {
			if evs, open = sub.Take(evs[:0], streamBatch); len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				writeEvent(&buf, ev)
			}
		}
		if !open {
			// Cut off for falling behind, or shutting down: what was
			// taken goes out, then the stream ends.
			flush()
			return nil
		}
		if buf.Len() == 0 {
			continue
		}
		if wait := streamFlushEvery - time.Since(lastFlush); wait > 0 && buf.Len() < streamFlushBytes {
			if !pending {
				pending = true
				pace.Reset(wait)
			}
			continue
		}
		if !flush() {
			return nil
		}
	}
}

// writeEvent appends ev in the text/event-stream format.
func writeEvent(buf *bytes.Buffer, ev events.Event) {
	buf.WriteString("id: ")
	buf.WriteString(strconv.FormatUint(ev.Seq, 10))
	buf.WriteString("\nevent: ")
	buf.WriteString(string(ev.Type))
	buf.WriteString("\ndata: ")
	buf.Write(ev.Data)
	buf.WriteString("\n\n")
}
