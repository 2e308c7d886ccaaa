package fakeserver_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// TestRemote drives a server through its HTTP control API, as the service
// does with a cmd/fakewa in another process.
func TestRemote(t *testing.T) {
	srv := startServer(t)
	ts := httptest.NewServer(srv.ControlHandler())
	t.Cleanup(ts.Close)
	remote := fakeserver.NewRemote(ts.URL, ts.Client())
	ctx := ctxTimeout(t)

	t.Run("scan", func(t *testing.T) {
		tc, _, item := pairingClient(t, srv, storePath(t, "remote"))
		jid, err := remote.ScanQR(ctx, item.Code)
		if err != nil {
			t.Fatalf("ScanQR: %v", err)
		}
		waitEvent[*events.Connected](t, tc, nil)
		parsed, _ := types.ParseJID(jid)
		user := parsed.User
		waitConnections(t, remote, user, 1)

		st, err := remote.Stats(ctx)
		if err != nil || st.Pairings != 1 || st.Live != 1 {
			t.Errorf("Stats = %+v, %v", st, err)
		}

		if err := remote.SetIgnoreKeepalives(ctx, user, true); err != nil {
			t.Fatal(err)
		}
		waitEvent[*events.KeepAliveTimeout](t, tc, nil)
		if err := remote.SetIgnoreKeepalives(ctx, user, false); err != nil {
			t.Fatal(err)
		}

		n, err := remote.Drop(ctx, user)
		if err != nil || n != 1 {
			t.Fatalf("Drop = %d, %v; want 1", n, err)
		}
		waitEvent[*events.Disconnected](t, tc, nil)

		// A ban set remotely applies to the next login.
		if err := remote.SetLoginFailure(ctx, user, fakeserver.LoginFailure{Reason: 402, BanCode: 7, Expire: time.Minute}); err != nil {
			t.Fatal(err)
		}
		connect(t, tc)
		ban := waitEvent[*events.TemporaryBan](t, tc, nil)
		if ban.Code != 7 || ban.Expire != time.Minute {
			t.Errorf("TemporaryBan = %d %s; want 7 1m", ban.Code, ban.Expire)
		}
		if err := remote.SetLoginFailure(ctx, user, fakeserver.LoginFailure{}); err != nil {
			t.Fatal(err)
		}
		tc.Disconnect()
		tc.reset()
		connect(t, tc)
		waitEvent[*events.Connected](t, tc, nil)
		waitConnections(t, remote, user, 1)

		if err := remote.SendStreamError(ctx, user, fakeserver.StreamReplaced); err != nil {
			t.Fatal(err)
		}
		waitEvent[*events.StreamReplaced](t, tc, nil)
		if n, err := remote.DropAll(ctx); err != nil || n != 0 {
			t.Errorf("DropAll = %d, %v; want 0 after the stream error", n, err)
		}
	})

	t.Run("messages", func(t *testing.T) {
		const user, contact = "15550100010", "15557770010"
		tc := connectedSeed(t, srv, user)
		id, err := remote.ContactSend(ctx, user, contact, "over http", "")
		if err != nil {
			t.Fatal(err)
		}
		waitEvent(t, tc, func(m *events.Message) bool { return m.Info.ID == id && m.Message.GetConversation() == "over http" })
		eventually(t, "the message acknowledged", func() bool { return received(t, remote, user, id).Delivered })

		resp, err := tc.SendMessage(ctx, pn(contact), &waE2E.Message{Conversation: proto.String("back")})
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.ContactRead(ctx, user, resp.ID); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, tc, func(r *events.Receipt) bool { return r.Type == types.ReceiptTypeRead && r.MessageIDs[0] == resp.ID })
		sent, err := remote.Sent(ctx, user)
		if err != nil || len(sent) != 1 || sent[0].ID != resp.ID || sent[0].Text != "back" || !sent[0].Read || sent[0].To != contact {
			t.Errorf("Sent = %+v, %v", sent, err)
		}
	})

	t.Run("expire", func(t *testing.T) {
		_, qrs, item := pairingClient(t, srv, storePath(t, "remote-expire"))
		if err := remote.ExpireQR(ctx, item.Code); err != nil {
			t.Fatal(err)
		}
		checkQREnd(t, qrs, whatsmeow.QRChannelTimeout)
	})

	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name string
			call func() error
			want error
		}{
			{"unknown QR", func() error {
				_, err := remote.ScanQR(ctx, "2@x,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,1")
				return err
			}, fakeserver.ErrUnknownQR},
			{"malformed QR", func() error {
				_, err := remote.ScanQR(ctx, "nope")
				return err
			}, fakeserver.ErrInvalidArgument},
			{"no pairing-code request", func() error {
				_, err := remote.EnterPairingCode(ctx, "15550009999", "ABCD-EFGH")
				return err
			}, fakeserver.ErrNoPendingPairing},
			{"bad stream error kind", func() error {
				return remote.SendStreamError(ctx, "15550009999", "bogus")
			}, fakeserver.ErrInvalidArgument},
			{"contact not on WhatsApp", func() error {
				_, err := remote.ContactSend(ctx, "15550100010", "+9995550001", "hi", "")
				return err
			}, fakeserver.ErrNotOnWhatsApp},
			{"contact not a number", func() error {
				_, err := remote.ContactSend(ctx, "15550100010", "alice", "hi", "")
				return err
			}, fakeserver.ErrInvalidArgument},
			{"empty text", func() error {
				_, err := remote.ContactSend(ctx, "15550100010", "15557770011", "", "")
				return err
			}, fakeserver.ErrInvalidArgument},
			{"account without devices", func() error {
				_, err := remote.ContactSend(ctx, "15550009999", "15557770011", "hi", "")
				return err
			}, fakeserver.ErrNoDevice},
			{"prepare from a contact not on WhatsApp", func() error {
				return remote.ContactPrepare(ctx, "15550100010", "+9995550001")
			}, fakeserver.ErrNotOnWhatsApp},
			{"prepare from the account itself", func() error {
				return remote.ContactPrepare(ctx, "15550100010", "15550100010")
			}, fakeserver.ErrInvalidArgument},
			{"prepare for an account without devices", func() error {
				return remote.ContactPrepare(ctx, "15550009999", "15557770011")
			}, fakeserver.ErrNoDevice},
			{"read of an unknown message", func() error {
				return remote.ContactRead(ctx, "15550009999", "3ANOSUCHID")
			}, fakeserver.ErrUnknownMessage},
			{"bad failure reason", func() error {
				return remote.SetLoginFailure(ctx, "15550009999", fakeserver.LoginFailure{Reason: 42})
			}, fakeserver.ErrInvalidArgument},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := tt.call(); !errors.Is(err, tt.want) {
					t.Errorf("error %v, want %v", err, tt.want)
				}
			})
		}
		if n, err := remote.Connections(ctx, "15550009999"); err != nil || n != 0 {
			t.Errorf("Connections of unknown user = %d, %v; want 0", n, err)
		}
	})

	t.Run("http errors", func(t *testing.T) {
		resp, err := http.Post(ts.URL+"/scan", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("empty body: %d %s, want 400 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		resp, err = http.Get(ts.URL + "/nowhere")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown route: %d, want 404", resp.StatusCode)
		}
	})
}
