package whatsapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Outgoing is a text message to send; CheckSend has checked it.
type Outgoing struct {
	To      string
	Text    string
	ReplyTo string
	// ID is the message's id, made beforehand by NewMessageID so that a
	// retried send carries the same id (recipients drop the duplicate);
	// "" makes a new one.
	ID string
}

// PublishTimeout bounds how long an incoming message or receipt waits for
// the sink to commit its event before the handler gives up: whatsmeow then
// does not acknowledge it, and WhatsApp delivers it again at the next login.
const PublishTimeout = 15 * time.Second

// maxMessageID bounds a message id given by a caller (replyTo, mark read).
const maxMessageID = 128

// phoneNumber is a phone number in international form: an optional "+",
// then 7 to 15 digits, not starting with 0.
var phoneNumber = regexp.MustCompile(`^\+?[1-9][0-9]{6,14}$`)

// messageID is what a message id may hold: WhatsApp's are hex, clients'
// vary, so any printable ASCII without spaces.
var messageID = regexp.MustCompile(`^[\x21-\x7e]+$`)

// invalid is an ErrInvalid with its sentence.
func invalid(format string, args ...any) error {
	return sessions.Errorf(sessions.ErrInvalid, format, args...)
}

// CheckSend checks a send request's recipient, text and replyTo without
// asking WhatsApp; the errors are ErrInvalid and name no number.
func CheckSend(req sessions.SendRequest) error {
	if _, _, err := parseRecipient(req.To); err != nil {
		return err
	}
	if err := checkText(req.Text); err != nil {
		return err
	}
	if req.ReplyTo != "" {
		if err := CheckMessageID(req.ReplyTo); err != nil {
			return invalid("replyTo: %s", err)
		}
	}
	return nil
}

// CheckRead checks a mark-read request's message id and chat.
func CheckRead(req sessions.ReadRequest) error {
	if err := CheckMessageID(req.ID); err != nil {
		return err
	}
	if _, _, err := parseRecipient(req.Chat); err != nil {
		return invalid("chat: %s", err)
	}
	return nil
}

// CheckMessageID checks a message id given by a caller.
func CheckMessageID(id string) error {
	if len(id) == 0 || len(id) > maxMessageID || !messageID.MatchString(id) {
		return invalid("a message id is 1 to %d printable ASCII characters without spaces", maxMessageID)
	}
	return nil
}

func checkText(text string) error {
	switch n := utf8.RuneCountInString(text); {
	case !utf8.ValidString(text):
		return invalid("text is not valid UTF-8")
	case strings.TrimSpace(text) == "":
		return invalid("text is empty")
	case n > sessions.MaxTextLength:
		return invalid("text is %d characters long; WhatsApp takes at most %d", n, sessions.MaxTextLength)
	}
	return nil
}

// parseRecipient reads a phone number in international form (phone is its
// digits) or a user JID (jid). Its errors never repeat the input.
func parseRecipient(to string) (phone string, jid types.JID, err error) {
	const want = `must be a phone number in international form ("+15551234567") or a user JID ("15551234567@s.whatsapp.net")`
	if !strings.Contains(to, "@") {
		if !phoneNumber.MatchString(to) {
			return "", types.EmptyJID, invalid("the recipient %s", want)
		}
		return strings.TrimPrefix(to, "+"), types.EmptyJID, nil
	}
	jid, err = types.ParseJID(to)
	if err != nil || jid.User == "" || jid.ToNonAD() != jid || jid.String() != to ||
		(jid.Server != types.DefaultUserServer && jid.Server != types.HiddenUserServer) {
		return "", types.EmptyJID, invalid("the recipient %s, without a device", want)
	}
	return "", jid, nil
}

// NewMessageID makes a message id as whatsmeow does for a client with no
// account yet ("3EB0" and 18 hex digits), for an id needed before a client
// is at hand (an idempotent send records it first).
func NewMessageID() string { return string((*whatsmeow.Client)(nil).GenerateMessageID()) }

// redactDigits hides runs of digits (phone numbers, the users of JIDs) in
// an error of whatsmeow's before it reaches a log or an answer.
var redactDigits = regexp.MustCompile(`[0-9]{5,}`)

// whatsappErr is an ErrWhatsApp for err, which whatsmeow made.
func whatsappErr(what string, err error) error {
	if errors.Is(err, whatsmeow.ErrNotConnected) {
		return ErrNotConnected
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return sessions.Errorf(sessions.ErrWhatsApp, "%s: %s", what, redactDigits.ReplaceAllString(err.Error(), "…"))
}

// contacts resolves phone numbers to JIDs through WhatsApp, keeping the
// positive answers for the client's lifetime (a number on WhatsApp stays
// on it; one that is not may join, so a negative answer is asked again).
type contacts struct {
	lookup func(ctx context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error)
	mu     sync.Mutex
	known  map[string]types.JID
}

// maxKnownContacts bounds a client's cache of resolved numbers.
const maxKnownContacts = 4096

// resolve is the JID of phone (digits), or ErrNoRecipient.
func (r *contacts) resolve(ctx context.Context, phone string) (types.JID, error) {
	r.mu.Lock()
	jid, ok := r.known[phone]
	r.mu.Unlock()
	if ok {
		return jid, nil
	}
	answers, err := r.lookup(ctx, []string{"+" + phone})
	if err != nil {
		return types.EmptyJID, whatsappErr("look the recipient up", err)
	}
	for _, a := range answers {
		if !a.IsIn || a.JID.IsEmpty() {
			continue
		}
		r.mu.Lock()
		if r.known == nil || len(r.known) >= maxKnownContacts {
			r.known = map[string]types.JID{} // bounded: start over
		}
		r.known[phone] = a.JID
		r.mu.Unlock()
		return a.JID, nil
	}
	return types.EmptyJID, sessions.ErrNoRecipient
}

// recipient is the JID of to, a phone number or a phone-number JID (both
// asked of WhatsApp, so that one not on it is ErrNoRecipient rather than a
// failed send), or a LID, used as is.
func (c *client) recipient(ctx context.Context, to string) (types.JID, error) {
	phone, jid, err := parseRecipient(to)
	if err != nil {
		return jid, err
	}
	if phone == "" && jid.Server == types.DefaultUserServer && phoneNumber.MatchString(jid.User) {
		phone = jid.User
	}
	if phone == "" {
		return jid, nil
	}
	return c.contacts.resolve(ctx, phone)
}

// Send sends a text message and returns once WhatsApp's server has
// acknowledged it.
func (c *client) Send(ctx context.Context, m Outgoing) (sessions.SentMessage, error) {
	req := sessions.SendRequest{To: m.To, Text: m.Text, ReplyTo: m.ReplyTo}
	if err := CheckSend(req); err != nil {
		return sessions.SentMessage{}, err
	}
	to, err := c.recipient(ctx, m.To)
	if err != nil {
		return sessions.SentMessage{}, err
	}
	msg := &waE2E.Message{Conversation: proto.String(m.Text)}
	if m.ReplyTo != "" {
		// A reply quotes by id only: the quoted message's content is not
		// kept here, so clients show the reply without the quote's text.
		msg = &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
			Text:        proto.String(m.Text),
			ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String(m.ReplyTo)},
		}}
	}
	id := m.ID
	if id == "" {
		id = string(c.cli.GenerateMessageID())
	}
	resp, err := c.cli.SendMessage(ctx, to, msg, whatsmeow.SendRequestExtra{ID: types.MessageID(id)})
	if err != nil {
		return sessions.SentMessage{}, whatsappErr("send the message", err)
	}
	return sessions.SentMessage{ID: string(resp.ID), Timestamp: resp.Timestamp.UTC()}, nil
}

// MarkRead sends a read receipt for ids, messages received in chat.
func (c *client) MarkRead(ctx context.Context, chat string, ids []string) error {
	for _, id := range ids {
		if err := CheckRead(sessions.ReadRequest{ID: id, Chat: chat}); err != nil {
			return err
		}
	}
	phone, jid, _ := parseRecipient(chat)
	if phone != "" {
		jid = types.NewJID(phone, types.DefaultUserServer)
	}
	mids := make([]types.MessageID, len(ids))
	for i, id := range ids {
		mids[i] = types.MessageID(id)
	}
	if err := c.cli.MarkRead(ctx, mids, time.Now(), jid, types.EmptyJID); err != nil {
		return whatsappErr("mark the message read", err)
	}
	return nil
}

// eventID is prefix and the first 32 hex digits of the SHA-256 of parts
// joined by NUL: the same message or receipt, delivered again, gets the
// same id.
func eventID(prefix string, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return prefix + hex.EncodeToString(h[:])[:32]
}

// MessageEventID is a message.received event's id.
func MessageEventID(senderID, chat, messageID string) string {
	return eventID("msg_", senderID, chat, messageID)
}

// AckEventID is a message.ack event's id.
func AckEventID(senderID, chat string, status sessions.AckStatus, ids []string) string {
	sorted := slices.Sorted(slices.Values(ids))
	return eventID("ack_", senderID, chat, string(status), strings.Join(sorted, ","))
}

// byPhone is jid as the phone-number JID alt when jid is a LID and alt
// its phone number (whatsmeow's SenderAlt), so that events name users as
// the API's callers do; else jid, without a device.
func byPhone(jid, alt types.JID) string {
	if jid.Server == types.HiddenUserServer && alt.Server == types.DefaultUserServer {
		return alt.ToNonAD().String()
	}
	return jid.ToNonAD().String()
}

// userChat reports whether jid is a one-to-one chat with a user.
func userChat(jid types.JID) bool {
	return jid.Server == types.DefaultUserServer || jid.Server == types.HiddenUserServer
}

// messageEvent is the message.received event of e, and false for what is
// not an incoming one-to-one message with text: groups, broadcasts and
// status, the account's own messages sent from its other devices, protocol
// messages, reactions, media without a caption.
func messageEvent(senderID string, e *events.Message) (sessions.Event, bool) {
	info := e.Info
	if info.IsGroup || info.IsFromMe || !userChat(info.Chat) || !userChat(info.Sender) {
		return sessions.Event{}, false
	}
	text, ctxInfo := messageText(e.Message)
	if text == "" {
		return sessions.Event{}, false
	}
	chat := byPhone(info.Chat, info.SenderAlt)
	data := sessions.MessageData{
		ID:        string(info.ID),
		Chat:      chat,
		From:      byPhone(info.Sender, info.SenderAlt),
		PushName:  info.PushName,
		Text:      text,
		ReplyTo:   ctxInfo.GetStanzaID(),
		Timestamp: info.Timestamp,
	}
	return sessions.Event{Type: sessions.EventMessageReceived, ID: MessageEventID(senderID, chat, data.ID),
		Timestamp: info.Timestamp, SenderID: senderID, Data: mustJSON(data)}, true
}

// messageText is a message's text (or a media message's caption) and the
// context that may say which message it replies to.
func messageText(m *waE2E.Message) (string, *waE2E.ContextInfo) {
	switch {
	case m.GetConversation() != "":
		return m.GetConversation(), nil
	case m.GetExtendedTextMessage() != nil:
		x := m.GetExtendedTextMessage()
		return x.GetText(), x.GetContextInfo()
	case m.GetImageMessage() != nil:
		x := m.GetImageMessage()
		return x.GetCaption(), x.GetContextInfo()
	case m.GetVideoMessage() != nil:
		x := m.GetVideoMessage()
		return x.GetCaption(), x.GetContextInfo()
	case m.GetDocumentMessage() != nil:
		x := m.GetDocumentMessage()
		return x.GetCaption(), x.GetContextInfo()
	}
	return "", nil
}

// receiptEvent is the message.ack event of e, and false for what is not a
// delivery or read receipt of messages this account sent in a one-to-one
// chat (receipts from the account's own devices, read-self, played,
// retries, groups).
func receiptEvent(senderID string, e *events.Receipt) (sessions.Event, bool) {
	var status sessions.AckStatus
	switch e.Type {
	case types.ReceiptTypeDelivered:
		status = sessions.AckDelivered
	case types.ReceiptTypeRead:
		status = sessions.AckRead
	default:
		return sessions.Event{}, false
	}
	if e.IsGroup || e.IsFromMe || !userChat(e.Chat) || len(e.MessageIDs) == 0 {
		return sessions.Event{}, false
	}
	chat := byPhone(e.Chat, e.SenderAlt)
	ids := make([]string, len(e.MessageIDs))
	for i, id := range e.MessageIDs {
		ids[i] = string(id)
	}
	data := sessions.AckData{IDs: ids, Chat: chat, Status: status, Timestamp: e.Timestamp}
	return sessions.Event{Type: sessions.EventMessageAck, ID: AckEventID(senderID, chat, status, ids),
		Timestamp: e.Timestamp, SenderID: senderID, Data: mustJSON(data)}, true
}

// mustJSON marshals v, one of this package's event data types, which
// always marshal.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("marshal %T: %v", v, err))
	}
	return b
}

// commit publishes ev to the sink and waits until it is committed, for at
// most PublishTimeout, and no longer than the client is open. It reports
// whether the event is committed: only then may whatsmeow acknowledge what
// it came from.
func (c *client) commit(ev sessions.Event) bool {
	done := make(chan error, 1)
	c.sink.Publish([]sessions.Event{ev}, func(err error) {
		select {
		case done <- err:
		default:
		}
	})
	t := time.NewTimer(c.publishTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			c.log.Warn("event not committed; WhatsApp will deliver it again", "type", ev.Type, "event_id", ev.ID, "err", err)
			c.redeliver()
			return false
		}
		return true
	case <-t.C:
		c.log.Warn("event not committed in time; WhatsApp will deliver it again", "type", ev.Type, "event_id", ev.ID, "timeout", c.publishTimeout)
		c.redeliver()
		return false
	case <-c.closed:
		return false
	}
}

// redeliver drops the connection after an event could not be committed,
// once per connection. WhatsApp delivers again what a client did not
// acknowledge only when it logs in again: without a new login the message
// would wait for the next disconnect, hours or days away, while later ones
// pass it. The session reconnects by its backoff, which also paces a sink
// that keeps failing.
func (c *client) redeliver() {
	if c.redelivering.Swap(true) {
		return
	}
	c.log.Warn("dropping the connection so that WhatsApp delivers again what was not committed")
	go func() {
		c.drop()
		select {
		case <-c.closed:
		default:
			c.emit(Disconnected{})
		}
	}()
}

// DiscardEvents is an EventSink that keeps nothing: it reports every event
// committed at once, so WhatsApp's messages are acknowledged and lost. It
// is for a service that delivers no events, and says so.
type DiscardEvents struct{}

// Publish reports evs committed without keeping them.
func (DiscardEvents) Publish(_ []sessions.Event, done func(error)) {
	if done != nil {
		done(nil)
	}
}

var _ sessions.EventSink = DiscardEvents{}

// onMessage turns an incoming message into an event and reports whether
// whatsmeow may acknowledge it.
func (c *client) onMessage(e *events.Message) bool {
	ev, ok := messageEvent(c.id, e)
	if !ok {
		return true
	}
	if !c.commit(ev) {
		return false
	}
	c.emit(MessageReceived{})
	return true
}

// onReceipt turns a receipt into an event and reports whether whatsmeow
// may acknowledge it.
func (c *client) onReceipt(e *events.Receipt) bool {
	ev, ok := receiptEvent(c.id, e)
	if !ok {
		return true
	}
	return c.commit(ev)
}
