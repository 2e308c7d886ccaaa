package sessions

import (
	"context"
	"errors"
	"time"
)

// MaxTextLength is the longest text WhatsApp takes in one message, in
// characters.
const MaxTextLength = 65536

// ErrNoRecipient: the recipient is not on WhatsApp (the API answers 404).
var ErrNoRecipient = errors.New("recipient is not on WhatsApp")

// Errors of a send with an Idempotency-Key.
var (
	// ErrKeyReused: the key was used before with another request (the
	// API answers 422).
	ErrKeyReused = errors.New("the Idempotency-Key was used with a different request")
	// ErrKeyInProgress: a request with the same key is still being sent
	// (the API answers 409; retry once it has answered).
	ErrKeyInProgress = errors.New("a request with this Idempotency-Key is still in progress")
)

// SendRequest is a text message to send from a session to one chat.
type SendRequest struct {
	// To is a phone number in international form ("+4915...", digits
	// only after the plus) or a user JID ("4915...@s.whatsapp.net").
	To string `json:"to"`
	// Text is the message, 1 to MaxTextLength characters.
	Text string `json:"text"`
	// ReplyTo is the id of a message in the same chat this one quotes.
	ReplyTo string `json:"replyTo,omitempty"`
	// IdempotencyKey (the Idempotency-Key header, not the body) makes a
	// retried request answer as the first one did instead of sending
	// again, across restarts.
	IdempotencyKey string `json:"-"`
}

// SentMessage is WhatsApp's acknowledgement of a sent message.
type SentMessage struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
}

// ReadRequest marks a received message as read.
type ReadRequest struct {
	// ID is the message's id.
	ID string `json:"-"`
	// Chat is the chat the message arrived in, as a phone number or a
	// JID (the message event's chat).
	Chat string `json:"chat"`
}

// Messenger sends and marks messages through a session; package actors
// implements it beside Service.
type Messenger interface {
	// Send sends req from session id and returns once WhatsApp's server
	// acknowledged it. ErrWrongState unless the session is connected,
	// ErrInvalid for a bad recipient or text, ErrNoRecipient when the
	// recipient is not on WhatsApp, ErrWhatsApp when the server refused.
	Send(ctx context.Context, id string, req SendRequest) (SentMessage, error)
	// MarkRead tells the chat's sender that session id read the message.
	MarkRead(ctx context.Context, id string, req ReadRequest) error
}
