package fakeserver_test

import (
	"testing"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// connected returns a seeded client of user logged in to srv.
func connected(t *testing.T, srv *fakeserver.Server, user string) *testClient {
	t.Helper()
	_, dev := seed(t, user)
	tc := newClient(t, srv, dev)
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)
	waitConnections(t, srv, user, 1)
	return tc
}

func TestStreamErrors(t *testing.T) {
	srv := startServer(t)

	t.Run("replaced", func(t *testing.T) {
		const user = "15550000201"
		tc := connected(t, srv, user)
		if err := srv.SendStreamError(ctxTimeout(t), user, fakeserver.StreamReplaced); err != nil {
			t.Fatal(err)
		}
		waitEvent[*events.StreamReplaced](t, tc, nil)
		waitConnections(t, srv, user, 0)
	})

	t.Run("device removed", func(t *testing.T) {
		const user = "15550000202"
		container, dev := seed(t, user)
		jid := *dev.ID // whatsmeow clears dev.ID when it deletes the device
		tc := newClient(t, srv, dev)
		connect(t, tc)
		waitEvent[*events.Connected](t, tc, nil)
		ctx := ctxTimeout(t)
		if err := srv.SendStreamError(ctx, user, fakeserver.StreamDeviceRemoved); err != nil {
			t.Fatal(err)
		}
		waitEvent(t, tc, func(e *events.LoggedOut) bool {
			return !e.OnConnect && e.Reason == events.ConnectFailureLoggedOut
		})
		eventually(t, "device row deleted", func() bool {
			d, err := container.GetDevice(ctx, jid)
			if err != nil {
				t.Fatal(err)
			}
			return d == nil
		})
		waitConnections(t, srv, user, 0)
	})

	t.Run("unknown kind", func(t *testing.T) {
		if err := srv.SendStreamError(ctxTimeout(t), "15550000203", "bogus"); err == nil {
			t.Fatal("bogus stream error kind accepted")
		}
	})
}

func TestDrop(t *testing.T) {
	srv := startServer(t)
	const user = "15550000301"
	tc := connected(t, srv, user)
	other := connected(t, srv, "15550000302")

	n, err := srv.Drop(ctxTimeout(t), user)
	if err != nil || n != 1 {
		t.Fatalf("Drop = %d, %v; want 1", n, err)
	}
	waitEvent[*events.Disconnected](t, tc, nil)
	if n, _ := srv.Connections(ctxTimeout(t), user); n != 0 {
		t.Errorf("Connections after Drop = %d", n)
	}
	if !other.IsConnected() {
		t.Error("Drop of one user disconnected another")
	}

	n, err = srv.DropAll(ctxTimeout(t))
	if err != nil || n != 1 {
		t.Fatalf("DropAll = %d, %v; want 1", n, err)
	}
	waitEvent[*events.Disconnected](t, other, nil)
}

func TestKeepalives(t *testing.T) {
	srv := startServer(t)
	const user = "15550000401"
	tc := connected(t, srv, user)
	ctx := ctxTimeout(t)

	if err := srv.SetIgnoreKeepalives(ctx, user, true); err != nil {
		t.Fatal(err)
	}
	waitEvent[*events.KeepAliveTimeout](t, tc, nil)
	if err := srv.SetIgnoreKeepalives(ctx, user, false); err != nil {
		t.Fatal(err)
	}
	waitEvent[*events.KeepAliveRestored](t, tc, nil)
	if !tc.IsConnected() {
		t.Error("client disconnected")
	}
}

// Two clients with the same keys: the second login knocks the first off,
// as WhatsApp does.
func TestSecondLoginReplacesFirst(t *testing.T) {
	srv := startServer(t)
	const user = "15550000501"
	container, dev := seed(t, user)
	first := newClient(t, srv, dev)
	connect(t, first)
	waitEvent[*events.Connected](t, first, nil)

	second := newClient(t, srv, firstDevice(t, container))
	connect(t, second)
	waitEvent[*events.Connected](t, second, nil)
	waitEvent[*events.StreamReplaced](t, first, nil)
	waitConnections(t, srv, user, 1)
	if !second.IsLoggedIn() {
		t.Error("second client lost its login")
	}
}
