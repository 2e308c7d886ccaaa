package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// messagingService runs the service in process against its own external
// fake WhatsApp (which outlives restarts), delivering every event to a
// signature-verifying receiver on loopback.
func messagingService(t *testing.T) (*e2e.Service, *e2e.Fake, *e2e.Receiver) {
	t.Helper()
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rcv := e2e.NewReceiver(t, secret)
	f := e2e.NewFake(t, fakeserver.Options{})
	cfg := e2e.Config(t.TempDir(), f)
	cfg.WebhookURL, cfg.WebhookSecret = rcv.URL, secret
	cfg.LogLevel = "debug" // the most the logs ever say, checked for personal data
	return e2e.Start(t, cfg), f, rcv
}

// apiError is err as the API's error, or fails the test.
func apiError(t *testing.T, err error) *client.Error {
	t.Helper()
	ce, ok := err.(*client.Error)
	if !ok {
		t.Fatalf("want an API error, got %v", err)
	}
	return ce
}

// Send from a session to a fake contact, which decrypts exactly that text;
// a contact sends to the session, and the webhook receiver gets it; replies
// quote both ways; receipts become acks; mark-read reaches the contact;
// session.state events arrive; every error answer; idempotent sends across
// a restart; metrics move; nothing personal in logs or metric labels.
func TestMessagingEndToEnd(t *testing.T) {
	svc, f, rcv := messagingService(t)
	ctx := context.Background()
	c := svc.Client
	alice := svc.Pair("alice")
	user := e2e.User(alice)
	const bob, carol = "+15550001001", "+15550001002"
	bobJID, carolJID := "15550001001@s.whatsapp.net", "15550001002@s.whatsapp.net"

	// session.state: the receiver sees alice become connected.
	e2e.WaitFor(t, e2e.Wait, "a session.state connected for alice", func() (bool, string) {
		var seen []string
		for _, s := range rcv.States() {
			seen = append(seen, string(s.State))
			if s.Event.SenderID == "alice" && s.SenderID == "alice" && s.State == sessions.StateConnected && s.Connected {
				return true, ""
			}
		}
		return false, fmt.Sprint(seen)
	}, svc.Logs)

	// Send: 200 {id, timestamp}, and the contact decrypted exactly that.
	hello := "hello bob, ünïcödé ✓ " + strings.Repeat("x", 300)
	before := time.Now().Add(-2 * time.Second)
	sent, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: hello})
	if err != nil || sent.ID == "" || sent.Timestamp.Before(before) || sent.Timestamp.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("send: %+v %v", sent, err)
	}
	got := waitSent(t, svc, "alice", 1)
	if m := got[0]; m.ID != sent.ID || m.To != bob[1:] || m.Text != hello || m.ReplyTo != "" || !m.PhoneCopy {
		t.Fatalf("bob decrypted %+v, want id %s and the text sent", m, sent.ID)
	}

	// The contact's delivery receipt, then its read receipt, become acks.
	waitAck(t, svc, rcv, "alice", sessions.AckDelivered, sent.ID, bobJID)
	if err := c.TestRead(ctx, "alice", sent.ID); err != nil {
		t.Fatal(err)
	}
	waitAck(t, svc, rcv, "alice", sessions.AckRead, sent.ID, bobJID)

	// A contact sends: message.received with text, from, chat, pushName.
	hi := "hi alice 👋"
	inID, err := c.TestReceive(ctx, "alice", carol, hi, "")
	if err != nil {
		t.Fatal(err)
	}
	in := waitMessage(t, svc, rcv, inID)
	if in.Text != hi || in.From != carolJID || in.Chat != carolJID || in.PushName == "" || in.ReplyTo != "" ||
		in.Event.SenderID != "alice" || in.Timestamp.IsZero() {
		t.Fatalf("message.received %+v", in.MessageData)
	}

	// Replies carry replyTo both ways: the session quotes carol's message,
	// and carol quotes the session's reply.
	reply, err := c.Send(ctx, "alice", sessions.SendRequest{To: carolJID, Text: "re: hi", ReplyTo: inID})
	if err != nil {
		t.Fatal(err)
	}
	got = waitSent(t, svc, "alice", 2)
	if m := got[1]; m.ID != reply.ID || m.To != carol[1:] || m.Text != "re: hi" || m.ReplyTo != inID {
		t.Fatalf("carol decrypted %+v, want a reply to %s", m, inID)
	}
	back, err := c.TestReceive(ctx, "alice", carol, "re: re: hi", reply.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, svc, rcv, back); m.ReplyTo != reply.ID || m.Text != "re: re: hi" {
		t.Fatalf("carol's reply arrived as %+v, want replyTo %s", m.MessageData, reply.ID)
	}

	// Mark-read reaches the contact.
	if err := c.MarkRead(ctx, "alice", sessions.ReadRequest{ID: inID, Chat: in.Chat}); err != nil {
		t.Fatal(err)
	}
	waitRead(t, svc, f.Server, user, inID)

	// The error answers, none repeating the recipient.
	svc.StartPairing("dave") // not connected
	for _, tc := range []struct {
		name, id string
		req      sessions.SendRequest
		status   int
		code     string
	}{
		{"not connected", "dave", sessions.SendRequest{To: bob, Text: "x"}, 409, "wrong_state"},
		{"unknown session", "erin", sessions.SendRequest{To: bob, Text: "x"}, 404, "not_found"},
		{"bad number", "alice", sessions.SendRequest{To: "+1555abc1001", Text: "x"}, 400, "bad_request"},
		{"a device JID", "alice", sessions.SendRequest{To: "15550001001:3@s.whatsapp.net", Text: "x"}, 400, "bad_request"},
		{"empty text", "alice", sessions.SendRequest{To: bob, Text: ""}, 400, "bad_request"},
		{"blank text", "alice", sessions.SendRequest{To: bob, Text: " \n "}, 400, "bad_request"},
		{"oversized text", "alice", sessions.SendRequest{To: bob, Text: strings.Repeat("é", sessions.MaxTextLength+1)}, 400, "bad_request"},
		{"not on WhatsApp", "alice", sessions.SendRequest{To: "+9995550001", Text: "x"}, 404, "recipient_not_found"},
		{"not on WhatsApp, as a JID", "alice", sessions.SendRequest{To: "9995550002@s.whatsapp.net", Text: "x"}, 404, "recipient_not_found"},
	} {
		_, err := c.Send(ctx, tc.id, tc.req)
		ce := apiError(t, err)
		if ce.Status != tc.status || ce.Code != tc.code {
			t.Errorf("%s: %d %s (%s), want %d %s", tc.name, ce.Status, ce.Code, ce.Message, tc.status, tc.code)
		}
		if digits := strings.Trim(strings.Split(tc.req.To, "@")[0], "+"); strings.Contains(ce.Message, digits[:7]) {
			t.Errorf("%s: the error repeats the recipient: %q", tc.name, ce.Message)
		}
	}
	// The longest text WhatsApp takes, in its widest characters, goes
	// through whole.
	long := strings.Repeat("😀", sessions.MaxTextLength) // 4 bytes each in UTF-8, 12 escaped in JSON
	if _, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: long}); err != nil {
		t.Fatalf("a %d-character text: %v", sessions.MaxTextLength, err)
	}
	if got := waitSent(t, svc, "alice", 3); got[2].Text != long {
		t.Errorf("bob decrypted %d characters of the longest text", len([]rune(got[2].Text)))
	}
	longID, err := f.ContactSend(ctx, user, bob, long, "")
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, svc, rcv, longID); m.Text != long {
		t.Errorf("the receiver got %d characters of the longest text", len([]rune(m.Text)))
	}

	// Idempotency-Key: a retry answers the first answer and sends nothing.
	once := sessions.SendRequest{To: bob, Text: "exactly once", IdempotencyKey: "order-42"}
	first, err := c.Send(ctx, "alice", once)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Send(ctx, "alice", once); err != nil || again != first {
		t.Fatalf("retry with the key: %+v %v, want %+v", again, err, first)
	}
	if _, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: "something else", IdempotencyKey: "order-42"}); apiError(t, err).Status != 422 {
		t.Errorf("the key with another request: %v, want 422", err)
	}

	// Metrics moved both ways, and the webhook ones too.
	e2e.WaitFor(t, e2e.Wait, "the message counters", func() (bool, string) {
		out := svc.Metric("whatsapp_session_messages_total", "session", "alice", "direction", "out")
		in := svc.Metric("whatsapp_session_messages_total", "session", "alice", "direction", "in")
		return out == 4 && in == 3, fmt.Sprintf("out %v in %v", out, in)
	}, svc.Logs)
	e2e.WaitFor(t, e2e.Wait, "the webhook metrics", func() (bool, string) {
		fams, err := c.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		delivered, _ := client.Sample(fams, "whatsapp_webhook_deliveries_total", "result", "delivered")
		depth, _ := client.Sample(fams, "whatsapp_webhook_queue_depth")
		var observed uint64
		if f := fams["whatsapp_webhook_delivery_seconds"]; f != nil && len(f.Metric) == 1 {
			observed = f.Metric[0].GetHistogram().GetSampleCount()
		}
		got := len(rcv.Got())
		return delivered == float64(got) && observed == uint64(got) && depth == 0,
			fmt.Sprintf("delivered %v, observed %d, depth %v; the receiver accepted %d", delivered, observed, depth, got)
	}, svc.Logs)
	metricsText := rawMetrics(t, svc)

	// A restart: the key still answers the first answer; bob got it once.
	logs := []*e2e.Logs{svc.Logs}
	svc.Stop()
	svc = svc.Restart()
	logs = append(logs, svc.Logs)
	svc.WaitState("alice", sessions.StateConnected, e2e.Wait)
	if again, err := svc.Client.Send(ctx, "alice", once); err != nil || again != first {
		t.Fatalf("retry with the key after a restart: %+v %v, want %+v", again, err, first)
	}
	n := 0
	for _, m := range waitSent(t, svc, "alice", 4) {
		if m.Text == once.Text {
			n++
		}
	}
	if n != 1 {
		t.Errorf("bob got the idempotent message %d times", n)
	}

	// No event refused, none twice except as a redelivery of the same id.
	if r := rcv.Refused(); len(r) != 0 {
		t.Errorf("%d deliveries did not verify: %+v", len(r), r[0])
	}
	metricsText += rawMetrics(t, svc)
	svc.Stop()

	// Nothing personal in the logs or the metrics.
	secrets := []string{"hello bob", "hi alice", "re: hi", "exactly once", "something else",
		bob[1:], carol[1:], user, "9995550001", in.PushName}
	for i, l := range logs {
		for _, s := range secrets {
			if strings.Contains(l.String(), s) {
				t.Errorf("run %d's logs hold %q", i+1, s)
			}
		}
		if len(l.Records()) == 0 {
			t.Errorf("run %d logged nothing: the check above saw nothing", i+1)
		}
	}
	for _, s := range secrets {
		if strings.Contains(metricsText, s) {
			t.Errorf("/metrics holds %q", s)
		}
	}
}

// What happens while a session is stopped is not lost: a contact's
// message and a read receipt wait at WhatsApp and become events once the
// session is started again. Concurrent sends with one Idempotency-Key send
// once; mark-read takes the chat as a phone number too.
func TestMessagingWhileStoppedAndConcurrentRetries(t *testing.T) {
	svc, f, rcv := messagingService(t)
	ctx := context.Background()
	c := svc.Client
	user := e2e.User(svc.Pair("alice"))
	const bob = "+15550002001"

	sent, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: "before the stop"})
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, svc, rcv, "alice", sessions.AckDelivered, sent.ID, bob[1:]+"@s.whatsapp.net")
	if _, err := c.Stop(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("alice", sessions.StateStopped, e2e.Wait)
	if _, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: "x"}); apiError(t, err).Status != 409 {
		t.Errorf("send from a stopped session: %v, want 409", err)
	}
	// The test routes need a running session; WhatsApp does not.
	inID, err := f.ContactSend(ctx, user, bob, "while you were away", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ContactRead(ctx, user, sent.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	svc.WaitState("alice", sessions.StateConnected, e2e.Wait)
	if m := waitMessage(t, svc, rcv, inID); m.Text != "while you were away" {
		t.Errorf("the waiting message arrived as %q", m.Text)
	}
	waitAck(t, svc, rcv, "alice", sessions.AckRead, sent.ID, bob[1:]+"@s.whatsapp.net")

	// Mark-read with the chat as a phone number.
	if err := c.MarkRead(ctx, "alice", sessions.ReadRequest{ID: inID, Chat: bob}); err != nil {
		t.Fatal(err)
	}
	waitRead(t, svc, f.Server, user, inID)

	// Eight requests at once with one key: all answered alike (the first
	// answer, or 409 while it is in progress), one message sent.
	req := sessions.SendRequest{To: bob, Text: "once, concurrently", IdempotencyKey: "burst-1"}
	answers := make(chan error, 8)
	ids := make(chan string, 8)
	for range 8 {
		go func() {
			m, err := c.Send(ctx, "alice", req)
			if err == nil {
				ids <- m.ID
			}
			answers <- err
		}()
	}
	for range 8 {
		if err := <-answers; err != nil {
			if ce := apiError(t, err); ce.Status != 409 || ce.Code != "idempotency_in_progress" {
				t.Errorf("a concurrent retry: %v", err)
			}
		}
	}
	close(ids)
	var first string
	for id := range ids {
		if first == "" {
			first = id
		}
		if id != first {
			t.Errorf("concurrent retries answered ids %s and %s", first, id)
		}
	}
	if first == "" {
		t.Fatal("no concurrent request was answered 200")
	}
	e2e.WaitFor(t, e2e.Wait, "the concurrent send decrypted", func() (bool, string) {
		got, err := c.TestSent(ctx, "alice")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range got {
			if m.Text == req.Text {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("bob got the idempotent message %d times", n)
		}
		return n == 1, fmt.Sprint(n)
	}, svc.Logs)
}

// Two sessions of the service write to each other (test mode relays a
// session's message to another session's account): each receives the
// other's message as message.received, replies quote, and a mark-read
// becomes the sender's message.ack read.
func TestSessionToSessionMessaging(t *testing.T) {
	svc, _, rcv := messagingService(t)
	ctx := context.Background()
	c := svc.Client
	alice := "+" + e2e.User(svc.Pair("alice"))
	bob := "+" + e2e.User(svc.Pair("bob"))

	hi, err := c.Send(ctx, "alice", sessions.SendRequest{To: bob, Text: "hi bob"})
	if err != nil {
		t.Fatal(err)
	}
	in := waitMessage(t, svc, rcv, hi.ID)
	if in.Event.SenderID != "bob" || in.From != alice[1:]+"@s.whatsapp.net" || in.Chat != in.From || in.Text != "hi bob" {
		t.Fatalf("bob got %s's %+v", in.Event.SenderID, in.MessageData)
	}
	waitAck(t, svc, rcv, "alice", sessions.AckDelivered, hi.ID, bob[1:]+"@s.whatsapp.net")
	re, err := c.Send(ctx, "bob", sessions.SendRequest{To: in.Chat, Text: "hi alice", ReplyTo: hi.ID})
	if err != nil {
		t.Fatal(err)
	}
	if m := waitMessage(t, svc, rcv, re.ID); m.Event.SenderID != "alice" || m.ReplyTo != hi.ID {
		t.Errorf("alice got %s's %+v, want a reply to %s", m.Event.SenderID, m.MessageData, hi.ID)
	}
	if err := c.MarkRead(ctx, "bob", sessions.ReadRequest{ID: hi.ID, Chat: in.Chat}); err != nil {
		t.Fatal(err)
	}
	waitAck(t, svc, rcv, "alice", sessions.AckRead, hi.ID, bob[1:]+"@s.whatsapp.net")
}

// waitSent waits until fake contacts decrypted at least n messages from
// session id (and each of them acknowledged), and returns them in order.
func waitSent(t *testing.T, svc *e2e.Service, id string, n int) []client.TestSentMessage {
	t.Helper()
	var got []client.TestSentMessage
	e2e.WaitFor(t, e2e.Wait, fmt.Sprintf("%d messages decrypted by contacts", n), func() (bool, string) {
		var err error
		got, err = svc.Client.TestSent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return len(got) >= n, fmt.Sprint(len(got))
	}, svc.Logs)
	return got
}

// waitMessage waits for the message.received of message id.
func waitMessage(t *testing.T, svc *e2e.Service, rcv *e2e.Receiver, id string) e2e.ReceivedMessage {
	t.Helper()
	var out e2e.ReceivedMessage
	e2e.WaitFor(t, e2e.Wait, "message.received "+id, func() (bool, string) {
		for _, m := range rcv.Messages() {
			if m.ID == id {
				out = m
				return true, ""
			}
		}
		return false, fmt.Sprint(len(rcv.Messages()), " messages")
	}, svc.Logs)
	return out
}

// waitAck waits for session sender's message.ack with status for sent
// message id in chat.
func waitAck(t *testing.T, svc *e2e.Service, rcv *e2e.Receiver, sender string, status sessions.AckStatus, id, chat string) {
	t.Helper()
	e2e.WaitFor(t, e2e.Wait, fmt.Sprintf("message.ack %s for %s", status, id), func() (bool, string) {
		var seen []string
		for _, a := range rcv.Acks() {
			if a.Status == status && slices.Contains(a.IDs, id) && a.Chat == chat && a.Event.SenderID == sender {
				return true, ""
			}
			b, _ := json.Marshal(a.AckData)
			seen = append(seen, string(b))
		}
		return false, fmt.Sprint(seen)
	}, svc.Logs)
}

// rawMetrics is /metrics as text.
func rawMetrics(t *testing.T, svc *e2e.Service) string {
	t.Helper()
	code, body, _ := svc.Raw(http.MethodGet, "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	return string(body)
}

// waitRead waits until the contact that received message id from user's
// account has seen it read.
func waitRead(t *testing.T, svc *e2e.Service, f *fakeserver.Server, user, id string) {
	t.Helper()
	e2e.WaitFor(t, e2e.Wait, "the contact to see message "+id+" read", func() (bool, string) {
		rs, err := f.Received(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.ID == id {
				return r.Read, fmt.Sprintf("%+v", r)
			}
		}
		return false, "no such message"
	}, svc.Logs)
}
