package fakeserver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"go.mau.fi/libsignal/keys/prekey"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
)

// Limits of ContactSend's arguments: WhatsApp's text limit, and a bound on
// a quoted message ID.
const (
	maxTextLength  = 65536
	maxReplyLength = 128
)

// ContactSend implements Control.
func (s *Server) ContactSend(ctx context.Context, user, from, text, replyTo string) (string, error) {
	from = strings.TrimPrefix(from, "+")
	if err := checkContact(user, from); err != nil {
		return "", err
	}
	switch {
	case text == "" || utf8.RuneCountInString(text) > maxTextLength || !utf8.ValidString(text):
		return "", fmt.Errorf("%w: the text must be valid UTF-8, 1 to %d characters", ErrInvalidArgument, maxTextLength)
	case len(replyTo) > maxReplyLength:
		return "", fmt.Errorf("%w: replyTo is too long", ErrInvalidArgument)
	}
	devices := s.companionsOf(user)
	if len(devices) == 0 {
		return "", ErrNoDevice
	}
	plaintext, err := proto.Marshal(s.textMessage(user, from, text, replyTo))
	if err != nil {
		return "", fmt.Errorf("marshal message: %w", err)
	}
	id := newMessageID()
	now := time.Now()
	e := &receivedEntry{
		ReceivedMessage: ReceivedMessage{ID: id, From: from, Text: text, ReplyTo: replyTo, Timestamp: now.Truncate(time.Second)},
		contact:         s.primaryOf(from),
		plain:           plaintext,
	}
	s.rmu.Lock()
	s.receivedLogLocked(user).add(id, e)
	s.rmu.Unlock()
	var errs []error
	for _, d := range devices {
		if err := s.sendToDevice(ctx, d, id, e); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(devices) {
		return "", errors.Join(errs...)
	}
	return id, nil
}

// ContactPrepare implements Control.
func (s *Server) ContactPrepare(ctx context.Context, user, from string) error {
	from = strings.TrimPrefix(from, "+")
	if err := checkContact(user, from); err != nil {
		return err
	}
	devices := s.companionsOf(user)
	if len(devices) == 0 {
		return ErrNoDevice
	}
	contact := s.primaryOf(from)
	for _, d := range devices {
		if err := contact.open(ctx, d, func() (*prekey.Bundle, error) { return s.companionBundle(d) }); err != nil {
			return fmt.Errorf("prepare for device %d: %w", d.device, err)
		}
	}
	return nil
}

// checkContact checks that phone number from can write to user.
func checkContact(user, from string) error {
	switch {
	case user == "":
		return fmt.Errorf("%w: empty user", ErrInvalidArgument)
	case !validPhone(from):
		return fmt.Errorf("%w: the sender must be a phone number in international form", ErrInvalidArgument)
	case !onWhatsApp(from):
		return fmt.Errorf("%w: the sender", ErrNotOnWhatsApp)
	case from == user:
		return fmt.Errorf("%w: a contact cannot be the account itself", ErrInvalidArgument)
	}
	return nil
}

// sendToDevice encrypts a contact's message for device d and queues it.
func (s *Server) sendToDevice(ctx context.Context, d deviceRef, id string, e *receivedEntry) error {
	q := s.queueOf(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	item, err := s.encryptForDevice(ctx, d, id, e)
	if err != nil {
		return err
	}
	s.enqueue(d, q, item)
	return nil
}

// encryptForDevice builds the stanza of contact message e for device d;
// d's queue lock is held, so messages are encrypted in the order they are
// queued.
func (s *Server) encryptForDevice(ctx context.Context, d deviceRef, id string, e *receivedEntry) (*queued, error) {
	contact := e.contact
	ciphertext, pk, err := contact.encrypt(ctx, d, func() (*prekey.Bundle, error) {
		return s.companionBundle(d)
	}, padMessage(slices.Clone(e.plain)))
	if err != nil {
		return nil, fmt.Errorf("encrypt for device %d: %w", d.device, err)
	}
	encType := "msg"
	if pk {
		encType = "pkmsg"
	}
	node := waBinary.Node{
		Tag: "message",
		Attrs: waBinary.Attrs{
			"from":       types.JID{User: contact.user, Server: types.DefaultUserServer},
			"sender_lid": types.JID{User: lidUser(contact.user), Server: types.HiddenUserServer},
			"id":         id,
			"t":          e.Timestamp.Unix(),
			"type":       "text",
			"notify":     seedPushName(contact.user),
		},
		Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ciphertext}},
	}
	s.rmu.Lock()
	e.Pending++
	if pk {
		e.prekeys++
	}
	s.rmu.Unlock()
	return &queued{key: stanzaKey{class: "message", id: id}, node: node, contact: contact, prekey: pk, record: e}, nil
}

// textMessage is a contact's text: a plain conversation, or an extended
// text quoting replyTo (sent by the account if it sent that ID to this
// contact, else by the contact).
func (s *Server) textMessage(user, from, text, replyTo string) *waE2E.Message {
	if replyTo == "" {
		return &waE2E.Message{Conversation: proto.String(text)}
	}
	author := from
	s.rmu.Lock()
	if log := s.sent[user]; log != nil && log.byID[replyTo] != nil && log.byID[replyTo].To == from {
		author = user
	}
	s.rmu.Unlock()
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text: proto.String(text),
		ContextInfo: &waE2E.ContextInfo{
			StanzaID:    proto.String(replyTo),
			Participant: proto.String(types.JID{User: author, Server: types.DefaultUserServer}.String()),
		},
	}}
}

// ContactRead implements Control.
func (s *Server) ContactRead(_ context.Context, user, id string) error {
	if user == "" || id == "" {
		return fmt.Errorf("%w: empty user or message ID", ErrInvalidArgument)
	}
	s.rmu.Lock()
	var m *SentMessage
	if log := s.sent[user]; log != nil {
		m = log.byID[id]
	}
	var contact string
	if m != nil {
		m.Read = true
		contact = m.To
	}
	s.rmu.Unlock()
	if m == nil {
		return ErrUnknownMessage
	}
	s.sendReceipt(user, contact, id, "read")
	return nil
}

// Sent implements Control.
func (s *Server) Sent(_ context.Context, user string) ([]SentMessage, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if log := s.sent[user]; log != nil {
		return log.copies(), nil
	}
	return []SentMessage{}, nil
}

// Received implements Control.
func (s *Server) Received(_ context.Context, user string) ([]ReceivedMessage, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	out := []ReceivedMessage{}
	if log := s.received[user]; log != nil {
		for _, e := range log.list {
			out = append(out, e.ReceivedMessage)
		}
	}
	return out, nil
}
