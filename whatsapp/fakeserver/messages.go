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
	var relays []encryptedPart
	for _, t := range encryptedParts(node) {
		owner, ok := numberOf(t.jid)
		if !ok || !onWhatsApp(owner) {
			continue
		}
		if t.jid.Device != 0 {
			// Another session's companion gets the message as WhatsApp
			// relays it; the account's own other companions do not
			// (not emulated).
			if owner != c.user {
				relays = append(relays, t)
			}
			continue
		}
		encAG := t.enc.AttrGetter()
		ciphertext, _ := t.enc.Content.([]byte)
		plain, err := s.primaryOf(owner).decrypt(c.ctx, from, encAG.OptionalString("type"), ciphertext)
		var msg waE2E.Message
		if err == nil {
			err = proto.Unmarshal(plain, &msg)
		}
		if err != nil {
			// Not the error: libsignal's name the address, a phone number.
			s.undecryptable.Add(1)
			c.log.Warn("message part not decrypted", "enc_type", encAG.OptionalString("type"))
			if owner != c.user {
				s.askRetry(from, owner, id, now, encAG.OptionalInt("count")+1)
			}
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
			// A retried message is recorded once.
			if prev := log.byID[m.ID]; prev == nil || prev.To != m.To {
				log.add(m.ID, m)
			}
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
	s.relay(from, id, now, node, relays, got)
}

// relay queues the parts of a session's message meant for another
// account's companions, as a message from the sending device. got are
// what the accounts' phones decrypted: their texts go to the records.
func (s *Server) relay(from deviceRef, id string, now time.Time, node *waBinary.Node, parts []encryptedPart, got []*SentMessage) {
	identity, hasIdentity := node.GetOptionalChildByTag("device-identity")
	records := make(map[string]*receivedEntry)
	for _, t := range parts {
		owner, _ := numberOf(t.jid)
		d := deviceRef{user: owner, device: t.jid.Device}
		if !slices.Contains(s.companionsOf(owner), d) {
			continue
		}
		e := records[owner]
		if e == nil {
			e = &receivedEntry{ReceivedMessage: ReceivedMessage{ID: id, From: from.user, Timestamp: now.Truncate(time.Second)}}
			for _, m := range got {
				if m.To == owner {
					e.Text, e.ReplyTo = m.Text, m.ReplyTo
				}
			}
			records[owner] = e
			s.rmu.Lock()
			s.receivedLogLocked(owner).add(id, e)
			s.rmu.Unlock()
		}
		content := []waBinary.Node{t.enc}
		if hasIdentity && t.enc.AttrGetter().OptionalString("type") == "pkmsg" {
			content = append(content, identity)
		}
		msg := waBinary.Node{
			Tag: "message",
			Attrs: waBinary.Attrs{
				"from":       types.JID{User: from.user, Device: from.device, Server: types.DefaultUserServer},
				"sender_lid": types.JID{User: lidUser(from.user), Device: from.device, Server: types.HiddenUserServer},
				"id":         id,
				"t":          now.Unix(),
				"type":       "text",
				"notify":     seedPushName(from.user),
			},
			Content: content,
		}
		q := s.queueOf(d)
		q.mu.Lock()
		s.rmu.Lock()
		e.Pending++
		s.rmu.Unlock()
		s.enqueue(d, q, &queued{key: stanzaKey{class: "message", id: id}, node: msg, record: e})
		q.mu.Unlock()
	}
}

// encryptedPart is an <enc> of a message and the device it is for.
type encryptedPart struct {
	jid types.JID
	enc waBinary.Node
}

// encryptedParts lists a message's <enc> elements: one per participant
// (<participants><to jid>), or, in a message whatsmeow resends after a
// retry receipt, the message's own, for its "to".
func encryptedParts(node *waBinary.Node) []encryptedPart {
	var out []encryptedPart
	if parts, ok := node.GetOptionalChildByTag("participants"); ok {
		for _, to := range parts.GetChildren() {
			jid, _ := to.Attrs["jid"].(types.JID)
			if enc, ok := to.GetOptionalChildByTag("enc"); ok && to.Tag == "to" {
				out = append(out, encryptedPart{jid: jid, enc: enc})
			}
		}
		return out
	}
	to, _ := node.Attrs["to"].(types.JID)
	for _, enc := range node.GetChildrenByTag("enc") {
		out = append(out, encryptedPart{jid: to, enc: enc})
	}
	return out
}

// maxRetries bounds the retry receipts exchanged for one message, as
// whatsmeow does.
const maxRetries = 5

// askRetry makes contact, which could not decrypt message id from device
// d (its session was lost, say in a restart of the server), send d a
// retry receipt carrying its keys: whatsmeow then opens a new session and
// sends the message again.
func (s *Server) askRetry(d deviceRef, contact, id string, msgTime time.Time, count int) {
	if count > maxRetries {
		return
	}
	p := s.primaryOf(contact)
	bundle := p.bundleNode(nil)
	var reg waBinary.Node
	var keys []waBinary.Node
	for _, child := range bundle.GetChildren() {
		if child.Tag == "registration" {
			reg = child
		} else {
			keys = append(keys, child)
		}
	}
	node := waBinary.Node{
		Tag: "receipt",
		Attrs: waBinary.Attrs{
			"from": types.JID{User: contact, Server: types.DefaultUserServer},
			"id":   id,
			"type": "retry",
			"t":    time.Now().Unix(),
		},
		Content: []waBinary.Node{
			{Tag: "retry", Attrs: waBinary.Attrs{"count": count, "id": id, "t": msgTime.Unix(), "v": "1"}},
			reg,
			{Tag: "keys", Content: keys},
		},
	}
	p.forget(d)
	q := s.queueOf(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	s.enqueue(d, q, &queued{key: stanzaKey{class: "receipt", id: id, typ: "retry"}, node: node})
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
	if typ == "retry" {
		retry, _ := node.GetOptionalChildByTag("retry")
		if keys, ok := node.GetOptionalChildByTag("keys"); ok {
			// From its second retry receipt the device sends its keys:
			// the server may have had wrong ones (a device seeded by an
			// older SeedDevice, or paired with a server that kept no
			// state).
			s.learnKeys(me, node, &keys)
		}
		s.resend(c.ctx, me, ids[0], retry.AttrGetter().OptionalInt("count"))
	}
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

// resend answers device d's retry receipt for a contact's message id: the
// contact drops its session with d, encrypts the message again from a new
// one (a prekey message) and queues it, as WhatsApp clients do. whatsmeow
// also acknowledges the message it could not decrypt, before or after its
// retry receipt: that takes the first copy off the queue.
func (s *Server) resend(ctx context.Context, d deviceRef, id string, count int) {
	if count <= 0 || count > maxRetries {
		return
	}
	s.rmu.Lock()
	var e *receivedEntry
	if log := s.received[d.user]; log != nil {
		e = log.byID[id]
	}
	s.rmu.Unlock()
	if e == nil || e.contact == nil {
		return // unknown, or relayed from another session: not ours to encrypt
	}
	q := s.queueOf(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	e.contact.forget(d)
	item, err := s.encryptForDevice(ctx, d, id, e)
	if err != nil {
		return
	}
	enc := item.node.GetChildren()[0]
	enc.Attrs["count"] = count
	s.enqueue(d, q, item)
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
