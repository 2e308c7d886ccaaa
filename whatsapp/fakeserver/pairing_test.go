package fakeserver_test

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/appstate"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

var assignedPhone = regexp.MustCompile(`^1555[0-9]{7}$`)

// checkPaired checks that a client stored the device the server paired and
// logged in as it, and that a fresh client on the same store file logs in
// without pairing.
func checkPaired(t *testing.T, srv *fakeserver.Server, path string, tc *testClient, jid string) {
	t.Helper()
	ctx := ctxTimeout(t)
	pair := waitEvent[*events.PairSuccess](t, tc, nil)
	if pair.ID.String() != jid {
		t.Errorf("PairSuccess ID %s, server said %s", pair.ID, jid)
	}
	if pair.LID.Server != types.HiddenUserServer || pair.LID.Device != pair.ID.Device {
		t.Errorf("PairSuccess LID %s does not match device %s", pair.LID, pair.ID)
	}
	// After pair-success the server sends stream error 515 and the client
	// reconnects by itself as the new device.
	waitEvent[*events.Connected](t, tc, nil)
	if tc.Store.ID == nil || tc.Store.ID.String() != jid {
		t.Fatalf("store ID %v, want %s", tc.Store.ID, jid)
	}
	user := tc.Store.ID.User
	waitConnections(t, srv, user, 1)

	// The phone shares its app state keys; the client then syncs the app
	// state, which carries the push name.
	for _, name := range appstate.AllPatchNames {
		waitEvent(t, tc, func(e *events.AppStateSyncComplete) bool { return e.Name == name })
	}
	wantName := "Test " + user[len(user)-4:]
	if tc.Store.PushName != wantName {
		t.Errorf("push name %q, want %q", tc.Store.PushName, wantName)
	}
	st, err := srv.Stats(ctx)
	if err != nil || st.Pairings != 1 || st.PendingPairings != 0 || st.Live != 1 {
		t.Errorf("Stats = %+v, %v; want 1 pairing, 0 pending, 1 live", st, err)
	}
	tc.Disconnect()
	waitConnections(t, srv, user, 0)

	// A fresh client on the same store file, as after a service restart.
	fresh := newClient(t, srv, firstDevice(t, openStore(t, path)))
	if fresh.Store.ID == nil || fresh.Store.ID.String() != jid {
		t.Fatalf("reloaded store ID %v, want %s", fresh.Store.ID, jid)
	}
	if fresh.Store.PushName != wantName {
		t.Errorf("reloaded push name %q, want %q", fresh.Store.PushName, wantName)
	}
	connect(t, fresh)
	waitEvent[*events.Connected](t, fresh, nil)
	for _, evt := range fresh.seen() {
		if _, ok := evt.(*events.QR); ok {
			t.Error("restored client was asked to pair again")
		}
	}
	if fresh.Store.LID != pair.LID {
		t.Errorf("LID after re-login %s, want %s", fresh.Store.LID, pair.LID)
	}
}

func TestQRPairing(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	path := storePath(t, "qr")
	tc, qrs, item := pairingClient(t, srv, path)
	if st, _ := srv.Stats(ctx); st.PendingPairings != 1 {
		t.Errorf("PendingPairings = %d, want 1", st.PendingPairings)
	}

	jid, err := srv.ScanQR(ctx, item.Code)
	if err != nil {
		t.Fatalf("ScanQR: %v", err)
	}
	parsed, err := types.ParseJID(jid)
	if err != nil || !assignedPhone.MatchString(parsed.User) || parsed.Device == 0 {
		t.Fatalf("ScanQR JID %q (%v): want 1555xxxxxxx:D@s.whatsapp.net", jid, err)
	}
	checkQREnd(t, qrs, whatsmeow.QRChannelSuccess)
	checkPaired(t, srv, path, tc, jid)

	// The QR code is used up.
	if _, err := srv.ScanQR(ctx, item.Code); !errors.Is(err, fakeserver.ErrUnknownQR) {
		t.Errorf("second scan: %v, want ErrUnknownQR", err)
	}
}

func TestScanQRRejectsUnknownCodes(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	if _, err := srv.ScanQR(ctx, "not a qr code"); !errors.Is(err, fakeserver.ErrInvalidArgument) {
		t.Errorf("garbage: %v, want ErrInvalidArgument", err)
	}
	const unknown = "2@abc,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,1"
	if _, err := srv.ScanQR(ctx, unknown); !errors.Is(err, fakeserver.ErrUnknownQR) {
		t.Errorf("unknown ref: %v, want ErrUnknownQR", err)
	}
}

func TestExpireQR(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	_, qrs, item := pairingClient(t, srv, storePath(t, "expire"))
	if err := srv.ExpireQR(ctx, item.Code); err != nil {
		t.Fatalf("ExpireQR: %v", err)
	}
	checkQREnd(t, qrs, whatsmeow.QRChannelTimeout)
	eventually(t, "no pending pairing", func() bool {
		st, _ := srv.Stats(ctx)
		return st.PendingPairings == 0
	})
	if err := srv.ExpireQR(ctx, item.Code); !errors.Is(err, fakeserver.ErrUnknownQR) {
		t.Errorf("second expiry: %v, want ErrUnknownQR", err)
	}
}

func TestPhoneCodePairing(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	path := storePath(t, "code")
	tc := newClient(t, srv, firstDevice(t, openStore(t, path)))
	connect(t, tc)
	// PairPhone needs the pairing connection up: wait for its QR codes.
	waitEvent[*events.QR](t, tc, nil)

	const phone = "15557654321"
	code, err := tc.PairPhone(ctx, "+1 555-765-4321", true, whatsmeow.PairClientChrome, "Chrome (Linux)")
	if err != nil {
		t.Fatalf("PairPhone: %v", err)
	}

	if _, err := srv.EnterPairingCode(ctx, "15550000000", code); !errors.Is(err, fakeserver.ErrNoPendingPairing) {
		t.Errorf("other phone: %v, want ErrNoPendingPairing", err)
	}
	wrong := "AAAA-AAAA"
	if code == wrong {
		wrong = "BBBB-BBBB"
	}
	if _, err := srv.EnterPairingCode(ctx, phone, wrong); !errors.Is(err, fakeserver.ErrWrongCode) {
		t.Fatalf("wrong code: %v, want ErrWrongCode", err)
	}
	jid, err := srv.EnterPairingCode(ctx, phone, code)
	if err != nil {
		t.Fatalf("EnterPairingCode: %v", err)
	}
	parsed, err := types.ParseJID(jid)
	if err != nil || parsed.User != phone || parsed.Device == 0 {
		t.Fatalf("JID %q (%v): want %s:D@s.whatsapp.net", jid, err, phone)
	}
	checkPaired(t, srv, path, tc, jid)
}

// With Options.QRCodes below six, whatsmeow shows every code for 20 s
// (the first of six for 60 s): the console's browser test sees codes
// rotate sooner.
func TestFewerQRCodesRotateSooner(t *testing.T) {
	for _, tt := range []struct {
		codes int
		first time.Duration
	}{{0, 60 * time.Second}, {2, 20 * time.Second}} {
		srv, err := fakeserver.Start(fakeserver.Options{QRCodes: tt.codes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		tc, _, item := pairingClient(t, srv, storePath(t, fmt.Sprintf("codes%d", tt.codes)))
		if item.Timeout != tt.first {
			t.Errorf("QRCodes %d: the first code lasts %v, want %v", tt.codes, item.Timeout, tt.first)
		}
		want := cmp.Or(tt.codes, 6)
		if qr := waitEvent[*events.QR](t, tc, nil); len(qr.Codes) != want {
			t.Errorf("QRCodes %d: %d codes, want %d", tt.codes, len(qr.Codes), want)
		}
	}
	if _, err := fakeserver.Start(fakeserver.Options{QRCodes: -1}); err == nil {
		t.Error("QRCodes -1 accepted")
	}
}
