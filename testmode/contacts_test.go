package testmode_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/testmode"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// events collects a whatsmeow client's events.
type eventLog struct {
	mu   sync.Mutex
	evts []any
}

func (l *eventLog) add(evt any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evts = append(l.evts, evt)
}

func (l *eventLog) has(match func(any) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.evts, match)
}

// The contact actions against a real whatsmeow client on a seeded device:
// receive reaches the client as a message, sent lists what the client sent
// a contact, read reaches it as a read receipt; bad arguments map to the
// domain's errors.
func TestContactActions(t *testing.T) {
	defer goleak.VerifyNone(t)
	fakeserver.UseTestRootKey()
	fake, err := fakeserver.Start(fakeserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const user = "15550200001"
	container, err := sqlstore.New(ctx, store.DriverName, store.DSN(filepath.Join(t.TempDir(), "s.db")), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer container.Close()
	dev, err := fakeserver.SeedDevice(ctx, container, user)
	if err != nil {
		t.Fatal(err)
	}
	cli := whatsmeow.NewClient(dev, waLog.Noop)
	hc, err := fakeserver.HTTPClient(fake.Addr(), fake.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	cli.SetWebsocketHTTPClient(hc)
	cli.EnableAutoReconnect = false
	var log eventLog
	cli.AddEventHandler(log.add)
	if err := cli.Connect(); err != nil {
		t.Fatal(err)
	}
	defer cli.Disconnect()
	waitFor(t, "connected", func() bool { return log.has(func(e any) bool { _, ok := e.(*events.Connected); return ok }) })

	d := testmode.New(phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, fake)
	defer d.Close()

	out, err := d.Act(ctx, "alice", "receive", sessions.TestParams{From: "+15557770020", Text: "hello session"})
	if err != nil {
		t.Fatal(err)
	}
	id := out.(testmode.Result).ID
	waitFor(t, "the message at the client", func() bool {
		return log.has(func(e any) bool {
			m, ok := e.(*events.Message)
			return ok && m.Info.ID == id && m.Message.GetConversation() == "hello session"
		})
	})

	resp, err := cli.SendMessage(ctx, types.NewJID("15557770020", types.DefaultUserServer), &waE2E.Message{Conversation: proto.String("hello contact")})
	if err != nil {
		t.Fatal(err)
	}
	out, err = d.Act(ctx, "alice", "sent", sessions.TestParams{})
	if err != nil {
		t.Fatal(err)
	}
	if sent := out.(testmode.Sent).Messages; len(sent) != 1 || sent[0].ID != resp.ID || sent[0].Text != "hello contact" || sent[0].To != "15557770020" {
		t.Errorf("sent: %+v", sent)
	}
	if _, err := d.Act(ctx, "alice", "read", sessions.TestParams{ID: resp.ID}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the read receipt at the client", func() bool {
		return log.has(func(e any) bool {
			r, ok := e.(*events.Receipt)
			return ok && r.Type == types.ReceiptTypeRead && slices.Contains(r.MessageIDs, resp.ID)
		})
	})

	errs := []struct {
		name   string
		phone  phone
		action string
		params sessions.TestParams
		want   error
	}{
		{"receive without text", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, "receive", sessions.TestParams{From: "+15557770020"}, sessions.ErrInvalid},
		{"receive from a bad number", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, "receive", sessions.TestParams{From: "+12", Text: "x"}, sessions.ErrInvalid},
		{"receive from +999", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, "receive", sessions.TestParams{From: "+9995550000", Text: "x"}, sessions.ErrNotFound},
		{"read without id", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, "read", sessions.TestParams{}, sessions.ErrInvalid},
		{"read of an unknown message", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: dev.ID.String()}}, "read", sessions.TestParams{ID: "3ANONE"}, sessions.ErrNotFound},
		{"receive on a device the server never saw", phone{insp: sessions.Inspection{State: sessions.StateConnected, JID: "15550200009:1@s.whatsapp.net"}}, "receive", sessions.TestParams{From: "+15557770020", Text: "x"}, sessions.ErrWrongState},
		{"sent of an unpaired session", phone{insp: sessions.Inspection{State: sessions.StateNeedsPairing}}, "sent", sessions.TestParams{}, sessions.ErrWrongState},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			d := testmode.New(tt.phone, fake)
			defer d.Close()
			if _, err := d.Act(ctx, "alice", tt.action, tt.params); !errors.Is(err, tt.want) {
				t.Errorf("Act: %v, want %v", err, tt.want)
			}
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	e2e.WaitFor(t, 30*time.Second, what, func() (bool, string) { return cond(), "" })
}
