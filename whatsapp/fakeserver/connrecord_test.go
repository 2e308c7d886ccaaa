package fakeserver_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// recordOf is device's connection record as ctl reports it, zero if none,
// without its times (timesOf has them).
func recordOf(t *testing.T, ctl fakeserver.Control, device string) fakeserver.DeviceConnections {
	t.Helper()
	d := timesOf(t, ctl, device)
	d.LastLogin, d.LastClose = time.Time{}, time.Time{}
	return d
}

// timesOf is device's whole connection record, zero if none.
func timesOf(t *testing.T, ctl fakeserver.Control, device string) fakeserver.DeviceConnections {
	t.Helper()
	all, err := ctl.ConnectionRecord(context.Background())
	if err != nil {
		t.Fatalf("connection record: %v", err)
	}
	i := slices.IndexFunc(all, func(d fakeserver.DeviceConnections) bool { return d.Device == device })
	if i < 0 {
		return fakeserver.DeviceConnections{}
	}
	return all[i]
}

// TestConnectionRecord: two clients with one device's keys. The second
// login replaces the first one's stream, as WhatsApp does; the record
// shows both open at once (maximum 2) and one stream replaced, in Go and
// through the control API alike. A client that disconnects before it
// logs in again is never counted twice.
func TestConnectionRecord(t *testing.T) {
	srv := startServer(t)
	ts := httptest.NewServer(srv.ControlHandler())
	t.Cleanup(ts.Close)
	remote := fakeserver.NewRemote(ts.URL, ts.Client())

	const user = "15550000301"
	const device = user + ":1"
	_, dev1 := seed(t, user)
	_, dev2 := seed(t, user)
	if dev1.ID.Device != 1 || dev2.ID.Device != 1 {
		t.Fatalf("seeded devices %v and %v, want device 1 twice", dev1.ID, dev2.ID)
	}
	first := newClient(t, srv, dev1)
	connect(t, first)
	waitEvent[*events.Connected](t, first, nil)
	want := fakeserver.DeviceConnections{Device: device, Open: 1, MaxConcurrent: 1, Logins: 1}
	if got := recordOf(t, srv, device); got != want {
		t.Fatalf("after one login: %+v, want %+v", got, want)
	}
	if got := timesOf(t, remote, device); got.LastLogin.IsZero() || !got.LastClose.IsZero() {
		t.Fatalf("after one login: last login %v, last close %v; want a login, no close", got.LastLogin, got.LastClose)
	}

	second := newClient(t, srv, dev2)
	connect(t, second)
	waitEvent[*events.Connected](t, second, nil)
	waitEvent[*events.StreamReplaced](t, first, nil)
	want = fakeserver.DeviceConnections{Device: device, Open: 1, MaxConcurrent: 2, Logins: 2, Replaced: 1}
	eventually(t, "the replaced socket to close", func() bool { return recordOf(t, srv, device) == want })
	if got := recordOf(t, remote, device); got != want {
		t.Fatalf("through the control API: %+v, want %+v", got, want)
	}

	second.Disconnect()
	want.Open = 0
	eventually(t, "the second socket to close", func() bool { return recordOf(t, remote, device) == want })
	if got := timesOf(t, remote, device); got.LastClose.Before(got.LastLogin) {
		t.Fatalf("after the last close: last login %v, last close %v; want the close after", got.LastLogin, got.LastClose)
	}

	// One client after the other: never two at once.
	const user2 = "15550000302"
	_, dev := seed(t, user2)
	tc := newClient(t, srv, dev)
	for range 2 {
		tc.reset()
		connect(t, tc)
		waitEvent[*events.Connected](t, tc, nil)
		tc.Disconnect()
		eventually(t, "the socket to close", func() bool { return recordOf(t, srv, user2+":1").Open == 0 })
	}
	if got := recordOf(t, srv, user2+":1"); got != (fakeserver.DeviceConnections{Device: user2 + ":1", MaxConcurrent: 1, Logins: 2}) {
		t.Fatalf("sequential logins: %+v", got)
	}
}
