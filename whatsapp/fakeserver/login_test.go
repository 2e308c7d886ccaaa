package fakeserver_test

import (
	"context"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func TestSeededDeviceLogsIn(t *testing.T) {
	srv := startServer(t)
	ctx := ctxTimeout(t)
	const user = "15550000001"
	container, dev := seed(t, user)
	lid := dev.LID

	// Load it back as a restarted service would, not the seeding value.
	tc := newClient(t, srv, firstDevice(t, container))
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)

	if !tc.IsLoggedIn() {
		t.Fatal("client not logged in after Connected")
	}
	if got := tc.Store.LID; got != lid {
		t.Errorf("server rewrote the stored LID: %s, want %s", got, lid)
	}
	if got := tc.Store.PushName; got == "" {
		t.Error("seeded device has no push name")
	}
	if n, err := srv.Connections(ctx, user); err != nil || n != 1 {
		t.Errorf("Connections = %d, %v; want 1", n, err)
	}
	st, err := srv.Stats(ctx)
	if err != nil || st != (fakeserver.Stats{Live: 1, Logins: 1, TLSHandshakes: 1}) {
		t.Errorf("Stats = %+v, %v; want 1 live, 1 login, 1 TLS handshake", st, err)
	}

	tc.Disconnect()
	waitConnections(t, srv, user, 0)
}

// A fresh server instance knows nothing about devices and still accepts a
// stored one, reporting the same LID.
func TestLoginOnFreshServerInstance(t *testing.T) {
	const user = "15550000002"
	container, dev := seed(t, user)
	for i := range 2 {
		srv := startServer(t)
		tc := newClient(t, srv, firstDevice(t, container))
		connect(t, tc)
		waitEvent[*events.Connected](t, tc, nil)
		if tc.Store.LID != dev.LID {
			t.Errorf("instance %d: LID %s, want %s", i, tc.Store.LID, dev.LID)
		}
		tc.Disconnect()
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// loggedOutOnConnect waits for the client to report a logout for reason
// when it connects.
func loggedOutOnConnect(reason events.ConnectFailureReason) func(*testing.T, *testClient) {
	return func(t *testing.T, tc *testClient) {
		waitEvent(t, tc, func(e *events.LoggedOut) bool { return e.OnConnect && e.Reason == reason })
	}
}

func TestLoginFailures(t *testing.T) {
	tests := []struct {
		name    string
		failure fakeserver.LoginFailure
		check   func(t *testing.T, tc *testClient)
		deleted bool // whatsmeow deletes the device
	}{
		{
			name:    "401 logged out",
			failure: fakeserver.LoginFailure{Reason: 401},
			check:   loggedOutOnConnect(events.ConnectFailureLoggedOut),
			deleted: true,
		},
		{
			name:    "403 main device gone",
			failure: fakeserver.LoginFailure{Reason: 403},
			check:   loggedOutOnConnect(events.ConnectFailureMainDeviceGone),
			deleted: true,
		},
		{
			name:    "402 temporary ban",
			failure: fakeserver.LoginFailure{Reason: 402, BanCode: 101, Expire: 90 * time.Second},
			check: func(t *testing.T, tc *testClient) {
				ban := waitEvent[*events.TemporaryBan](t, tc, nil)
				if ban.Code != events.TempBanReason(101) || ban.Expire != 90*time.Second {
					t.Errorf("TemporaryBan = code %d expire %s; want 101, 90s", ban.Code, ban.Expire)
				}
			},
		},
		{
			name:    "405 client outdated",
			failure: fakeserver.LoginFailure{Reason: 405},
			check: func(t *testing.T, tc *testClient) {
				waitEvent[*events.ClientOutdated](t, tc, nil)
			},
		},
		{
			name:    "503 service unavailable",
			failure: fakeserver.LoginFailure{Reason: 503},
			check: func(t *testing.T, tc *testClient) {
				waitEvent[*events.Disconnected](t, tc, nil)
			},
		},
	}
	srv := startServer(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxTimeout(t)
			user := "1555000010" + string(rune('0'+i))
			container, dev := seed(t, user)
			jid := *dev.ID // whatsmeow clears dev.ID when it deletes the device
			if err := srv.SetLoginFailure(ctx, user, tt.failure); err != nil {
				t.Fatal(err)
			}
			tc := newClient(t, srv, dev)
			connect(t, tc)
			tt.check(t, tc)

			if n, _ := srv.Connections(ctx, user); n != 0 {
				t.Errorf("a refused login counts as %d connections", n)
			}
			stored := func() bool {
				d, err := container.GetDevice(ctx, jid)
				if err != nil {
					t.Fatal(err)
				}
				return d != nil
			}
			if tt.deleted {
				// whatsmeow emits LoggedOut, then deletes the row.
				eventually(t, "device row deleted", func() bool { return !stored() })
			} else if !stored() {
				t.Error("device row deleted")
			}
			for _, evt := range tc.seen() {
				if _, ok := evt.(*events.Connected); ok {
					t.Error("client emitted Connected despite the failure")
				}
			}

			if tt.deleted {
				return
			}
			// Clearing the failure lets the device log in again.
			tc.Disconnect()
			if err := srv.SetLoginFailure(ctx, user, fakeserver.LoginFailure{}); err != nil {
				t.Fatal(err)
			}
			again := newClient(t, srv, firstDevice(t, container))
			connect(t, again)
			waitEvent[*events.Connected](t, again, nil)
		})
	}
}

func TestSetLoginFailureRejectsBadReason(t *testing.T) {
	srv := startServer(t)
	err := srv.SetLoginFailure(context.Background(), "15550000003", fakeserver.LoginFailure{Reason: 200})
	if err == nil {
		t.Fatal("reason 200 accepted")
	}
}
