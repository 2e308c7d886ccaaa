package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Receiver is a webhook endpoint for tests: it verifies each delivery's
// Standard Webhooks signature with the specification's own Go library,
// records what it accepted, and answers what the test asks (2xx by
// default, an error status, a redirect, a slow answer), or is down
// altogether (its port refuses connections) and up again on the same
// address.
type Receiver struct {
	// URL is where the receiver listens; it stays the same across Down
	// and Up.
	URL string

	t    testing.TB
	wh   *standardwebhooks.Webhook
	addr string

	mu       sync.Mutex
	srv      *http.Server // nil while down
	served   sync.WaitGroup
	status   int
	delay    time.Duration
	location string         // Location of a 3xx answer
	per      map[string]int // a status for one session's events, overriding status
	got      []Delivery
	tries    []Try
}

// Delivery is one delivery the Receiver accepted: verified and to be
// answered 2xx (even if the sender gave up before the answer).
type Delivery struct {
	WebhookID string
	Event     sessions.Event
	At        time.Time
}

// Try is one request that reached the Receiver, whatever it answered.
type Try struct {
	WebhookID string
	SenderID  string // the event's session, once its body verified
	Status    int    // what the receiver answered (0: the sender left before a slow answer)
	Err       error  // why the signature or body was refused, if it was
	At        time.Time
}

// NewReceiver starts a receiver on loopback verifying with secret
// ("whsec_..."); the test's cleanup stops it.
func NewReceiver(t testing.TB, secret string) *Receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &Receiver{t: t, wh: wh, addr: ln.Addr().String(), status: http.StatusNoContent}
	r.URL = "http://" + r.addr + "/hook"
	r.serve(ln)
	t.Cleanup(r.Down)
	return r
}

// serve starts answering on ln; r.mu is not held.
func (r *Receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		_ = srv.Serve(ln)
	}()
}

// Down closes the receiver's port and drops the requests in flight: the
// endpoint is unreachable until Up. A no-op while down.
func (r *Receiver) Down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	r.served.Wait()
}

// Up listens again on the same address after Down.
func (r *Receiver) Up() {
	r.t.Helper()
	r.mu.Lock()
	up := r.srv != nil
	r.mu.Unlock()
	if up {
		return
	}
	// The port was ours a moment ago; another process could take it in
	// between, which a retry does not fix.
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("receiver up again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *Receiver) handle(w http.ResponseWriter, req *http.Request) {
	try := Try{WebhookID: req.Header.Get(standardwebhooks.HeaderWebhookID), At: time.Now()}
	defer func() {
		r.mu.Lock()
		r.tries = append(r.tries, try)
		r.mu.Unlock()
	}()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		try.Err = err
		return
	}
	var ev sessions.Event
	if err := r.wh.Verify(body, req.Header); err != nil {
		try.Err, try.Status = fmt.Errorf("signature: %w", err), http.StatusUnauthorized
	} else if err := json.Unmarshal(body, &ev); err != nil {
		try.Err, try.Status = fmt.Errorf("body: %w", err), http.StatusBadRequest
	} else if ev.ID != try.WebhookID {
		try.Err, try.Status = errors.New("webhook-id is not the event's id"), http.StatusBadRequest
	}
	if try.Err != nil {
		http.Error(w, try.Err.Error(), try.Status)
		return
	}
	try.SenderID = ev.SenderID
	r.mu.Lock()
	status, delay, location := r.status, r.delay, r.location
	if s, ok := r.per[ev.SenderID]; ok {
		status = s
	}
	if status/100 == 2 {
		// Accepted as a receiver that processes first and answers
		// after: a late answer makes the sender try again, and the
		// receiver sees a duplicate.
		r.got = append(r.got, Delivery{WebhookID: try.WebhookID, Event: ev, At: time.Now()})
	}
	r.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay): // the answer the test asked for is slow
		case <-req.Context().Done():
			return
		}
	}
	if location != "" {
		w.Header().Set("Location", location)
	}
	try.Status = status
	w.WriteHeader(status)
}

// Answer makes the receiver answer status (after delay) from now on.
func (r *Receiver) Answer(status int, delay time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.delay, r.location = status, delay, ""
}

// AnswerFor makes the receiver answer status to the events of session
// senderID from now on, whatever it answers others; a status of 0 ends
// that.
func (r *Receiver) AnswerFor(senderID string, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if status == 0 {
		delete(r.per, senderID)
		return
	}
	if r.per == nil {
		r.per = map[string]int{}
	}
	r.per[senderID] = status
}

// Redirect makes the receiver answer status (a 3xx) with a Location of
// location from now on.
func (r *Receiver) Redirect(status int, location string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.delay, r.location = status, 0, location
}

// Got is every delivery accepted so far, in order of arrival.
func (r *Receiver) Got() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// Of is the accepted deliveries of events of type ty, in order of arrival.
func (r *Receiver) Of(ty sessions.EventType) []Delivery {
	var out []Delivery
	for _, d := range r.Got() {
		if d.Event.Type == ty {
			out = append(out, d)
		}
	}
	return out
}

// Tries is every request that reached the receiver so far, in order.
func (r *Receiver) Tries() []Try {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.tries)
}

// Refused is the requests whose signature or body did not verify.
func (r *Receiver) Refused() []Try {
	var out []Try
	for _, t := range r.Tries() {
		if t.Err != nil {
			out = append(out, t)
		}
	}
	return out
}

// Messages is the message.received deliveries accepted so far, decoded,
// in order of arrival.
func (r *Receiver) Messages() []ReceivedMessage {
	var out []ReceivedMessage
	for _, d := range r.Of(sessions.EventMessageReceived) {
		m := ReceivedMessage{Delivery: d}
		if err := json.Unmarshal(d.Event.Data, &m.MessageData); err != nil {
			r.t.Errorf("message.received %s: data %v", d.Event.ID, err)
		}
		out = append(out, m)
	}
	return out
}

// Acks is the message.ack deliveries accepted so far, decoded, in order
// of arrival.
func (r *Receiver) Acks() []Ack {
	var out []Ack
	for _, d := range r.Of(sessions.EventMessageAck) {
		a := Ack{Delivery: d}
		if err := json.Unmarshal(d.Event.Data, &a.AckData); err != nil {
			r.t.Errorf("message.ack %s: data %v", d.Event.ID, err)
		}
		out = append(out, a)
	}
	return out
}

// States is the session.state deliveries accepted so far, decoded, in
// order of arrival.
func (r *Receiver) States() []State {
	var out []State
	for _, d := range r.Of(sessions.EventSessionState) {
		s := State{Delivery: d}
		if err := json.Unmarshal(d.Event.Data, &s.Status); err != nil {
			r.t.Errorf("session.state %s: data %v", d.Event.ID, err)
		}
		out = append(out, s)
	}
	return out
}

// ReceivedMessage is an accepted message.received delivery and its data.
type ReceivedMessage struct {
	Delivery
	sessions.MessageData
}

// Ack is an accepted message.ack delivery and its data.
type Ack struct {
	Delivery
	sessions.AckData
}

// State is an accepted session.state delivery and its data.
type State struct {
	Delivery
	sessions.Status
}
