// Package testmode lets test mode act as the phone and the network for a
// session, through the fake WhatsApp server's control: scan a pending
// pairing, enter a pairing code, unlink the device, ban it, drop its
// socket, replace its stream, refuse its client version, make its actor
// panic, and act as its contacts: send it a message, read what it sent,
// list what contacts decrypted. It is wired only when WHATSAPP_TEST_MODE
// is on.
package testmode

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// Sessions is what the driver needs of the session manager.
type Sessions interface {
	Inspect(ctx context.Context, id string) (sessions.Inspection, error)
	Status(ctx context.Context, id string) (sessions.Status, error)
	Panic(ctx context.Context, id string) error
}

// Driver implements the test routes.
type Driver struct {
	sessions Sessions
	control  fakeserver.Control

	// A ban is lifted when it expires, by a goroutine Close stops.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ sessions.TestDriver = (*Driver)(nil)

// New returns a Driver acting through control.
func New(sessions Sessions, control fakeserver.Control) *Driver {
	ctx, cancel := context.WithCancel(context.Background())
	return &Driver{sessions: sessions, control: control, ctx: ctx, cancel: cancel}
}

// Close stops the driver's background clean-ups.
func (d *Driver) Close() {
	d.cancel()
	d.wg.Wait()
}

// Actions lists the test actions, as the API's POST route names them;
// "sent" is the GET route's.
var Actions = []string{"scan", "enter-code", "unlink", "ban", "drop", "replace", "outdated", "receive", "read", "panic"}

// Result is a test action's answer.
type Result struct {
	Action string `json:"action"`
	Done   string `json:"done"`
	ID     string `json:"id,omitempty"` // receive: the message's ID
}

// Sent is the "sent" answer: what the session sent that fake contacts
// decrypted, in order.
type Sent struct {
	Messages []fakeserver.SentMessage `json:"messages"`
}

// Act performs action on session id.
func (d *Driver) Act(ctx context.Context, id, action string, p sessions.TestParams) (any, error) {
	if action == "panic" {
		if err := d.sessions.Panic(ctx, id); err != nil {
			return nil, err
		}
		return Result{Action: action, Done: "the session's actor panicked once"}, nil
	}
	insp, err := d.sessions.Inspect(ctx, id)
	if err != nil {
		return nil, err
	}
	switch action {
	case "scan":
		return d.scan(ctx, id, insp)
	case "enter-code":
		return d.enterCode(ctx, id, insp)
	}
	user := jidUser(insp.JID)
	if user == "" {
		return nil, sessions.WrongState(insp.State, "session %s has no paired device to act on (it is %s)", id, insp.State)
	}
	switch action {
	case "unlink":
		err = d.control.Unlink(ctx, user, jidDevice(insp.JID))
		return d.done(action, "the phone removed this linked device", err)
	case "replace":
		err = d.control.SendStreamError(ctx, user, fakeserver.StreamReplaced)
		return d.done(action, "another client took over this session's stream", err)
	case "drop":
		n, err := d.control.Drop(ctx, user)
		return d.done(action, fmt.Sprintf("dropped %d socket(s)", n), err)
	case "ban":
		secs := p.Seconds
		if secs <= 0 || secs > 24*3600 {
			return nil, sessions.Errorf(sessions.ErrInvalid, `ban needs {"seconds": N} with N from 1 to 86400`)
		}
		expire := time.Duration(secs) * time.Second
		if err := d.control.SetLoginFailure(ctx, user, fakeserver.LoginFailure{Reason: 402, BanCode: 101, Expire: expire}); err != nil {
			return nil, err
		}
		d.clearAfter(user, expire)
		_, err = d.control.Drop(ctx, user)
		return d.done(action, fmt.Sprintf("banned for %d s", secs), err)
	case "receive":
		if p.From == "" || p.Text == "" {
			return nil, sessions.Errorf(sessions.ErrInvalid, `receive needs {"from": "<phone number>", "text": "..."} and optionally "replyTo"`)
		}
		msgID, err := d.control.ContactSend(ctx, user, p.From, p.Text, p.ReplyTo)
		if err != nil {
			return nil, contactError(action, err)
		}
		return Result{Action: action, Done: "a contact sent the session a message", ID: msgID}, nil
	case "read":
		if p.ID == "" {
			return nil, sessions.Errorf(sessions.ErrInvalid, `read needs {"id": "<message id>"}`)
		}
		if err := d.control.ContactRead(ctx, user, p.ID); err != nil {
			return nil, contactError(action, err)
		}
		return Result{Action: action, Done: "the contact read the message"}, nil
	case "sent":
		msgs, err := d.control.Sent(ctx, user)
		if err != nil {
			return nil, contactError(action, err)
		}
		return Sent{Messages: msgs}, nil
	case "outdated":
		// One refused login, then WhatsApp accepts this client again, so
		// that an operator's restore brings the session back.
		if err := d.control.SetLoginFailure(ctx, user, fakeserver.LoginFailure{Reason: 405}); err != nil {
			return nil, err
		}
		defer func() { _ = d.control.SetLoginFailure(context.WithoutCancel(ctx), user, fakeserver.LoginFailure{}) }()
		if _, err := d.control.Drop(ctx, user); err != nil {
			return nil, err
		}
		err := d.waitState(ctx, id, sessions.StateFailed)
		return d.done(action, "a login was refused as outdated", err)
	}
	return nil, sessions.Errorf(sessions.ErrNotFound, "unknown test action: use %s or %s", strings.Join(Actions[:len(Actions)-1], ", "), Actions[len(Actions)-1])
}

// enterCode types the pairing code the session asked for into the phone,
// as its user would after POST .../pair-phone.
func (d *Driver) enterCode(ctx context.Context, id string, insp sessions.Inspection) (any, error) {
	if insp.PairCode == "" {
		return nil, sessions.WrongState(insp.State,
			"session %s is %s with no pairing code to enter: ask for one with POST /api/whatsapp/session/%s/pair-phone first", id, insp.State, id)
	}
	_, err := d.control.EnterPairingCode(ctx, insp.PairPhone, insp.PairCode)
	return d.done("enter-code", "the phone entered the pairing code and completed the pairing", err)
}

// scan completes the session's pending pairing as the phone would: the QR
// code it shows, or the pairing code it asked for.
func (d *Driver) scan(ctx context.Context, id string, insp sessions.Inspection) (any, error) {
	var err error
	switch {
	case insp.PairCode != "":
		_, err = d.control.EnterPairingCode(ctx, insp.PairPhone, insp.PairCode)
	case insp.QRCode != "":
		_, err = d.control.ScanQR(ctx, insp.QRCode)
	default:
		return nil, sessions.WrongState(insp.State, "session %s is %s: nothing to scan (create it first)", id, insp.State)
	}
	return d.done("scan", "the phone completed the pairing", err)
}

// contactError maps the fake server's answer to a contact action to this
// service's errors: a bad argument, a number not on WhatsApp or an unknown
// message is the caller's; a device the fake server never saw log in is
// a session in the wrong state.
func contactError(action string, err error) error {
	switch {
	case errors.Is(err, fakeserver.ErrInvalidArgument):
		return sessions.Errorf(sessions.ErrInvalid, "%s: from must be a phone number in international form other than the session's, text 1 to 65,536 characters, replyTo at most 128", action)
	case errors.Is(err, fakeserver.ErrNotOnWhatsApp):
		return sessions.Errorf(sessions.ErrNotFound, "%s: the contact is not on WhatsApp", action)
	case errors.Is(err, fakeserver.ErrUnknownMessage):
		return sessions.Errorf(sessions.ErrNotFound, "%s: no contact received a message with this id from the session", action)
	case errors.Is(err, fakeserver.ErrNoDevice):
		return sessions.Errorf(sessions.ErrWrongState, "%s: the session's device has not logged in to the fake server", action)
	}
	// Not the error's text: the control API's paths name the number.
	return fmt.Errorf("%w: fake server: %s failed", sessions.ErrWhatsApp, action)
}

func (d *Driver) done(action, what string, err error) (any, error) {
	if err != nil {
		return nil, fmt.Errorf("%w: fake server: %s: %v", sessions.ErrWhatsApp, action, err)
	}
	return Result{Action: action, Done: what}, nil
}

// clearAfter lifts user's login failure after d, as a ban expires.
func (d *Driver) clearAfter(user string, after time.Duration) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTimer(after)
		defer t.Stop()
		select {
		case <-t.C:
			_ = d.control.SetLoginFailure(d.ctx, user, fakeserver.LoginFailure{})
		case <-d.ctx.Done():
		}
	}()
}

// waitState polls session id until it is in state or ctx ends.
func (d *Driver) waitState(ctx context.Context, id string, state sessions.State) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := d.sessions.Status(ctx, id)
		if err == nil && st.State == state {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("session %s did not become %s: %w", id, state, ctx.Err())
		case <-tick.C:
		}
	}
}

// jidUser is the phone-number part of a JID such as 15550001234:3@s.whatsapp.net.
func jidUser(jid string) string {
	user, _, _ := strings.Cut(jid, "@")
	user, _, _ = strings.Cut(user, ":")
	return user
}

// jidDevice is the device number of a JID such as 15550001234:3@s.whatsapp.net
// (0, the phone itself, when it has none).
func jidDevice(jid string) uint16 {
	user, _, _ := strings.Cut(jid, "@")
	_, dev, _ := strings.Cut(user, ":")
	n, _ := strconv.ParseUint(dev, 10, 16)
	return uint16(n)
}
