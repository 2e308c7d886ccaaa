package fakeserver

import (
	"slices"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"
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
