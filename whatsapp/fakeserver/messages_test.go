package fakeserver_test

import (
	"context"
	"slices"
	"testing"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// connectedSeed connects a client on a seeded device of user and waits
// until it is connected.
func connectedSeed(t *testing.T, srv *fakeserver.Server, user string) *testClient {
	t.Helper()
	container, _ := seed(t, user)
	tc := newClient(t, srv, firstDevice(t, container))
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)
	return tc
}

func pn(user string) types.JID { return types.NewJID(user, types.DefaultUserServer) }

func TestIsOnWhatsApp(t *testing.T) {
	srv := startServer(t)
	tc := connectedSeed(t, srv, "15550100001")
	got, err := tc.IsOnWhatsApp(ctxTimeout(t), []string{"+15557770001", "+9991234567"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("IsOnWhatsApp answered %d numbers, want 2: %+v", len(got), got)
	}
	in, out := got[0], got[1]
	if !in.IsIn || in.Query != "+15557770001" || in.PhoneNumber != pn("15557770001") || in.JID.Server != types.HiddenUserServer {
		t.Errorf("a contact's number: %+v, want in, with its LID and phone number", in)
	}
	if out.IsIn || out.Query != "+9991234567" {
		t.Errorf("a +999 number: %+v, want out", out)
	}
	// The LID mapping is stored, as SendMessage needs it.
	lid, err := tc.Store.LIDs.GetLIDForPN(ctxTimeout(t), pn("15557770001"))
	if err != nil || lid != in.JID {
		t.Errorf("stored LID for the contact: %v, %v; want %v", lid, err, in.JID)
	}
}

// A session sends a text and a reply; the contact decrypts both, the
// phone reads the session's copies, and the contact's delivery receipts
// reach the client. The second message goes without a LID lookup (the
// first one stored it) on the established session.
func TestSessionSendsToContact(t *testing.T) {
	srv := startServer(t)
	const user, contact = "15550100002", "15557770002"
	tc := connectedSeed(t, srv, user)
	ctx := ctxTimeout(t)

	first, err := tc.SendMessage(ctx, pn(contact), &waE2E.Message{Conversation: proto.String("hello there")})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	if first.Timestamp.IsZero() {
		t.Error("the server's ack carried no timestamp")
	}
	reply, err := tc.SendMessage(ctx, pn(contact), &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text:        proto.String("a reply"),
		ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("3AQUOTED"), Participant: proto.String(pn(contact).String())},
	}})
	if err != nil {
		t.Fatalf("send reply: %v", err)
	}

	sent, err := srv.Sent(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	want := []fakeserver.SentMessage{
		{ID: first.ID, To: contact, Text: "hello there", PhoneCopy: true, Delivered: true},
		{ID: reply.ID, To: contact, Text: "a reply", ReplyTo: "3AQUOTED", PhoneCopy: true, Delivered: true},
	}
	for i := range sent {
		sent[i].Timestamp = want[i].Timestamp
	}
	if !slices.Equal(sent, want) {
		t.Errorf("the contact decrypted\n%+v\nwant\n%+v", sent, want)
	}
	for _, id := range []string{first.ID, reply.ID} {
		waitEvent(t, tc, func(r *events.Receipt) bool {
			return r.Type == types.ReceiptTypeDelivered && slices.Contains(r.MessageIDs, id) && r.Chat.User == contact
		})
	}
	if st, _ := srv.Stats(ctx); st.Undecryptable != 0 {
		t.Errorf("%d parts undecryptable", st.Undecryptable)
	}

	if err := srv.ContactRead(ctx, user, reply.ID); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, tc, func(r *events.Receipt) bool {
		return r.Type == types.ReceiptTypeRead && slices.Contains(r.MessageIDs, reply.ID)
	})
	sent, _ = srv.Sent(ctx, user)
	if !sent[1].Read || sent[0].Read {
		t.Errorf("read flags %v %v, want only the reply read", sent[0].Read, sent[1].Read)
	}
	if err := srv.ContactRead(ctx, user, "3ANOSUCHID"); err == nil {
		t.Error("ContactRead of an unknown message succeeded")
	}
}

// A contact sends two messages: the client decrypts a prekey message, then
// a plain one, and the server sees each acknowledged.
func TestContactSendsToSession(t *testing.T) {
	srv := startServer(t)
	const user, contact = "15550100003", "15557770003"
	tc := connectedSeed(t, srv, user)
	ctx := ctxTimeout(t)

	id1, err := srv.ContactSend(ctx, user, "+"+contact, "first", "")
	if err != nil {
		t.Fatal(err)
	}
	msg1 := waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id1 })
	eventually(t, "the first message acknowledged", func() bool { return received(t, srv, user, id1).Pending == 0 })
	id2, err := srv.ContactSend(ctx, user, contact, "second", id1)
	if err != nil {
		t.Fatal(err)
	}
	msg2 := waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id2 })

	if msg1.Message.GetConversation() != "first" || msg1.Info.Sender.User != contact || msg1.Info.Chat != pn(contact) || msg1.Info.PushName == "" {
		t.Errorf("first message: %+v %v", msg1.Info, msg1.Message)
	}
	if ext := msg2.Message.GetExtendedTextMessage(); ext.GetText() != "second" || ext.GetContextInfo().GetStanzaID() != id1 {
		t.Errorf("second message: %v", msg2.Message)
	}
	eventually(t, "both messages acknowledged", func() bool {
		r := received(t, srv, user, id2)
		return r.Pending == 0 && r.Delivered
	})
	if r := received(t, srv, user, id2); r.Deliveries != 1 || r.Retries != 0 {
		t.Errorf("second message %+v, want one delivery and no retry", r)
	}

	if err := tc.MarkRead(ctx, []types.MessageID{id1, id2}, msg2.Info.Timestamp, msg2.Info.Chat, msg2.Info.Sender); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both messages read", func() bool {
		return received(t, srv, user, id1).Read && received(t, srv, user, id2).Read
	})
}

// received is the server's record of message id that a contact sent to
// user.
func received(t *testing.T, srv fakeserver.Control, user, id string) fakeserver.ReceivedMessage {
	t.Helper()
	msgs, err := srv.Received(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.ID == id {
			return m
		}
	}
	t.Fatalf("no record of message %s", id)
	return fakeserver.ReceivedMessage{}
}
