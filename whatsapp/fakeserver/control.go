package fakeserver

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Control is what a phone, the network or a contact does to a session,
// and what the contacts got from it. Devices are named by the user part of
// their JID: the phone number the fake server assigned at pairing (or that
// SeedDevice was given), e.g. "15550001234".
type Control interface {
	// ScanQR acts as the phone scanning the QR string a client showed
	// (events.QR or a GetQRChannel code), completes the pairing and returns
	// the new device JID.
	ScanQR(ctx context.Context, qr string) (jid string, err error)
	// EnterPairingCode acts as the phone phone typing the code PairPhone
	// returned, completes the pairing and returns the new device JID.
	EnterPairingCode(ctx context.Context, phone, code string) (jid string, err error)
	// ExpireQR closes the pending unpaired connection that showed qr; the
	// client then gets QRChannelTimeout.
	ExpireQR(ctx context.Context, qr string) error
	// SetLoginFailure makes every following login of user fail with f
	// until cleared with LoginFailure{}.
	SetLoginFailure(ctx context.Context, user string, f LoginFailure) error
	// SendStreamError sends a stream error of kind to every live connection
	// of user, then closes them.
	SendStreamError(ctx context.Context, user string, kind StreamErrorKind) error
	// Unlink acts as the phone removing linked device number device of
	// user: its live connection gets the device_removed stream error, and
	// every later login of that device is refused with 401, also after a
	// restart of a server that keeps a StateFile.
	Unlink(ctx context.Context, user string, device uint16) error
	// Drop closes the live sockets of user abruptly and returns how many.
	Drop(ctx context.Context, user string) (int, error)
	// DropAll closes every live logged-in socket abruptly and returns how
	// many.
	DropAll(ctx context.Context) (int, error)
	// SetIgnoreKeepalives makes the server stop (or resume) answering the
	// keepalive pings of user.
	SetIgnoreKeepalives(ctx context.Context, user string, ignore bool) error
	// Connections is the number of live logged-in connections of user.
	Connections(ctx context.Context, user string) (int, error)
	// Stats reports the server's counters.
	Stats(ctx context.Context) (Stats, error)
	// ConnectionRecord is every device's record of logged-in connections
	// (open now, most ever open at once, logins, streams replaced), by
	// device.
	ConnectionRecord(ctx context.Context) ([]DeviceConnections, error)

	// ContactSend makes the fake contact with phone number from send user
	// a text, quoting message replyTo if not empty: end-to-end encrypted
	// for each of user's linked devices, queued for each until it
	// acknowledges it. It returns the message ID.
	ContactSend(ctx context.Context, user, from, text, replyTo string) (id string, err error)
	// ContactPrepare makes the fake contact with phone number from open
	// its Signal sessions with user's linked devices (taking a prekey
	// bundle of each) without sending anything, as a phone that looked the
	// account up does before its user writes. Its first message is still
	// a prekey message, which the device decrypts as any other. Devices it
	// already has a session with are left as they are.
	ContactPrepare(ctx context.Context, user, from string) error
	// ContactRead makes the contact that received message id from user
	// send a read receipt for it.
	ContactRead(ctx context.Context, user, id string) error
	// Sent lists, in order, the messages user's sessions sent that fake
	// contacts decrypted, with the receipts the contacts sent back.
	Sent(ctx context.Context, user string) ([]SentMessage, error)
	// Received lists, in order, the messages contacts sent to user, with
	// what user's devices acknowledged.
	Received(ctx context.Context, user string) ([]ReceivedMessage, error)
}

var (
	_ Control = (*Server)(nil)
	_ Control = (*Remote)(nil)
)

// LoginFailure is how the logins of a device fail. Reason is the <failure>
// reason whatsmeow sees: 401 or 403 (logged out; the client deletes its
// device), 402 (temporary ban, with BanCode and Expire), 405 (client
// outdated) or 503 (service unavailable; the client reconnects). The zero
// value means logins succeed.
type LoginFailure struct {
	Reason  int
	BanCode int
	Expire  time.Duration
}

// StreamErrorKind names a stream error SendStreamError can send.
type StreamErrorKind string

const (
	// StreamReplaced is <conflict type="replaced"/>: another client logged
	// in with the same keys (whatsmeow: events.StreamReplaced).
	StreamReplaced StreamErrorKind = "replaced"
	// StreamDeviceRemoved is code 401 with <conflict type="device_removed"/>:
	// the device was unlinked from the phone (whatsmeow: events.LoggedOut,
	// and the device is deleted from the store).
	StreamDeviceRemoved StreamErrorKind = "device_removed"
)

// Stats are the server's counters.
type Stats struct {
	Live            int `json:"live"`            // logged-in connections now
	Logins          int `json:"logins"`          // successful logins since start
	Pairings        int `json:"pairings"`        // completed pairings since start
	PendingPairings int `json:"pendingPairings"` // unpaired clients waiting for a scan or code now
	TLSHandshakes   int `json:"tlsHandshakes"`   // completed TLS handshakes since start
	TLSResumed      int `json:"tlsResumed"`      // of which resumed a TLS session
	Undecryptable   int `json:"undecryptable"`   // encrypted parts of messages no fake contact or phone could decrypt
	Queued          int `json:"queued"`          // messages and receipts waiting for a device's acknowledgement now
}

// Errors of Control calls. Remote returns the same values for errors the
// remote server reported.
var (
	// ErrInvalidArgument: a malformed QR code, phone, code, failure reason
	// or stream error kind.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrUnknownQR: no pending connection showed this QR code.
	ErrUnknownQR = errors.New("no pending pairing shows this QR code")
	// ErrNoPendingPairing: no client asked for a pairing code for this phone.
	ErrNoPendingPairing = errors.New("no pending pairing-code request for this phone")
	// ErrWrongCode: the pairing code does not match the client's.
	ErrWrongCode = errors.New("wrong pairing code")
	// ErrPairingInProgress: another call is pairing the same client.
	ErrPairingInProgress = errors.New("pairing already in progress")
	// ErrPairingFailed: the client refused the pairing or went away.
	ErrPairingFailed = errors.New("pairing failed")
	// ErrNotOnWhatsApp: the phone number has no WhatsApp account (it
	// starts with 999).
	ErrNotOnWhatsApp = errors.New("the phone number is not on WhatsApp")
	// ErrNoDevice: the server knows no linked device of the account (it
	// never logged in to this server).
	ErrNoDevice = errors.New("the account has no linked device")
	// ErrUnknownMessage: no contact received a message with this ID from
	// the account.
	ErrUnknownMessage = errors.New("no such message")
)

// SetLoginFailure implements Control.
func (s *Server) SetLoginFailure(_ context.Context, user string, f LoginFailure) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	if f.Reason != 0 && (f.Reason < 400 || f.Reason > 599) {
		return fmt.Errorf("%w: failure reason %d", ErrInvalidArgument, f.Reason)
	}
	if f.Expire < 0 || f.BanCode < 0 {
		return fmt.Errorf("%w: negative ban code or expiry", ErrInvalidArgument)
	}
	s.mu.Lock()
	s.userLocked(user).failure = f
	s.mu.Unlock()
	return nil
}

// SendStreamError implements Control.
func (s *Server) SendStreamError(_ context.Context, user string, kind StreamErrorKind) error {
	var code, conflict string
	switch kind {
	case StreamReplaced:
		conflict = "replaced"
	case StreamDeviceRemoved:
		code, conflict = "401", "device_removed"
	default:
		return fmt.Errorf("%w: stream error kind %q", ErrInvalidArgument, kind)
	}
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	for _, c := range s.takeLive(user) {
		c.sendStreamError(code, conflict)
	}
	return nil
}

// Unlink implements Control.
func (s *Server) Unlink(_ context.Context, user string, device uint16) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	s.mu.Lock()
	err := s.unlinkLocked(deviceRef{user: user, device: device})
	live := s.takeLiveLocked(user, func(c *conn) bool { return c.device == device })
	s.mu.Unlock()
	s.dropQueue(deviceRef{user: user, device: device})
	for _, c := range live {
		c.sendStreamError("401", string(StreamDeviceRemoved))
	}
	return err
}

// Drop implements Control.
func (s *Server) Drop(_ context.Context, user string) (int, error) {
	if user == "" {
		return 0, fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	return dropAll(s.takeLive(user)), nil
}

// DropAll implements Control.
func (s *Server) DropAll(context.Context) (int, error) {
	return dropAll(s.takeLive("")), nil
}

func dropAll(conns []*conn) int {
	for _, c := range conns {
		c.closeNow()
	}
	return len(conns)
}

// SetIgnoreKeepalives implements Control.
func (s *Server) SetIgnoreKeepalives(_ context.Context, user string, ignore bool) error {
	if user == "" {
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	}
	s.mu.Lock()
	s.userLocked(user).ignoreKeepalives = ignore
	s.mu.Unlock()
	return nil
}

// Connections implements Control.
func (s *Server) Connections(_ context.Context, user string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[user]; u != nil {
		return len(u.live), nil
	}
	return 0, nil
}

// Stats implements Control.
func (s *Server) Stats(context.Context) (Stats, error) {
	s.mu.Lock()
	st := Stats{Logins: s.logins, Pairings: s.pairings, PendingPairings: len(s.unpaired),
		TLSHandshakes: int(s.tlsHandshakes.Load()), TLSResumed: int(s.tlsResumed.Load()),
		Undecryptable: int(s.undecryptable.Load())}
	for _, u := range s.users {
		st.Live += len(u.live)
	}
	queues := make([]*deviceQueue, 0, len(s.queues))
	for _, q := range s.queues {
		queues = append(queues, q)
	}
	s.mu.Unlock()
	// A queue's lock is taken before s.mu, never under it.
	for _, q := range queues {
		q.mu.Lock()
		st.Queued += len(q.items)
		q.mu.Unlock()
	}
	return st, nil
}

// DeviceName is the name the companion paired as phone number user gave
// itself (its DeviceProps os), as the phone lists it under Linked devices;
// empty if no such pairing happened on this server.
func (s *Server) DeviceName(user string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deviceNames[user]
}
