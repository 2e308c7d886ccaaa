package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

func TestCheckSend(t *testing.T) {
	long := strings.Repeat("é", sessions.MaxTextLength) // 2 bytes each: counted in characters
	tests := []struct {
		name string
		req  sessions.SendRequest
		ok   bool
	}{
		{"phone with plus", sessions.SendRequest{To: "+4915112345678", Text: "hi"}, true},
		{"phone digits", sessions.SendRequest{To: "4915112345678", Text: "hi"}, true},
		{"user JID", sessions.SendRequest{To: "4915112345678@s.whatsapp.net", Text: "hi"}, true},
		{"LID", sessions.SendRequest{To: "123456789012345@lid", Text: "hi"}, true},
		{"longest text", sessions.SendRequest{To: "+4915112345678", Text: long}, true},
		{"reply", sessions.SendRequest{To: "+4915112345678", Text: "hi", ReplyTo: "3EB0ABCDEF"}, true},
		{"empty recipient", sessions.SendRequest{To: "", Text: "hi"}, false},
		{"short number", sessions.SendRequest{To: "+987", Text: "hi"}, false},
		{"leading zero", sessions.SendRequest{To: "+0123456789", Text: "hi"}, false},
		{"letters", sessions.SendRequest{To: "+49151abc5678", Text: "hi"}, false},
		{"group JID", sessions.SendRequest{To: "123-456@g.us", Text: "hi"}, false},
		{"device JID", sessions.SendRequest{To: "4915112345678:3@s.whatsapp.net", Text: "hi"}, false},
		{"broadcast", sessions.SendRequest{To: "status@broadcast", Text: "hi"}, false},
		{"no user", sessions.SendRequest{To: "@s.whatsapp.net", Text: "hi"}, false},
		{"empty text", sessions.SendRequest{To: "+4915112345678", Text: ""}, false},
		{"blank text", sessions.SendRequest{To: "+4915112345678", Text: " \n\t"}, false},
		{"oversized text", sessions.SendRequest{To: "+4915112345678", Text: long + "x"}, false},
		{"invalid UTF-8", sessions.SendRequest{To: "+4915112345678", Text: "a\xffb"}, false},
		{"replyTo with space", sessions.SendRequest{To: "+4915112345678", Text: "hi", ReplyTo: "a b"}, false},
		{"replyTo too long", sessions.SendRequest{To: "+4915112345678", Text: "hi", ReplyTo: strings.Repeat("A", 129)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSend(tt.req)
			if tt.ok != (err == nil) {
				t.Fatalf("CheckSend = %v, want ok %v", err, tt.ok)
			}
			if err == nil {
				return
			}
			if !errors.Is(err, sessions.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
			if tt.req.To != "" && !strings.HasPrefix(tt.req.To, "@") && strings.Contains(err.Error(), strings.TrimPrefix(tt.req.To, "+")) {
				t.Errorf("error %q repeats the recipient", err)
			}
		})
	}
}

// lookupFake answers IsOnWhatsApp as the fake server does: numbers
// starting with 999 are not on WhatsApp.
type lookupFake struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (l *lookupFake) lookup(_ context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.err != nil {
		return nil, l.err
	}
	var out []types.IsOnWhatsAppResponse
	for _, p := range phones {
		digits := strings.TrimPrefix(p, "+")
		out = append(out, types.IsOnWhatsAppResponse{Query: p, IsIn: !strings.HasPrefix(digits, "999"),
			JID: types.NewJID(digits, types.DefaultUserServer)})
	}
	return out, nil
}

func TestContactsResolveCachesPositiveAnswers(t *testing.T) {
	l := &lookupFake{}
	c := &contacts{lookup: l.lookup}
	ctx := context.Background()
	for range 3 {
		jid, err := c.resolve(ctx, "4915112345678")
		if err != nil || jid.String() != "4915112345678@s.whatsapp.net" {
			t.Fatalf("resolve = %v, %v", jid, err)
		}
	}
	if l.calls != 1 {
		t.Errorf("%d lookups for one number on WhatsApp, want 1 (cached)", l.calls)
	}
	for range 2 {
		if _, err := c.resolve(ctx, "9991234567"); !errors.Is(err, sessions.ErrNoRecipient) {
			t.Fatalf("a number not on WhatsApp: %v, want ErrNoRecipient", err)
		}
	}
	if l.calls != 3 {
		t.Errorf("%d lookups, want 3 (a negative answer is asked again)", l.calls)
	}
	l.err = errors.New("usync failed for 4915199999999@c.us")
	_, err := c.resolve(ctx, "4915199999999")
	if !errors.Is(err, sessions.ErrWhatsApp) || strings.Contains(err.Error(), "4915199999999") {
		t.Errorf("a failed lookup: %v, want ErrWhatsApp without the number", err)
	}
}

// A phone-number JID is looked up like a phone number: one not on
// WhatsApp is ErrNoRecipient (the API's 404), not a send that fails at
// WhatsApp (502); a LID is used as is.
func TestRecipientLooksPhoneNumberJIDsUp(t *testing.T) {
	l := &lookupFake{}
	c := &client{contacts: contacts{lookup: l.lookup}}
	ctx := context.Background()
	for _, tc := range []struct {
		to, want string
		err      error
		lookups  int
	}{
		{"+4915112345678", "4915112345678@s.whatsapp.net", nil, 1},
		{"4915112345679@s.whatsapp.net", "4915112345679@s.whatsapp.net", nil, 1},
		{"9991234567@s.whatsapp.net", "", sessions.ErrNoRecipient, 1},
		{"123456789012345@lid", "123456789012345@lid", nil, 0},
	} {
		before := l.calls
		jid, err := c.recipient(ctx, tc.to)
		if !errors.Is(err, tc.err) || (err == nil && jid.String() != tc.want) || l.calls-before != tc.lookups {
			t.Errorf("recipient(%s) = %v, %v after %d lookups; want %s, %v after %d", tc.to, jid, err, l.calls-before, tc.want, tc.err, tc.lookups)
		}
	}
}

// testSink is an EventSink that keeps the events and calls done as answer
// decides.
type testSink struct {
	mu     sync.Mutex
	events []sessions.Event
	answer func(done func(error)) // nil: done(nil) at once
}

func (s *testSink) Publish(evs []sessions.Event, done func(error)) {
	s.mu.Lock()
	s.events = append(s.events, evs...)
	answer := s.answer
	s.mu.Unlock()
	if answer == nil {
		done(nil)
		return
	}
	answer(done)
}

func (s *testSink) published() []sessions.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sessions.Event(nil), s.events...)
}

func newTestClient(sink sessions.EventSink, emit func(Event)) *client {
	if emit == nil {
		emit = func(Event) {}
	}
	return &client{id: "alice", sink: sink, emit: emit, closed: make(chan struct{}), drop: func() {},
		log: slog.New(slog.DiscardHandler), publishTimeout: 200 * time.Millisecond}
}

// An event the sink could not commit drops the connection, once per
// connection, and tells the session it was lost: WhatsApp delivers what
// was not acknowledged again at the next login, which the session's
// reconnect makes.
func TestUncommittedEventDropsTheConnectionOnce(t *testing.T) {
	var mu sync.Mutex
	var drops, lost int
	emitted := make(chan struct{}, 4)
	sink := &testSink{answer: func(done func(error)) { done(errors.New("disk full")) }}
	c := newTestClient(sink, func(ev Event) {
		if _, ok := ev.(Disconnected); ok {
			mu.Lock()
			lost++
			mu.Unlock()
			emitted <- struct{}{}
		}
	})
	c.drop = func() {
		mu.Lock()
		drops++
		mu.Unlock()
	}
	if c.handle(incoming("M1", "one")) || c.handle(incoming("M2", "two")) {
		t.Fatal("a message whose event failed to commit was acknowledged")
	}
	select {
	case <-emitted:
	case <-time.After(5 * time.Second):
		t.Fatal("no Disconnected after an event was not committed")
	}
	mu.Lock()
	defer mu.Unlock()
	if drops != 1 || lost != 1 {
		t.Errorf("%d drops and %d Disconnected for two failures on one connection, want 1 and 1", drops, lost)
	}
}

func incoming(id, text string) *events.Message {
	from := types.NewJID("4915112345678", types.DefaultUserServer)
	return &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: from, Sender: types.JID{User: from.User, Device: 2, Server: from.Server}},
			ID:            types.MessageID(id), PushName: "Bob", Timestamp: time.Unix(1700000000, 0),
		},
		Message: &waE2E.Message{Conversation: proto.String(text)},
	}
}

func TestIncomingMessageIsAcknowledgedOnlyOnceCommitted(t *testing.T) {
	var received int
	sink := &testSink{}
	c := newTestClient(sink, func(ev Event) {
		if _, ok := ev.(MessageReceived); ok {
			received++
		}
	})
	if !c.handle(incoming("M1", "hello")) {
		t.Fatal("a committed message was not acknowledged")
	}
	evs := sink.published()
	if len(evs) != 1 || received != 1 {
		t.Fatalf("published %d events, counted %d messages; want 1, 1", len(evs), received)
	}
	ev := evs[0]
	var data sessions.MessageData
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		t.Fatal(err)
	}
	want := sessions.MessageData{ID: "M1", Chat: "4915112345678@s.whatsapp.net", From: "4915112345678@s.whatsapp.net",
		PushName: "Bob", Text: "hello", Timestamp: time.Unix(1700000000, 0)}
	if !data.Timestamp.Equal(want.Timestamp) {
		t.Errorf("timestamp %v, want %v", data.Timestamp, want.Timestamp)
	}
	data.Timestamp = want.Timestamp
	if data != want {
		t.Errorf("data = %+v, want %+v", data, want)
	}
	if ev.Type != sessions.EventMessageReceived || ev.SenderID != "alice" || ev.ID != MessageEventID("alice", want.Chat, "M1") {
		t.Errorf("event = %+v", ev)
	}
	// The id is the agreed one, and stable: the same message again has it.
	if !strings.HasPrefix(ev.ID, "msg_") || len(ev.ID) != 36 {
		t.Errorf("event id %q, want msg_ and 32 hex digits", ev.ID)
	}
	c.handle(incoming("M1", "hello"))
	if evs := sink.published(); evs[1].ID != ev.ID {
		t.Errorf("a redelivered message got id %s, first %s", evs[1].ID, ev.ID)
	}

	// The sink fails: whatsmeow must not acknowledge, nothing is counted.
	sink.answer = func(done func(error)) { done(errors.New("disk full")) }
	received = 0
	if c.handle(incoming("M2", "again")) {
		t.Error("a message whose event failed to commit was acknowledged")
	}
	// The sink does not answer in time.
	sink.answer = func(func(error)) {}
	if c.handle(incoming("M3", "late")) {
		t.Error("a message whose event was not committed in time was acknowledged")
	}
	// The sink answers later, from another goroutine: success only then.
	sink.answer = func(done func(error)) { time.AfterFunc(20*time.Millisecond, func() { done(nil) }) }
	if !c.handle(incoming("M4", "later")) {
		t.Error("a message committed after a while was not acknowledged")
	}
	if received != 1 {
		t.Errorf("%d messages counted, want 1 (the committed one)", received)
	}
	// The client closes while the handler waits: it gives up at once.
	sink.answer = func(func(error)) {}
	c.publishTimeout = time.Minute
	close(c.closed)
	start := time.Now()
	if c.handle(incoming("M5", "closing")) || time.Since(start) > 5*time.Second {
		t.Error("a closed client's handler did not give up")
	}
}

func TestMessagesThatAreNotEvents(t *testing.T) {
	group := incoming("G", "hi")
	group.Info.Chat = types.NewJID("123-456", types.GroupServer)
	group.Info.IsGroup = true
	status := incoming("S", "hi")
	status.Info.Chat = types.StatusBroadcastJID
	mine := incoming("F", "hi")
	mine.Info.IsFromMe = true
	protocol := incoming("P", "")
	protocol.Message = &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{}}
	photo := incoming("I", "")
	photo.Message = &waE2E.Message{ImageMessage: &waE2E.ImageMessage{}}
	sink := &testSink{}
	c := newTestClient(sink, nil)
	for _, m := range []*events.Message{group, status, mine, protocol, photo} {
		if !c.handle(m) {
			t.Errorf("%s: not acknowledged", m.Info.ID)
		}
	}
	if evs := sink.published(); len(evs) != 0 {
		t.Errorf("published %d events for messages that are none", len(evs))
	}
}

// A message from a LID names the sender by phone number when whatsmeow
// knows it.
func TestLIDSenderIsNamedByPhone(t *testing.T) {
	m := incoming("L", "hi")
	lid := types.NewJID("123456789012345", types.HiddenUserServer)
	m.Info.Chat, m.Info.Sender = lid, types.JID{User: lid.User, Server: lid.Server, Device: 3}
	m.Info.SenderAlt = types.JID{User: "4915112345678", Server: types.DefaultUserServer, Device: 3}
	ev, ok := messageEvent("alice", m)
	var data sessions.MessageData
	_ = json.Unmarshal(ev.Data, &data)
	if !ok || data.Chat != "4915112345678@s.whatsapp.net" || data.From != data.Chat {
		t.Errorf("chat %q from %q", data.Chat, data.From)
	}
	m.Info.SenderAlt = types.EmptyJID
	ev, _ = messageEvent("alice", m)
	_ = json.Unmarshal(ev.Data, &data)
	if data.Chat != "123456789012345@lid" || data.From != data.Chat {
		t.Errorf("without the phone number: chat %q from %q", data.Chat, data.From)
	}
}

func TestCaptionsAndReplies(t *testing.T) {
	reply := &waE2E.ContextInfo{StanzaID: proto.String("ORIG")}
	tests := []struct {
		name          string
		msg           *waE2E.Message
		text, replyTo string
	}{
		{"extended text reply", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("yes"), ContextInfo: reply}}, "yes", "ORIG"},
		{"image caption", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("look")}}, "look", ""},
		{"video caption reply", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{Caption: proto.String("watch"), ContextInfo: reply}}, "watch", "ORIG"},
		{"document caption", &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{Caption: proto.String("read")}}, "read", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := incoming("X", "")
			m.Message = tt.msg
			ev, ok := messageEvent("alice", m)
			if !ok {
				t.Fatal("no event")
			}
			var data sessions.MessageData
			_ = json.Unmarshal(ev.Data, &data)
			if data.Text != tt.text || data.ReplyTo != tt.replyTo {
				t.Errorf("text %q replyTo %q, want %q %q", data.Text, data.ReplyTo, tt.text, tt.replyTo)
			}
		})
	}
}

func TestReceipts(t *testing.T) {
	bob := types.NewJID("4915112345678", types.DefaultUserServer)
	receipt := func(typ types.ReceiptType, ids ...types.MessageID) *events.Receipt {
		return &events.Receipt{MessageSource: types.MessageSource{Chat: bob, Sender: bob}, MessageIDs: ids, Type: typ, Timestamp: time.Unix(1700000000, 0)}
	}
	sink := &testSink{}
	c := newTestClient(sink, nil)
	for _, r := range []*events.Receipt{receipt(types.ReceiptTypeDelivered, "B", "A"), receipt(types.ReceiptTypeRead, "A")} {
		if !c.handle(r) {
			t.Fatal("receipt not acknowledged")
		}
	}
	self := receipt(types.ReceiptTypeRead, "A")
	self.IsFromMe = true
	for _, r := range []*events.Receipt{receipt(types.ReceiptTypeReadSelf, "A"), receipt(types.ReceiptTypePlayed, "A"),
		receipt(types.ReceiptTypeSender, "A"), self} {
		if !c.handle(r) {
			t.Errorf("%q receipt not acknowledged", r.Type)
		}
	}
	evs := sink.published()
	if len(evs) != 2 {
		t.Fatalf("published %d events, want 2 (delivered, read)", len(evs))
	}
	var d sessions.AckData
	_ = json.Unmarshal(evs[0].Data, &d)
	if d.Status != sessions.AckDelivered || strings.Join(d.IDs, ",") != "B,A" || d.Chat != bob.String() {
		t.Errorf("delivered: %+v", d)
	}
	if evs[0].ID != AckEventID("alice", bob.String(), sessions.AckDelivered, []string{"A", "B"}) || !strings.HasPrefix(evs[0].ID, "ack_") {
		t.Errorf("ack id %s does not ignore the ids' order", evs[0].ID)
	}
	_ = json.Unmarshal(evs[1].Data, &d)
	if d.Status != sessions.AckRead || evs[1].Type != sessions.EventMessageAck || evs[0].ID == evs[1].ID {
		t.Errorf("read: %+v %+v", d, evs[1])
	}
	sink.answer = func(done func(error)) { done(errors.New("no")) }
	if c.handle(receipt(types.ReceiptTypeRead, "C")) {
		t.Error("a receipt whose event failed to commit was acknowledged")
	}
}

func TestNewMessageID(t *testing.T) {
	a, b := NewMessageID(), NewMessageID()
	if a == b || !strings.HasPrefix(a, "3EB0") || CheckMessageID(a) != nil {
		t.Errorf("ids %q %q", a, b)
	}
}

func TestOpenNeedsASink(t *testing.T) {
	o := NewStoreOpener(nil, Options{})
	if _, err := o.Open(context.Background(), "alice", true, func(Event) {}); err == nil {
		t.Error("Open without a sink succeeded")
	}
}

// A real client is set up for "no event lost": acks wait for the handlers,
// decrypted messages are buffered until then, and the one handler reports
// its success to whatsmeow.
func TestOpenSetsUpSynchronousAcks(t *testing.T) {
	dir, err := store.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	sink := &testSink{answer: func(done func(error)) { done(errors.New("not kept")) }}
	o := NewStoreOpener(dir, Options{Sink: sink})
	cl, err := o.Open(context.Background(), "alice", true, func(Event) {})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := cl.(*client)
	if !c.cli.SynchronousAck || !c.cli.EnableDecryptedEventBuffer {
		t.Errorf("SynchronousAck %v, EnableDecryptedEventBuffer %v; want both", c.cli.SynchronousAck, c.cli.EnableDecryptedEventBuffer)
	}
	if c.publishTimeout != PublishTimeout {
		t.Errorf("publish timeout %s, want %s", c.publishTimeout, PublishTimeout)
	}
	// whatsmeow's dispatch sees the handler's failure: it will not ack.
	if failed := c.cli.DangerousInternals().DispatchEvent(incoming("M1", "hi")); !failed {
		t.Error("whatsmeow saw a message whose event was not committed as handled")
	}
	sink.answer = nil
	if failed := c.cli.DangerousInternals().DispatchEvent(incoming("M2", "hi")); failed {
		t.Error("whatsmeow saw a committed message as failed")
	}
}

// DiscardEvents, the explicit "no delivery" sink, acknowledges at once.
func TestDiscardEventsAcknowledges(t *testing.T) {
	c := newTestClient(DiscardEvents{}, nil)
	if !c.handle(incoming("M1", "hi")) {
		t.Error("DiscardEvents did not let whatsmeow acknowledge")
	}
	DiscardEvents{}.Publish(nil, nil) // a nil done is allowed
}
