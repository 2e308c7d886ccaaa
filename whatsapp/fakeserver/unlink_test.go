package fakeserver_test

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// startWithState starts a server keeping its state in file.
func startWithState(t *testing.T, file string) *fakeserver.Server {
	t.Helper()
	srv, err := fakeserver.Start(fakeserver.Options{StateFile: file})
	if err != nil {
		t.Fatalf("start fake server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// The phone removes a device: its live connection is logged out, and its
// keys are refused (401) by the same server, and by the next server on the
// same state file, as WhatsApp forgets a removed device for good. Another
// device of the same number still logs in.
func TestUnlinkedDeviceIsRefusedAcrossRestarts(t *testing.T) {
	const user = "15550000071"
	file := filepath.Join(t.TempDir(), "state.json")
	ctx := ctxTimeout(t)

	srv := startWithState(t, file)
	ts := httptest.NewServer(srv.ControlHandler())
	t.Cleanup(ts.Close)
	remote := fakeserver.NewRemote(ts.URL, ts.Client())
	container, dev := seed(t, user)
	// A copy of the same keys, as a store the client failed to delete.
	_, copyDev := seed(t, user)
	copyDev.IdentityKey, copyDev.NoiseKey = dev.IdentityKey, dev.NoiseKey

	tc := newClient(t, srv, firstDevice(t, container))
	connect(t, tc)
	waitEvent[*events.Connected](t, tc, nil)
	if err := remote.Unlink(ctx, user, dev.ID.Device); err != nil {
		t.Fatalf("Unlink: %v", err)
	}
	waitEvent(t, tc, func(e *events.LoggedOut) bool { return !e.OnConnect })
	waitConnections(t, srv, user, 0)

	refused := func(srv *fakeserver.Server, what string) {
		t.Helper()
		again := newClient(t, srv, copyDev)
		connect(t, again)
		waitEvent(t, again, func(e *events.LoggedOut) bool {
			return e.OnConnect && e.Reason == events.ConnectFailureLoggedOut
		})
		if n, _ := srv.Connections(ctx, user); n != 0 {
			t.Errorf("%s: the removed device has %d live connection(s)", what, n)
		}
	}
	refused(srv, "same server")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v", fi, err)
	}

	srv = startWithState(t, file)
	_, copyDev = seed(t, user)
	copyDev.IdentityKey, copyDev.NoiseKey = dev.IdentityKey, dev.NoiseKey
	refused(srv, "restarted server")
}

func TestStateFileRefusesGarbage(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":   "{",
		"bad device": `{"unlinked":["15550000071"]}`,
		"no user":    `{"unlinked":[":1"]}`,
	} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			if srv, err := fakeserver.Start(fakeserver.Options{StateFile: file}); err == nil {
				srv.Close()
				t.Fatal("Start accepted a broken state file")
			}
		})
	}
}
