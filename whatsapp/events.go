// Package whatsapp is the seam between the service and whatsmeow: the
// Client a session actor drives, the Opener that makes one from a session's
// store, our own event values (translated from whatsmeow's in one type
// switch), and an slog adapter for whatsmeow's logs. Nothing outside this
// package imports whatsmeow's client.
package whatsapp

import "time"

// Event is something that happened to a client. Handlers receive these on
// whatsmeow's goroutines and must only forward them.
type Event interface{ isEvent() }

// Connected: logged in and online.
type Connected struct {
	JID      string
	PushName string
}

// Disconnected: the socket closed unexpectedly (network, server restart, a
// transient login failure). The client does not reconnect by itself.
type Disconnected struct{}

// LoggedOut: WhatsApp ended this login (device removed on the phone, 401,
// 403). The device row is deleted and committed by the time this event is
// emitted, unless DeleteFailed says why it could not be; it must be paired
// again.
type LoggedOut struct {
	Reason       string
	DeleteFailed string
}

// StreamReplaced: another client logged in with the same keys.
type StreamReplaced struct{}

// TemporaryBan: WhatsApp refuses this account until Expire has passed.
type TemporaryBan struct {
	Reason string
	Expire time.Duration
}

// ClientOutdated: WhatsApp refuses this client version.
type ClientOutdated struct{}

// ConnectFailure: a login failure whatsmeow does not classify.
type ConnectFailure struct{ Reason int }

// StreamError: a stream error whatsmeow does not classify.
type StreamError struct{ Code string }

// QRCode: a new code to show for pairing, valid for Timeout.
type QRCode struct {
	Code    string
	Timeout time.Duration
}

// PairingEnded: the QR flow ended; Result is "success", "timeout" (codes
// ran out or the socket closed) or "error" (with Err).
type PairingEnded struct {
	Result string
	Err    error
}

// PairSuccess: the phone accepted this device; a login follows.
type PairSuccess struct{ JID string }

// PushNameChanged: the account's display name arrived or changed (app
// state sync from the phone).
type PushNameChanged struct{ Name string }

// MessageReceived: an incoming one-to-one message whose event the sink
// committed (its content is not kept here).
type MessageReceived struct{}

// StoreWriteFailed: the session's store refused a write (disk full, I/O
// error, read-only file); whatsmeow carries on, but what it could not save
// is lost until writes succeed again.
type StoreWriteFailed struct{ Err string }

// StoreWriteRecovered: a write succeeded after a StoreWriteFailed.
type StoreWriteRecovered struct{}

// KeepAliveTimeout: keepalive pings go unanswered.
type KeepAliveTimeout struct{}

// KeepAliveRestored: keepalive pings are answered again.
type KeepAliveRestored struct{}

func (Connected) isEvent()           {}
func (Disconnected) isEvent()        {}
func (LoggedOut) isEvent()           {}
func (StreamReplaced) isEvent()      {}
func (TemporaryBan) isEvent()        {}
func (ClientOutdated) isEvent()      {}
func (ConnectFailure) isEvent()      {}
func (StreamError) isEvent()         {}
func (QRCode) isEvent()              {}
func (PairingEnded) isEvent()        {}
func (PairSuccess) isEvent()         {}
func (PushNameChanged) isEvent()     {}
func (MessageReceived) isEvent()     {}
func (StoreWriteFailed) isEvent()    {}
func (StoreWriteRecovered) isEvent() {}
func (KeepAliveTimeout) isEvent()    {}
func (KeepAliveRestored) isEvent()   {}
