package fakeserver_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/appstate"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// connectedSeed connects a client on a seeded device of user and waits
// until it is connected.
func connectedSeed(t testing.TB, srv *fakeserver.Server, user string) *testClient {
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
	if err := srv.ContactRead(ctx, user, "3ANOSUCHID"); !errors.Is(err, fakeserver.ErrUnknownMessage) {
		t.Errorf("ContactRead of an unknown message: %v, want ErrUnknownMessage", err)
	}
	// The client acknowledged every receipt.
	eventually(t, "no receipt queued", func() bool {
		st, _ := srv.Stats(ctx)
		return st.Queued == 0
	})
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
	// The first opened the session (pkmsg); once the device acknowledged
	// it, the second went as a plain message (msg).
	if n1, n2 := fakeserver.PrekeyEncryptions(srv, user, id1), fakeserver.PrekeyEncryptions(srv, user, id2); n1 != 1 || n2 != 0 {
		t.Errorf("prekey messages: %d and %d, want 1 and 0", n1, n2)
	}

	if err := tc.MarkRead(ctx, []types.MessageID{id1, id2}, msg2.Info.Timestamp, msg2.Info.Chat, msg2.Info.Sender); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both messages read", func() bool {
		return received(t, srv, user, id1).Read && received(t, srv, user, id2).Read
	})
}

// A contact that prepared (opened its Signal session ahead, through the
// control API, before sending anything) still opens the conversation with
// a prekey message the device decrypts; preparing again keeps that
// session, so the next message is a plain one.
func TestContactPreparesBeforeWriting(t *testing.T) {
	srv := startServer(t)
	ts := httptest.NewServer(srv.ControlHandler())
	t.Cleanup(ts.Close)
	remote := fakeserver.NewRemote(ts.URL, ts.Client())
	const user, contact = "15550100013", "15557770013"
	tc := connectedSeed(t, srv, user)
	ctx := ctxTimeout(t)

	if fakeserver.ContactHasSessions(srv, user, contact) {
		t.Fatal("the contact holds a session before it prepared")
	}
	if err := remote.ContactPrepare(ctx, user, "+"+contact); err != nil {
		t.Fatal(err)
	}
	if !fakeserver.ContactHasSessions(srv, user, contact) {
		t.Fatal("the contact holds no session with the device after it prepared")
	}
	send := func(text string) (string, int) {
		t.Helper()
		id, err := remote.ContactSend(ctx, user, contact, text, "")
		if err != nil {
			t.Fatal(err)
		}
		msg := waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id })
		if msg.Message.GetConversation() != text {
			t.Errorf("the device got %v, want %q", msg.Message, text)
		}
		eventually(t, "the message acknowledged", func() bool { return received(t, srv, user, id).Pending == 0 })
		return id, fakeserver.PrekeyEncryptions(srv, user, id)
	}
	if _, n := send("first"); n != 1 {
		t.Errorf("first message after a prepare: %d prekey messages, want 1", n)
	}
	if err := remote.ContactPrepare(ctx, user, contact); err != nil {
		t.Fatal(err)
	}
	if id, n := send("second"); n != 0 || received(t, srv, user, id).Retries != 0 {
		t.Errorf("second message after another prepare: %d prekey messages, %d retries; want a plain message", n, received(t, srv, user, id).Retries)
	}
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

// A contact's message waits for a device that is offline, and for one
// whose handler failed (SynchronousAck: no receipt), and is redelivered,
// same ID, when the device logs in again; then it is acknowledged.
func TestContactMessageRedelivered(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	const user, contact = "15550100004", "15557770004"
	container, _ := seed(t, user)
	tc := newClient(t, srv, firstDevice(t, container))
	tc.SynchronousAck = true
	tc.EnableDecryptedEventBuffer = true
	var failures atomic.Int32
	failures.Store(1)
	tc.AddEventHandlerWithSuccessStatus(func(evt any) bool {
		_, isMsg := evt.(*events.Message)
		return !isMsg || failures.Add(-1) < 0
	})
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)
	tc.Disconnect()
	waitConnections(t, srv, user, 0)

	// Offline: queued.
	id, err := srv.ContactSend(ctx, user, contact, "while you were away", "")
	if err != nil {
		t.Fatal(err)
	}
	if r := received(t, srv, user, id); r.Pending != 1 || r.Deliveries != 0 {
		t.Errorf("before login: %+v, want pending, not delivered", r)
	}

	// The first delivery fails in the handler: no receipt.
	tc.reset()
	connect(t, tc)
	waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id })
	eventually(t, "the failed handler", func() bool { return failures.Load() == 0 })
	tc.Disconnect()
	waitConnections(t, srv, user, 0)
	if r := received(t, srv, user, id); r.Pending != 1 || r.Deliveries != 1 || r.Delivered {
		t.Errorf("after a failed handler: %+v, want still pending after one delivery", r)
	}

	// The next login gets it again, the same message, and acknowledges it.
	tc.reset()
	connect(t, tc)
	msg := waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id })
	if msg.Message.GetConversation() != "while you were away" {
		t.Errorf("redelivered text %q", msg.Message.GetConversation())
	}
	eventually(t, "the redelivered message acknowledged", func() bool {
		r := received(t, srv, user, id)
		return r.Pending == 0 && r.Delivered && r.Deliveries == 2
	})
}

// A device paired by QR code gets messages encrypted with the keys it
// registered, and the phone reads its copies on the session it opened at
// pairing; after a restart of a server with a state file, contacts still
// reach the device.
func TestPairedDeviceMessaging(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	srv, err := fakeserver.Start(fakeserver.Options{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := ctxTimeout(t)
	path := storePath(t, "paired")
	tc, _, item := pairingClient(t, srv, path)
	jid, err := srv.ScanQR(ctx, item.Code)
	if err != nil {
		t.Fatal(err)
	}
	waitEvent[*events.Connected](t, tc, nil)
	waitEvent(t, tc, func(e *events.AppStateSyncComplete) bool { return e.Name == appstate.WAPatchCriticalBlock })
	user := tc.Store.ID.User

	const contact = "15557770005"
	id, err := srv.ContactSend(ctx, user, contact, "hi new device", "")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id && m.Message.GetConversation() == "hi new device" })
	resp, err := tc.SendMessage(ctx, pn(contact), &waE2E.Message{Conversation: proto.String("hi contact")})
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := srv.Sent(ctx, user)
	if len(sent) != 1 || sent[0].ID != resp.ID || sent[0].Text != "hi contact" || !sent[0].PhoneCopy {
		t.Errorf("sent %+v, want the text, with the phone's copy", sent)
	}
	tc.Disconnect()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	srv2, err := fakeserver.Start(fakeserver.Options{Addr: srv.Addr(), StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	id2, err := srv2.ContactSend(ctx, user, "15557770006", "after a restart", "")
	if err != nil {
		t.Fatalf("send to %s after a restart: %v", jid, err)
	}
	fresh := newClient(t, srv2, firstDevice(t, openStore(t, path)))
	connect(t, fresh)
	waitEvent(t, fresh, func(m *events.Message) bool {
		return m.Info.ID == id2 && m.Message.GetConversation() == "after a restart"
	})

	// The restarted server's contact lost its session with the device:
	// it cannot decrypt, asks for a retry with its keys, and whatsmeow
	// sends the message again on a new session.
	resp, err = fresh.SendMessage(ctx, pn(contact), &waE2E.Message{Conversation: proto.String("still there?")})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the retried message decrypted", func() bool {
		sent, _ := srv2.Sent(ctx, user)
		return len(sent) == 1 && sent[0].ID == resp.ID && sent[0].Text == "still there?"
	})
}

// A device that lost its session with a contact sends a retry receipt;
// the contact encrypts the message again on a new session, and the device
// gets it.
func TestContactAnswersRetryReceipt(t *testing.T) {
	srv := startServer(t)
	const user, contact = "15550100007", "15557770007"
	tc := connectedSeed(t, srv, user)
	ctx := ctxTimeout(t)
	id1, err := srv.ContactSend(ctx, user, contact, "one", "")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first message acknowledged", func() bool { return received(t, srv, user, id1).Delivered })
	lid, err := tc.Store.LIDs.GetLIDForPN(ctx, pn(contact))
	if err != nil || lid.IsEmpty() {
		t.Fatalf("contact's LID: %v %v", lid, err)
	}
	if err := tc.Store.Sessions.DeleteSession(ctx, lid.SignalAddress().String()); err != nil {
		t.Fatal(err)
	}

	id2, err := srv.ContactSend(ctx, user, contact, "two", "")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id2 && m.Message.GetConversation() == "two" })
	eventually(t, "the retried message acknowledged", func() bool {
		r := received(t, srv, user, id2)
		return r.Delivered && r.Pending == 0 && r.Retries == 1
	})
}

// A device whose keys the server got wrong (here: a signed prekey changed
// behind its back, as in a store seeded before keys were derived) cannot
// decrypt; its second retry receipt carries its keys, and the contact's
// next attempt uses them.
func TestContactLearnsKeysFromRetryReceipt(t *testing.T) {
	srv := startServer(t)
	const user, contact = "15550100008", "15557770008"
	container, _ := seed(t, user)
	tc := newClient(t, srv, firstDevice(t, container))
	tc.Store.SignedPreKey = tc.Store.IdentityKey.CreateSignedPreKey(1)
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)
	ctx := ctxTimeout(t)

	id, err := srv.ContactSend(ctx, user, contact, "can you read me", "")
	if err != nil {
		t.Fatal(err)
	}
	waitEvent(t, tc, func(m *events.Message) bool {
		return m.Info.ID == id && m.Message.GetConversation() == "can you read me"
	})
	eventually(t, "the message acknowledged after retries", func() bool {
		r := received(t, srv, user, id)
		return r.Delivered && r.Pending == 0 && r.Retries == 2
	})
}

// One session sends to another session's number: that account's phone
// decrypts it as a contact would, and its companion gets it too, relayed
// as WhatsApp does, from the sending device.
func TestSessionToSession(t *testing.T) {
	srv := startServer(t)
	const alice, bob = "15550100011", "15550100012"
	a := connectedSeed(t, srv, alice)
	b := connectedSeed(t, srv, bob)
	ctx := ctxTimeout(t)
	for i, text := range []string{"hi bob", "still there?"} {
		resp, err := a.SendMessage(ctx, pn(bob), &waE2E.Message{Conversation: proto.String(text)})
		if err != nil {
			t.Fatal(err)
		}
		msg := waitEvent(t, b, func(m *events.Message) bool { return m.Info.ID == resp.ID })
		if msg.Message.GetConversation() != text || msg.Info.Chat != pn(alice) || msg.Info.IsFromMe {
			t.Errorf("message %d at bob: %+v %v", i, msg.Info, msg.Message)
		}
		eventually(t, "bob's device acknowledged it", func() bool {
			r := received(t, srv, bob, resp.ID)
			return r.Delivered && r.Pending == 0 && r.Text == text && r.From == alice
		})
	}
	sent, _ := srv.Sent(ctx, alice)
	if len(sent) != 2 || sent[1].To != bob {
		t.Fatalf("alice's sent messages: %+v", sent)
	}
	// Bob reads the last one: alice gets his read receipt.
	if err := b.MarkRead(ctx, []types.MessageID{sent[1].ID}, time.Now(), pn(alice), types.EmptyJID); err != nil {
		t.Fatal(err)
	}
	r := waitEvent(t, a, func(r *events.Receipt) bool { return r.Type == types.ReceiptTypeRead })
	if !slices.Equal(r.MessageIDs, []types.MessageID{sent[1].ID}) || r.Chat != pn(bob) {
		t.Errorf("alice's read receipt: %+v", r)
	}
	eventually(t, "alice's sent message marked read", func() bool {
		sent, _ := srv.Sent(ctx, alice)
		return sent[1].Read && !sent[0].Read
	})
}

// A device the phone unlinks is no longer a destination: what waited for
// it is dropped, and contacts send to the account's other devices only.
func TestUnlinkedDeviceGetsNoMessages(t *testing.T) {
	srv := startServer(t)
	const user, contact = "15550100013", "15557770013"
	tc := connectedSeed(t, srv, user)
	tc.Disconnect()
	waitConnections(t, srv, user, 0)
	ctx := ctxTimeout(t)
	id, err := srv.ContactSend(ctx, user, contact, "queued", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Unlink(ctx, user, 1); err != nil {
		t.Fatal(err)
	}
	if r := received(t, srv, user, id); r.Pending != 0 {
		t.Errorf("after unlink: %+v, want nothing pending", r)
	}
	if st, _ := srv.Stats(ctx); st.Queued != 0 {
		t.Errorf("%d stanzas still queued", st.Queued)
	}
	if _, err := srv.ContactSend(ctx, user, contact, "to nobody", ""); !errors.Is(err, fakeserver.ErrNoDevice) {
		t.Errorf("send to an account without devices: %v, want ErrNoDevice", err)
	}
}
