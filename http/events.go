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

// streamBatch is how many replayed events are written before a flush.
const streamBatch = 64

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
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	if sub.Reset {
		fmt.Fprintf(&buf, "id: %d\nevent: reset\ndata: {}\n\n", sub.Newest)
	}
	for i, ev := range sub.Replay {
		writeEvent(&buf, ev)
		if (i+1)%streamBatch == 0 && !send() {
			return nil
		}
	}
	if !send() { // also sends the headers: the client knows it is subscribed
		return nil
	}

	beat := time.NewTicker(h.heartbeat)
	defer beat.Stop()
	// Flushes are at least streamFlushEvery apart: an event after a quiet
	// spell goes out at once, and a burst (a fleet restoring) goes out in
	// a few large writes instead of one write per event and client.
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	defer pace.Stop()
	var lastFlush time.Time
	pending := false
	flush := func() bool {
		pending, lastFlush = false, time.Now()
		pace.Stop()
		return send()
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-beat.C:
			buf.WriteString(": ping\n\n")
			if !pending && !flush() {
				return nil
			}
		case <-pace.C:
			if !flush() {
				return nil
			}
		case ev, ok := <-sub.C:
			if !ok {
				flush() // what was queued; then cut off for being slow, or shutting down
				return nil
			}
			writeEvent(&buf, ev)
			// Take what else is queued now.
			for more := true; more && buf.Len() < streamFlushBytes; {
				select {
				case ev, ok = <-sub.C:
					if !ok {
						flush()
						return nil
					}
					writeEvent(&buf, ev)
				default:
					more = false
				}
			}
			switch wait := streamFlushEvery - time.Since(lastFlush); {
			case wait <= 0 || buf.Len() >= streamFlushBytes:
				if !flush() {
					return nil
				}
			case !pending:
				pending = true
				pace.Reset(wait)
			}
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
