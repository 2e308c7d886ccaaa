package faults_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// hooked is a run of the service binary whose sessions fake contacts write
// to, with its events delivered to a signature-verifying receiver.
type hooked struct {
	t      *testing.T
	svc    *e2e.Service
	f      *fake
	rcv    *e2e.Receiver
	root   string
	secret string
	ids    []string          // the sessions
	users  map[string]string // session -> its account's phone number
	sent   *sentLog
}

// startHooked seeds n paired sessions, starts the service on them with
// message.received events going to a fresh receiver (extra "NAME=value"
// settings win), and waits until every session is connected.
func startHooked(t *testing.T, n int, extra ...string) *hooked {
	t.Helper()
	h := newHooked(t, n)
	h.start(extra...)
	return h
}

// newHooked seeds n paired sessions and a receiver; start runs the
// service.
func newHooked(t *testing.T, n int) *hooked {
	t.Helper()
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	h := &hooked{t: t, f: newFake(t), rcv: e2e.NewReceiver(t, secret), root: t.TempDir(), secret: secret,
		users: map[string]string{}, sent: &sentLog{}}
	const userBase = "1555761"
	h.ids = seed(t, h.root, n, seedOptions{prefix: "hook", userBase: userBase})
	for i, id := range h.ids {
		h.users[id] = fmt.Sprintf("%s%04d", userBase, i)
	}
	return h
}

// start runs the service on h's directory and waits until every session is
// connected.
func (h *hooked) start(extra ...string) *e2e.Service {
	h.svc = startService(h.t, h.f, h.root, append([]string{"WEBHOOK_URL=" + h.rcv.URL, "WEBHOOK_SECRET=" + h.secret,
		"WEBHOOK_EVENTS=message.received"}, extra...)...)
	h.svc.WaitConnected(len(h.ids), 60*time.Second)
	return h.svc
}

// contactOf is the phone number of the fake contact that writes to session
// id.
func (h *hooked) contactOf(id string) string { return "1555990" + h.users[id][len(h.users[id])-4:] }

// send has session id's contact send it the next message, and records it.
func (h *hooked) send(t testing.TB, id string) {
	t.Helper()
	text := fmt.Sprintf("%s %d to %s", textMark, h.sent.count(id), id)
	mid, err := h.f.ContactSend(context.Background(), h.users[id], "+"+h.contactOf(id), text, "")
	if err != nil {
		t.Errorf("contact send to %s: %v", id, err)
		return
	}
	h.sent.add(id, sentMessage{id: mid, text: text,
		event: whatsapp.MessageEventID(id, h.contactOf(id)+"@s.whatsapp.net", mid)})
}

// sendEach has every session's contact send it n messages, in rounds.
func (h *hooked) sendEach(t testing.TB, n int) {
	for range n {
		for _, id := range h.ids {
			h.send(t, id)
		}
	}
}

// textMark starts every text contacts send here, to look for in logs.
const textMark = "contact's text"

// checkLogsClean checks that logs hold no message text, no contact's or
// account's phone number (so no JID either), no contact's display name.
func (h *hooked) checkLogsClean(t *testing.T, logs ...*e2e.Logs) {
	t.Helper()
	personal := []string{textMark}
	for _, id := range h.ids {
		// The fake names a contact "Test" and its number's last four digits.
		c := h.contactOf(id)
		personal = append(personal, h.users[id], c, "Test "+c[len(c)-4:])
	}
	for i, l := range logs {
		text := l.String()
		if len(l.Records()) == 0 {
			t.Errorf("run %d logged nothing", i+1)
		}
		for _, p := range personal {
			if strings.Contains(text, p) {
				t.Errorf("run %d's logs hold %q", i+1, p)
			}
		}
	}
}

// waitAcknowledged waits until every device acknowledged every message its
// contacts sent: the service committed each message's event to its outbox
// (it acknowledges nothing before), whatever the receiver did.
func (h *hooked) waitAcknowledged(t *testing.T) {
	t.Helper()
	e2e.WaitFor(t, 30*time.Second, "every message acknowledged to WhatsApp", func() (bool, string) {
		pending := 0
		for _, id := range h.ids {
			rs, err := h.f.Received(context.Background(), h.users[id])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				pending += r.Pending
			}
		}
		return pending == 0, fmt.Sprint(pending, " pending")
	}, h.svc.Logs)
}

// waitArrived waits until the receiver accepted every message sent so far
// to the sessions ids, at least once each.
func (h *hooked) waitArrived(t *testing.T, timeout time.Duration, ids ...string) {
	t.Helper()
	e2e.WaitFor(t, timeout, "every message at the receiver", func() (bool, string) {
		missing := h.missing(ids...)
		return missing == 0, fmt.Sprint(missing, " missing")
	}, h.svc.Logs)
}

// missing counts the messages sent to sessions ids that the receiver has not
// accepted.
func (h *hooked) missing(ids ...string) int {
	got := map[string]bool{}
	for _, m := range h.rcv.Messages() {
		got[m.ID] = true
	}
	n := 0
	for _, id := range ids {
		for _, m := range h.sent.of(id) {
			if !got[m.id] {
				n++
			}
		}
	}
	return n
}

// checkDelivered checks what "nothing lost" means for webhooks: every
// message sent to sessions ids reached the receiver at least once, with
// the text sent, under the webhook-id of its event (the same for each
// duplicate), for its session, and nothing else arrived; and, when
// inOrder, each session's messages first arrived in the order they were
// sent. It returns how many deliveries were duplicates.
func (h *hooked) checkDelivered(t *testing.T, inOrder bool, ids ...string) (dups int) {
	t.Helper()
	want := map[string]sentMessage{}
	owner := map[string]string{}
	for _, id := range ids {
		for _, m := range h.sent.of(id) {
			want[m.id], owner[m.id] = m, id
		}
	}
	seen := map[string]bool{}
	firsts := map[string][]string{}
	for _, m := range h.rcv.Messages() {
		w, ok := want[m.ID]
		switch {
		case !ok:
			t.Errorf("the receiver got message %s, which no contact sent to %v", m.ID, ids)
			continue
		case m.Text != w.text || m.Event.SenderID != owner[m.ID] || m.From != h.contactOf(owner[m.ID])+"@s.whatsapp.net":
			t.Errorf("message %s arrived as %q from %s to %s, sent as %q to %s", m.ID, m.Text, m.From, m.Event.SenderID, w.text, owner[m.ID])
		case m.WebhookID != w.event:
			t.Errorf("message %s arrived with webhook-id %s, want its event's id %s", m.ID, m.WebhookID, w.event)
		}
		if seen[m.ID] {
			dups++
			continue
		}
		seen[m.ID] = true
		firsts[m.Event.SenderID] = append(firsts[m.Event.SenderID], m.ID)
	}
	for _, id := range ids {
		var sentIDs []string
		for _, m := range h.sent.of(id) {
			sentIDs = append(sentIDs, m.id)
			if !seen[m.id] {
				t.Errorf("message %s to %s never reached the receiver", m.id, id)
			}
		}
		if inOrder && !slices.Equal(firsts[id], sentIDs) {
			t.Errorf("%s's messages arrived in the order %v, sent in the order %v", id, firsts[id], sentIDs)
		}
	}
	if r := h.rcv.Refused(); len(r) > 0 {
		t.Errorf("%d deliveries did not verify, the first: %v", len(r), r[0].Err)
	}
	return dups
}

// deliveries is the service's deliveries in state.
func (h *hooked) deliveries(t *testing.T, state sessions.DeliveryState) []sessions.Delivery {
	t.Helper()
	ds, _, err := h.svc.Client.Deliveries(context.Background(), state, "", 1000)
	if err != nil {
		t.Fatalf("deliveries %s: %v", state, err)
	}
	return ds
}

// sentMessage is one message a contact sent.
type sentMessage struct{ id, text, event string }

// sentLog is what the contacts sent, per session, in order.
type sentLog struct {
	mu   sync.Mutex
	byID map[string][]sentMessage
}

func (l *sentLog) add(id string, m sentMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byID == nil {
		l.byID = map[string][]sentMessage{}
	}
	l.byID[id] = append(l.byID[id], m)
}

func (l *sentLog) of(id string) []sentMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.byID[id])
}

func (l *sentLog) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byID[id])
}

// TestWebhookReceiverDown: while the receiver's port refuses connections,
// contacts' messages are still acknowledged to WhatsApp (committed to the
// outbox) and wait, while a second endpoint gets them all; once the first
// listens again, every one arrives there too, in order per session. Nothing lost: each message the contacts sent reaches the
// receiver at least once, with its text, under its event's webhook-id.
func TestWebhookReceiverDown(t *testing.T) {
	h := newHooked(t, 3)
	// A second endpoint stays up: it gets everything meanwhile.
	up := e2e.NewReceiver(t, h.secret)
	h.start("WEBHOOK_URL=" + h.rcv.URL + "," + up.URL)
	h.rcv.Down()
	h.sendEach(t, 5)
	h.waitAcknowledged(t)
	// Down for a while: until each session's head delivery failed twice.
	e2e.WaitFor(t, 30*time.Second, "failed attempts while the receiver is down", func() (bool, string) {
		n := h.svc.Metric("whatsapp_webhook_deliveries_total", "result", "failed")
		return n >= 6, fmt.Sprint(n)
	}, h.svc.Logs)
	upToo := &hooked{t: t, rcv: up, ids: h.ids, users: h.users, sent: h.sent, svc: h.svc}
	upToo.waitArrived(t, 30*time.Second, h.ids...)
	upToo.checkDelivered(t, true, h.ids...)
	if n := h.svc.Metric("whatsapp_webhook_queue_depth"); n != 15 {
		t.Errorf("queue depth %v while one receiver is down, want its 15 messages", n)
	}
	if len(h.rcv.Tries()) != 0 {
		t.Fatalf("a down receiver got requests")
	}
	h.rcv.Up()
	h.waitArrived(t, 30*time.Second, h.ids...)
	if dups := h.checkDelivered(t, true, h.ids...); dups != 0 {
		t.Errorf("%d duplicates, though no delivery reached the receiver before it came back", dups)
	}
	e2e.WaitFor(t, 10*time.Second, "an empty queue", func() (bool, string) {
		n := h.svc.Metric("whatsapp_webhook_queue_depth")
		return n == 0, fmt.Sprint(n)
	}, h.svc.Logs)
}

// TestWebhookErrorHoldsOnlyItsSession: the receiver answers 500 to one
// session's events and 2xx to the others': the others' arrive meanwhile,
// the failing session's head is retried alone (the same webhook-id each
// time, nothing after it sent), and once the receiver answers 200 they all
// arrive, in order. Nothing lost: as in TestWebhookReceiverDown.
func TestWebhookErrorHoldsOnlyItsSession(t *testing.T) {
	h := startHooked(t, 3)
	stuck, others := h.ids[0], h.ids[1:]
	h.rcv.AnswerFor(stuck, http.StatusInternalServerError)
	h.sendEach(t, 5)
	h.waitArrived(t, 30*time.Second, others...)
	head := h.sent.of(stuck)[0].event
	e2e.WaitFor(t, 30*time.Second, "the stuck session's head retried", func() (bool, string) {
		var tries []string
		for _, try := range h.rcv.Tries() {
			if try.SenderID == stuck {
				tries = append(tries, try.WebhookID)
			}
		}
		for _, id := range tries {
			if id != head {
				t.Fatalf("the receiver got %s's event %s while its head %s failed: order per session broken", stuck, id, head)
			}
		}
		// The receiver counts an attempt before the service records it.
		failed := h.deliveries(t, sessions.DeliveryFailed)
		return len(tries) >= 2 && len(failed) == 1 && failed[0].Attempts >= 2, fmt.Sprint(tries, failed)
	}, h.svc.Logs)
	if h.missing(stuck) != 5 {
		t.Fatalf("%d of %s's messages missing while the receiver fails them, want all 5", h.missing(stuck), stuck)
	}
	failed := h.deliveries(t, sessions.DeliveryFailed)
	if len(failed) != 1 || failed[0].EventID != head || failed[0].SenderID != stuck || failed[0].Attempts < 2 ||
		failed[0].LastError != "answered 500 Internal Server Error" || failed[0].NextTryAt == nil {
		t.Errorf("failed deliveries %+v, want %s's head with the 500", failed, stuck)
	}
	if pending := h.deliveries(t, sessions.DeliveryPending); len(pending) != 4 {
		t.Errorf("%d deliveries pending behind the failed head, want 4", len(pending))
	}
	h.rcv.AnswerFor(stuck, 0)
	h.waitArrived(t, 30*time.Second, stuck)
	if dups := h.checkDelivered(t, true, h.ids...); dups != 0 {
		t.Errorf("%d duplicates accepted", dups)
	}
}

// TestWebhookTimeout: the receiver takes each delivery in but answers
// after WEBHOOK_TIMEOUT: each attempt fails as timed out and is retried
// (the receiver sees duplicates, under one webhook-id); once it answers in
// time, the events arrive in order. Nothing lost: as in
// TestWebhookReceiverDown.
func TestWebhookTimeout(t *testing.T) {
	h := startHooked(t, 1, "WEBHOOK_TIMEOUT=1s") // an answer in time never comes near it
	h.rcv.Answer(http.StatusNoContent, 5*time.Second)
	h.sendEach(t, 3)
	e2e.WaitFor(t, 30*time.Second, "two timed-out attempts", func() (bool, string) {
		failed := h.deliveries(t, sessions.DeliveryFailed)
		return len(failed) == 1 && failed[0].Attempts >= 2, fmt.Sprintf("%+v", failed)
	}, h.svc.Logs)
	if d := h.deliveries(t, sessions.DeliveryFailed)[0]; !strings.Contains(d.LastError, "WEBHOOK_TIMEOUT") {
		t.Errorf("a timed-out delivery's last error: %q", d.LastError)
	}
	h.rcv.Answer(http.StatusNoContent, 0)
	h.waitArrived(t, 30*time.Second, h.ids...)
	// The receiver took each timed-out attempt in before answering late:
	// duplicates, under one webhook-id (checkDelivered).
	if dups := h.checkDelivered(t, true, h.ids...); dups < 2 {
		t.Errorf("%d duplicates, want one per timed-out attempt (2 or more)", dups)
	}
}

// TestWebhookRedirectIsNotFollowed: the receiver answers 301 to another
// address (a private one: loopback); the service does not follow it, and
// the delivery fails and is retried at the endpoint it was given. Nothing
// lost: as in TestWebhookReceiverDown, once the endpoint answers 2xx.
func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	h := startHooked(t, 1)
	elsewhere := e2e.NewReceiver(t, h.secret)
	h.rcv.Redirect(http.StatusMovedPermanently, elsewhere.URL)
	h.sendEach(t, 2)
	e2e.WaitFor(t, 30*time.Second, "two refused redirects", func() (bool, string) {
		failed := h.deliveries(t, sessions.DeliveryFailed)
		return len(failed) == 1 && failed[0].Attempts >= 2, fmt.Sprintf("%+v", failed)
	}, h.svc.Logs)
	if d := h.deliveries(t, sessions.DeliveryFailed)[0]; !strings.Contains(d.LastError, "301") {
		t.Errorf("a redirected delivery's last error: %q", d.LastError)
	}
	if n := len(elsewhere.Tries()); n != 0 {
		t.Fatalf("the service followed the redirect %d times", n)
	}
	h.rcv.Answer(http.StatusOK, 0)
	h.waitArrived(t, 30*time.Second, h.ids...)
	h.checkDelivered(t, true, h.ids...)
	if n := len(elsewhere.Tries()); n != 0 {
		t.Errorf("the service followed the redirect %d times", n)
	}
}

// TestKill9WhileContactsSend kills the service with SIGKILL while contacts
// send 200 messages at a steady rate to several sessions, restarts it, and
// checks "nothing lost": every message reaches the receiver at least once
// (counted by message id), with the text the contact sent (so nothing was
// decrypted twice wrongly: a message redelivered after the kill is served
// from whatsmeow's decrypted-event buffer, or decrypted afresh if it never
// was), duplicates (the delivery in flight at the kill, at least) under
// the same webhook-id; and WhatsApp holds nothing
// unacknowledged and got no retry receipt (no message failed to decrypt).
func TestKill9WhileContactsSend(t *testing.T) {
	streamThroughAStop(t, func(svc *e2e.Service) { svc.Kill() })
}

// TestSIGTERMWhileContactsSend is TestKill9WhileContactsSend with a clean
// stop: the service exits 0 within SHUTDOWN_TIMEOUT although the receiver
// holds a delivery, and nothing is lost, as there.
func TestSIGTERMWhileContactsSend(t *testing.T) {
	streamThroughAStop(t, func(svc *e2e.Service) {
		if code, took := svc.Terminate(30 * time.Second); code != 0 || took > svc.Config.ShutdownTimeout+5*time.Second {
			t.Errorf("SIGTERM: exit %d after %v", code, took)
		}
	})
}

// streamThroughAStop has contacts send 200 messages at a steady rate to
// several sessions, stops the service with stop in the middle of the
// stream while the receiver holds a delivery, restarts it, and checks
// that nothing was lost (see TestKill9WhileContactsSend).
func streamThroughAStop(t *testing.T, stop func(*e2e.Service)) {
	const total, sessionsN, spread = 200, 4, 4 * time.Second
	h := startHooked(t, sessionsN, "LOG_LEVEL=debug")
	first := h.svc
	// Contacts send at a steady rate, whatever happens to the service.
	sent := make(chan struct{})
	t.Cleanup(func() { <-sent }) // no t.Errorf after the test, however it ends
	go func() {
		defer close(sent)
		tick := time.NewTicker(spread / total)
		defer tick.Stop()
		for i := range total {
			<-tick.C
			h.send(t, h.ids[i%sessionsN])
		}
	}()
	// The kill lands in the middle of the stream, while the receiver
	// holds a delivery it took in: the restarted service sends it again.
	time.Sleep(spread / 3) // the fault's timing, not a synchronisation
	held := len(h.rcv.Got())
	h.rcv.Answer(http.StatusNoContent, time.Minute)
	e2e.WaitFor(t, 10*time.Second, "a delivery held by the receiver", func() (bool, string) {
		n := len(h.rcv.Got())
		return n > held, fmt.Sprint(n)
	}, h.svc.Logs)
	at := len(h.rcv.Messages())
	stop(first)
	h.rcv.Answer(http.StatusNoContent, 0)
	h.f.waitQuiet(t)
	h.start("LOG_LEVEL=debug")
	<-sent
	h.waitArrived(t, 60*time.Second, h.ids...)
	h.waitAcknowledged(t)
	dups := h.checkDelivered(t, true, h.ids...)
	if dups == 0 {
		t.Errorf("no duplicate, though the receiver held a delivery when the service stopped")
	}
	retries, redelivered := 0, 0
	for _, id := range h.ids {
		rs, err := h.f.Received(context.Background(), h.users[id])
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			retries += r.Retries
			if r.Deliveries > 1 {
				redelivered++
			}
		}
	}
	if retries != 0 {
		t.Errorf("%d retry receipts: a device failed to decrypt a message redelivered after the kill", retries)
	}
	t.Logf("%d messages at the receiver when stopped; WhatsApp redelivered %d after the restart; %d duplicates delivered", at, redelivered, dups)
	assertNoDoubleLogin(t, h.f, first.Logs, h.svc.Logs)
	h.checkLogsClean(t, first.Logs, h.svc.Logs)
}

// TestKill9BeforeTheCommitUsesTheDecryptedBuffer makes the moment between
// decryption and the outbox's commit last: another process holds the
// outbox database's write lock while a contact's message arrives (its
// first, a prekey message whose one-time prekey the decryption uses up;
// or a later, plain one whose message key it uses up). The session
// decrypts it into whatsmeow's decrypted-event buffer and waits for the
// commit; it is killed then. After the restart WhatsApp redelivers the
// same stanza, which can no longer be decrypted: the plaintext must come
// from the buffer. Nothing lost: every message reaches the receiver with
// the text sent, WhatsApp got no retry receipt and holds nothing
// unacknowledged, and the buffer keeps no plaintext.
func TestKill9BeforeTheCommitUsesTheDecryptedBuffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before int // messages the contact sent before, committed
	}{
		{"a prekey message", 0},
		{"a plain message", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHooked(t, 1, "LOG_LEVEL=debug")
			id := h.ids[0]
			for range tc.before {
				h.send(t, id)
			}
			h.waitArrived(t, 30*time.Second, id)

			first := h.svc
			lock := lockDB(t, filepath.Join(h.root, "outbox.db"))
			h.send(t, id)
			buffered := filepath.Join(h.root, "session-"+id, "whatsapp.db")
			e2e.WaitFor(t, 30*time.Second, "the message's plaintext in the decrypted-event buffer", func() (bool, string) {
				n := countRows(t, buffered, "SELECT count(*) FROM whatsmeow_event_buffer WHERE plaintext IS NOT NULL")
				return n == 1, fmt.Sprint(n)
			}, h.svc.Logs)
			h.svc.Kill()
			h.f.waitQuiet(t)
			lock()

			h.start("LOG_LEVEL=debug")
			h.waitArrived(t, 30*time.Second, id)
			h.waitAcknowledged(t)
			h.checkDelivered(t, true, id)
			rs, err := h.f.Received(context.Background(), h.users[id])
			if err != nil {
				t.Fatal(err)
			}
			if last := rs[len(rs)-1]; len(rs) != tc.before+1 || last.Retries != 0 || last.Deliveries < 2 {
				t.Errorf("WhatsApp's record of the messages: %+v; want the last delivered twice, without a retry receipt", rs)
			}
			if n := countRows(t, buffered, "SELECT count(*) FROM whatsmeow_event_buffer WHERE plaintext IS NOT NULL"); n != 0 {
				t.Errorf("%d plaintexts left in the decrypted-event buffer", n)
			}
			h.checkLogsClean(t, first.Logs, h.svc.Logs)
		})
	}
}

// lockDB takes the write lock of the SQLite database at path, as another
// process would, and returns what releases it.
func lockDB(t *testing.T, path string) (release func()) {
	t.Helper()
	// It waits its turn: the service writes there too.
	db, err := sql.Open(store.DriverName, "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("lock %s: %v", path, err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			_ = conn.Close()
			_ = db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// countRows is the count query returns from the SQLite database at path.
func countRows(t *testing.T, path, query string) int {
	t.Helper()
	var n int
	readRow(t, path, query, &n)
	return n
}

// TestIdempotentSendAcrossKill9: a send with an Idempotency-Key is under
// way (recorded pending, its store write held up by another process's
// lock) when the service is killed; the retry after the restart sends it
// with the message id the first attempt recorded, and a later retry
// answers as that one did. A send answered just before a kill -9 is
// answered alike after it. Nothing lost or doubled: the contact decrypted
// each text exactly once, under the id the API answered.
func TestIdempotentSendAcrossKill9(t *testing.T) {
	h := startHooked(t, 1)
	id, ctx := h.ids[0], context.Background()
	const to = "+15550004001"
	done := sessions.SendRequest{To: to, Text: "answered before the kill", IdempotencyKey: "k-done"}
	first, err := h.svc.Client.Send(ctx, id, done)
	if err != nil {
		t.Fatal(err)
	}

	lock := lockDB(t, filepath.Join(h.root, "session-"+id, "whatsapp.db"))
	cut := sessions.SendRequest{To: to, Text: "cut by the kill", IdempotencyKey: "k-cut"}
	answered := make(chan error, 1)
	go func() {
		_, err := h.svc.Client.Send(ctx, id, cut)
		answered <- err
	}()
	keys := filepath.Join(h.root, "idempotency.db")
	e2e.WaitFor(t, 30*time.Second, "the cut send recorded pending", func() (bool, string) {
		n := countRows(t, keys, "SELECT count(*) FROM sends WHERE key = 'k-cut' AND answered_at IS NULL")
		return n == 1, fmt.Sprint(n)
	}, h.svc.Logs)
	var pendingID string
	readRow(t, keys, "SELECT message_id FROM sends WHERE key = 'k-cut'", &pendingID)
	h.svc.Kill()
	if err := <-answered; err == nil {
		t.Fatal("the cut send was answered 200 before the kill")
	}
	lock()
	h.f.waitQuiet(t)
	h.start()

	if again, err := h.svc.Client.Send(ctx, id, done); err != nil || again != first {
		t.Errorf("the answered send after the kill: %+v %v, want %+v", again, err, first)
	}
	retried, err := h.svc.Client.Send(ctx, id, cut)
	if err != nil || retried.ID != pendingID {
		t.Fatalf("the cut send retried: %+v %v, want message id %s", retried, err, pendingID)
	}
	if again, err := h.svc.Client.Send(ctx, id, cut); err != nil || again != retried {
		t.Errorf("the cut send retried again: %+v %v, want %+v", again, err, retried)
	}
	sent, err := h.svc.Client.TestSent(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	byText := map[string][]string{}
	for _, m := range sent {
		byText[m.Text] = append(byText[m.Text], m.ID)
	}
	if got := byText[done.Text]; !slices.Equal(got, []string{first.ID}) {
		t.Errorf("the contact decrypted %q as %v, want once as %s", done.Text, got, first.ID)
	}
	if got := byText[cut.Text]; !slices.Equal(got, []string{pendingID}) {
		t.Errorf("the contact decrypted %q as %v, want once as %s", cut.Text, got, pendingID)
	}
}

// readRow scans the one row query returns from the SQLite database at
// path, read only.
func readRow(t *testing.T, path, query string, dest ...any) {
	t.Helper()
	db, err := sql.Open(store.DriverName, "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(query).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// TestUncommittedMessageIsDeliveredAgainWithoutARestart: the outbox cannot
// commit a contact's message (another process holds its write lock past
// the busy timeout), so the session does not acknowledge it; it drops its
// connection and logs in again, WhatsApp delivers the message again, and
// it is committed then, without a restart. Nothing lost: every message
// reaches the receiver with its text (the redelivered one from the
// decrypted-event buffer: no retry receipt), none stays unacknowledged.
func TestUncommittedMessageIsDeliveredAgainWithoutARestart(t *testing.T) {
	h := startHooked(t, 1)
	id := h.ids[0]
	h.send(t, id)
	h.waitArrived(t, 30*time.Second, id)
	lock := lockDB(t, filepath.Join(h.root, "outbox.db"))
	h.send(t, id)
	// The outbox gives up after its busy timeout (10 s).
	e2e.WaitFor(t, 30*time.Second, "the event not committed", func() (bool, string) {
		return strings.Contains(h.svc.Logs.String(), "event not committed"), ""
	}, h.svc.Logs)
	lock()
	h.send(t, id)
	h.waitArrived(t, 30*time.Second, id)
	h.waitAcknowledged(t)
	h.checkDelivered(t, false, id)
	rs, err := h.f.Received(context.Background(), h.users[id])
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || rs[1].Deliveries != 2 || rs[1].Retries != 0 {
		t.Errorf("WhatsApp's record %+v; want the second message delivered twice, without a retry receipt", rs)
	}
	if st := h.svc.WaitState(id, sessions.StateConnected, 30*time.Second); st.Reconnects != 1 {
		t.Errorf("%d reconnects, want the 1 that made WhatsApp deliver again", st.Reconnects)
	}
	h.checkLogsClean(t, h.svc.Logs)
}
