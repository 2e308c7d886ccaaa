package fakeserver

import (
	"context"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

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
	// A read receipt for a message another session sent goes on to that
	// account's devices, as the contact's would (after s.rmu: sendReceipt
	// takes the queues' locks).
	var readFrom []string // pairs: the sending account, the message id
	s.rmu.Lock()
	for _, item := range acked {
		if item.record != nil {
			item.record.Pending--
			item.record.Delivered = true
		}
	}
	if log := s.received[c.user]; log != nil {
		for _, id := range ids {
			r := log.byID[id]
			if r == nil {
				continue
			}
			switch typ {
			case "read":
				r.Read = true
				if sent := s.sent[r.From]; sent != nil && sent.byID[id] != nil && sent.byID[id].To == c.user {
					sent.byID[id].Read = true
					readFrom = append(readFrom, r.From, id)
				}
			case "read-self":
				r.Read = true
			case "retry":
				r.Retries++
			}
		}
	}
	s.rmu.Unlock()
	for i := 0; i < len(readFrom); i += 2 {
		s.sendReceipt(readFrom[i], c.user, readFrom[i+1], "read")
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
