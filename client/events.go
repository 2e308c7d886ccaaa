package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// EventsOptions choose what Events streams.
type EventsOptions struct {
	// SenderIDs keeps only these sessions' events (every session when
	// empty).
	SenderIDs []string
	// LastEventID is the ID of the last event seen on an earlier stream:
	// the service first sends what came after it, or a "reset" event
	// when it no longer holds all of it. Empty: only new events.
	LastEventID string
}

// StreamEvent is one event of the live event stream.
type StreamEvent struct {
	// ID is its sequence number, to give as EventsOptions.LastEventID
	// when reconnecting.
	ID string
	// Type is "session.state", "session.deleted", "message.received",
	// "message.ack" or "reset".
	Type string
	// Data is its JSON data: a sessions.Status for session.state, a
	// sessions.Event envelope for the other event types, {} for reset.
	Data json.RawMessage
}

// Status decodes a session.state event's data.
func (e StreamEvent) Status() (st sessions.Status, err error) {
	err = json.Unmarshal(e.Data, &st)
	return st, err
}

// Event decodes the envelope that is the data of a session.deleted,
// message.received or message.ack event (as the webhooks POST it).
func (e StreamEvent) Event() (ev sessions.Event, err error) {
	err = json.Unmarshal(e.Data, &ev)
	return ev, err
}

// EventStream reads the live event stream. It is not safe for
// concurrent use; Close it when done.
type EventStream struct {
	body io.ReadCloser
	r    *bufio.Reader
	last string
}

// Events is GET /api/whatsapp/events: the live event stream, open once it
// returns (events from then on are not missed). The stream lives as long
// as ctx and the service; c's HTTP client must have no Timeout, which
// would cut it.
func (c *Client) Events(ctx context.Context, opts EventsOptions) (*EventStream, error) {
	q := url.Values{}
	for _, id := range opts.SenderIDs {
		q.Add("senderId", id)
	}
	u := c.base + "/api/whatsapp/events"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if opts.LastEventID != "" {
		req.Header.Set("Last-Event-ID", opts.LastEventID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, apiError(&Response{Status: resp.StatusCode, Header: resp.Header, Body: b})
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return nil, fmt.Errorf("GET /api/whatsapp/events: Content-Type %q, want text/event-stream", ct)
	}
	return &EventStream{body: resp.Body, r: bufio.NewReader(resp.Body), last: opts.LastEventID}, nil
}

// Next waits for the next event. It returns io.EOF when the service ended
// the stream (shutting down, or this client fell too far behind), and the
// context's error once Events' ctx ends. Heartbeat comments are skipped.
func (s *EventStream) Next() (StreamEvent, error) {
	var ev StreamEvent
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || (errors.Is(err, io.EOF) && line == "") {
				err = io.EOF
			}
			return StreamEvent{}, err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" { // the end of an event
			if data == nil {
				ev = StreamEvent{}
				continue
			}
			ev.Data = json.RawMessage(strings.Join(data, "\n"))
			if ev.Type == "" {
				ev.Type = "message" // the SSE default; this service always names its events
			}
			if ev.ID != "" {
				s.last = ev.ID
			}
			return ev, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // a comment: the heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Type = value
		case "data":
			data = append(data, value)
		}
	}
}

// LastEventID is the ID of the last event Next returned (or the one the
// stream was opened with): give it to EventsOptions.LastEventID to carry
// on where this stream ended.
func (s *EventStream) LastEventID() string { return s.last }

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
