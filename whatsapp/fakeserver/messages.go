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

// handleMessage handles a <message> a logged-in device sent: each
// participant's <enc> is decrypted by the primary device it is addressed
// to (a contact, or the account's own phone reading its copy), the server
// acknowledges the message (whatsmeow's SendMessage waits for that ack),
// and each contact that read it answers with a delivery receipt.
func (c *conn) handleMessage(node *waBinary.Node) {
	s := c.srv
	ag := node.AttrGetter()
	id := ag.OptionalString("id")
	from := deviceRef{user: c.user, device: c.device}
	now := time.Now()
	var got []*SentMessage
	var copies []*waE2E.DeviceSentMessage
	parts, _ := node.GetOptionalChildByTag("participants")
	for _, to := range parts.GetChildren() {
		jid, _ := to.Attrs["jid"].(types.JID)
		owner, ok := numberOf(jid)
		enc, hasEnc := to.GetOptionalChildByTag("enc")
		if to.Tag != "to" || !ok || !hasEnc || jid.Device != 0 || !onWhatsApp(owner) {
			// Other companions, own or a contact's, are not emulated.
			continue
		}
		ciphertext, _ := enc.Content.([]byte)
		plain, err := s.primaryOf(owner).decrypt(c.ctx, from, enc.AttrGetter().OptionalString("type"), ciphertext)
		var msg waE2E.Message
		if err == nil {
			err = proto.Unmarshal(plain, &msg)
		}
		if err != nil {
			// Not the error: libsignal's name the address, a phone number.
			s.undecryptable.Add(1)
			c.log.Warn("message part not decrypted", "enc_type", enc.AttrGetter().OptionalString("type"))
			continue
		}
		if owner == c.user {
			if dsm := msg.GetDeviceSentMessage(); dsm != nil {
				copies = append(copies, dsm)
			}
			continue
		}
		text, replyTo := textOf(&msg)
		got = append(got, &SentMessage{ID: id, To: owner, Text: text, ReplyTo: replyTo, Timestamp: now})
	}
	for _, m := range got {
		m.PhoneCopy = slices.ContainsFunc(copies, func(dsm *waE2E.DeviceSentMessage) bool {
			dest, err := types.ParseJID(dsm.GetDestinationJID())
			user, ok := numberOf(dest)
			text, replyTo := textOf(dsm.GetMessage())
			return err == nil && ok && user == m.To && text == m.Text && replyTo == m.ReplyTo
		})
		m.Delivered = true
	}
	if len(got) > 0 {
		s.rmu.Lock()
		log := s.sentLogLocked(c.user)
		for _, m := range got {
			log.add(m.ID, m)
		}
		s.rmu.Unlock()
	}
	// Acknowledged once recorded: when SendMessage returns, Sent has it.
	ack := waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{"class": "message", "id": id, "t": now.Unix()}}
	if to, ok := node.Attrs["to"]; ok {
		ack.Attrs["from"] = to
	}
	if err := c.send(ack); err != nil {
		c.log.Debug("message ack not sent", "err", err)
	}
	for _, m := range got {
		s.sendReceipt(c.user, m.To, m.ID, "")
	}
}

// textOf is the text of a text message (or a caption) and the ID of the
// message it quotes.
func textOf(msg *waE2E.Message) (text, replyTo string) {
	switch {
	case msg.GetConversation() != "":
		return msg.GetConversation(), ""
	case msg.GetExtendedTextMessage() != nil:
		ext := msg.GetExtendedTextMessage()
		return ext.GetText(), ext.GetContextInfo().GetStanzaID()
	case msg.GetImageMessage() != nil:
		img := msg.GetImageMessage()
		return img.GetCaption(), img.GetContextInfo().GetStanzaID()
	}
	return "", ""
}

// sendReceipt queues, for every companion of account, contact's receipt
// of type typ ("" delivery, "read") for message id.
func (s *Server) sendReceipt(account, contact, id, typ string) {
	attrs := waBinary.Attrs{
		"from": types.JID{User: contact, Server: types.DefaultUserServer},
		"id":   id,
		"t":    time.Now().Unix(),
	}
	if typ != "" {
		attrs["type"] = typ
	}
	node := waBinary.Node{Tag: "receipt", Attrs: attrs}
	for _, d := range s.companionsOf(account) {
		q := s.queueOf(d)
		q.mu.Lock()
		s.enqueue(d, q, &queued{key: stanzaKey{class: "receipt", id: id, typ: typ}, node: node})
		q.mu.Unlock()
	}
}

// handleReceipt handles a device's <receipt> for messages it got from a
// contact: a delivery receipt (whatsmeow sends it once its handlers
// succeeded) acknowledges them, a read receipt (MarkRead) marks them
// read, a retry receipt counts a failed decryption.
func (c *conn) handleReceipt(node *waBinary.Node) {
	s := c.srv
	ag := node.AttrGetter()
	typ := ag.OptionalString("type")
	ids := []string{ag.OptionalString("id")}
	if list, ok := node.GetOptionalChildByTag("list"); ok {
		for _, item := range list.GetChildren() {
			if id, ok := item.Attrs["id"].(string); ok && item.Tag == "item" {
				ids = append(ids, id)
			}
		}
	}
	me := deviceRef{user: c.user, device: c.device}
	var acked []*queued
	if typ != "retry" {
		// A read receipt implies delivery.
		for _, id := range ids {
			if item := s.acknowledge(me, stanzaKey{class: "message", id: id}); item != nil {
				acked = append(acked, item)
			}
		}
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	for _, item := range acked {
		if item.record != nil {
			item.record.Pending--
			item.record.Delivered = true
		}
	}
	log := s.received[c.user]
	if log == nil {
		return
	}
	for _, id := range ids {
		r := log.byID[id]
		if r == nil {
			continue
		}
		switch typ {
		case "read", "read-self":
			r.Read = true
		case "retry":
			r.Retries++
		}
	}
}

// handleAck handles a device's <ack>: of a receipt it got (it handled
// it), or of a message it gave up on (it could not decrypt or parse it).
func (c *conn) handleAck(node *waBinary.Node) {
	ag := node.AttrGetter()
	key := stanzaKey{class: ag.OptionalString("class"), id: ag.OptionalString("id")}
	if key.class == "receipt" {
		key.typ = ag.OptionalString("type")
	}
	if key.class != "receipt" && key.class != "message" {
		return
	}
	item := c.srv.acknowledge(deviceRef{user: c.user, device: c.device}, key)
	if item != nil && item.record != nil {
		c.srv.rmu.Lock()
		item.record.Pending--
		c.srv.rmu.Unlock()
	}
}

// ContactSend implements Control.
func (s *Server) ContactSend(ctx context.Context, user, from, text, replyTo string) (string, error) {
	from = strings.TrimPrefix(from, "+")
	switch {
	case user == "":
		return "", fmt.Errorf("%w: empty user", ErrInvalidArgument)
	case !validPhone(from):
		return "", fmt.Errorf("%w: the sender must be a phone number in international form", ErrInvalidArgument)
	case !onWhatsApp(from):
		return "", fmt.Errorf("%w: the sender", ErrNotOnWhatsApp)
	case from == user:
		return "", fmt.Errorf("%w: a contact cannot be the account itself", ErrInvalidArgument)
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
	contact := s.primaryOf(from)
	id := newMessageID()
	now := time.Now()
	rec := &ReceivedMessage{ID: id, From: from, Text: text, ReplyTo: replyTo, Timestamp: now.Truncate(time.Second)}
	s.rmu.Lock()
	s.receivedLogLocked(user).add(id, rec)
	s.rmu.Unlock()
	var errs []error
	for _, d := range devices {
		if err := s.sendToDevice(ctx, d, contact, id, now, plaintext, rec); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == len(devices) {
		return "", errors.Join(errs...)
	}
	return id, nil
}

// sendToDevice encrypts a contact's message for device d and queues it.
func (s *Server) sendToDevice(ctx context.Context, d deviceRef, contact *primary, id string, now time.Time, plaintext []byte, rec *ReceivedMessage) error {
	q := s.queueOf(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	ciphertext, pk, err := contact.encrypt(ctx, d, func() (*prekey.Bundle, error) {
		return s.companionBundle(d)
	}, padMessage(slices.Clone(plaintext)))
	if err != nil {
		return fmt.Errorf("encrypt for device %d: %w", d.device, err)
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
			"t":          now.Unix(),
			"type":       "text",
			"notify":     seedPushName(contact.user),
		},
		Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ciphertext}},
	}
	s.rmu.Lock()
	rec.Pending++
	s.rmu.Unlock()
	s.enqueue(d, q, &queued{key: stanzaKey{class: "message", id: id}, node: node, contact: contact, prekey: pk, record: rec})
	return nil
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
	if log := s.received[user]; log != nil {
		return log.copies(), nil
	}
	return []ReceivedMessage{}, nil
}
