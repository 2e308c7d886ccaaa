package fakeserver

import "time"

// maxRecords is how many messages the server remembers per account and
// direction; older ones are forgotten first.
const maxRecords = 10_000

// SentMessage is a message a session sent that a fake contact decrypted.
type SentMessage struct {
	ID        string    `json:"id"`
	To        string    `json:"to"` // the contact's phone number
	Text      string    `json:"text"`
	ReplyTo   string    `json:"replyTo,omitempty"` // the quoted message's ID
	Timestamp time.Time `json:"timestamp"`         // when the server received it
	// PhoneCopy: the account's phone decrypted the copy the session sent
	// it (DeviceSentMessage), with the same destination and text, in the
	// same stanza (so not for a message the contact got on a retry).
	PhoneCopy bool `json:"phoneCopy"`
	// Delivered and Read: the contact sent a delivery receipt (always,
	// on receipt) and a read receipt (ContactRead).
	Delivered bool `json:"delivered"`
	Read      bool `json:"read"`
}

// ReceivedMessage is a message a fake contact sent to an account, and
// what the account's devices made of it.
type ReceivedMessage struct {
	ID        string    `json:"id"`
	From      string    `json:"from"` // the contact's phone number
	Text      string    `json:"text"`
	ReplyTo   string    `json:"replyTo,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	// Deliveries counts the stanzas sent to the account's devices,
	// redeliveries included.
	Deliveries int `json:"deliveries"`
	// Pending is how many devices have not acknowledged it yet; the
	// server redelivers it to them when they log in again.
	Pending int `json:"pending"`
	// Delivered: a device acknowledged it with a delivery receipt.
	Delivered bool `json:"delivered"`
	// Read: a device sent a read receipt for it (whatsmeow's MarkRead).
	Read bool `json:"read"`
	// Retries counts retry receipts: a device could not decrypt it.
	Retries int `json:"retries"`
}

// receivedEntry is a ReceivedMessage and what the contact needs to
// encrypt it again after a retry receipt.
type receivedEntry struct {
	ReceivedMessage
	contact *primary
	plain   []byte
	prekeys int // encryptions that were prekey messages (pkmsg)
}

// recordLog is an account's messages in one direction, in order, with an
// index by message ID.
type recordLog[T any] struct {
	ids  []string
	list []*T
	byID map[string]*T
}

func (l *recordLog[T]) add(id string, r *T) {
	if l.byID == nil {
		l.byID = make(map[string]*T)
	}
	if len(l.list) >= maxRecords {
		delete(l.byID, l.ids[0])
		l.ids, l.list = l.ids[1:], l.list[1:]
	}
	l.ids = append(l.ids, id)
	l.list = append(l.list, r)
	l.byID[id] = r
}

// copies returns copies of the records, in order.
func (l *recordLog[T]) copies() []T {
	out := make([]T, len(l.list))
	for i, r := range l.list {
		out[i] = *r
	}
	return out
}

// sentLogLocked and receivedLogLocked return an account's logs, creating
// them; s.rmu is held.
func (s *Server) sentLogLocked(user string) *recordLog[SentMessage] {
	l := s.sent[user]
	if l == nil {
		l = &recordLog[SentMessage]{}
		s.sent[user] = l
	}
	return l
}

func (s *Server) receivedLogLocked(user string) *recordLog[receivedEntry] {
	l := s.received[user]
	if l == nil {
		l = &recordLog[receivedEntry]{}
		s.received[user] = l
	}
	return l
}
