package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// deviceRows counts the devices in session id's store, on a connection of
// its own, as any other tool reading the file would.
func deviceRows(t *testing.T, root, id string) int {
	t.Helper()
	db, err := sql.Open(store.DriverName, store.DSN(filepath.Join(root, "session-"+id, "whatsapp.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM whatsmeow_device").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// settledState polls session id until it is in one of states, and returns
// its status.
func (s *service) settledState(id string, states ...string) map[string]any {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, st := s.call("GET", "/api/whatsapp/session/"+id+"/status", "")
		for _, want := range states {
			if code == 200 && st["state"] == want {
				return st
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("session %s never reached one of %v; last %d %v\nlogs:\n%s", id, states, code, st, s.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnlinkedDeviceIsForgottenAndStaysRefused: the phone removes the
// linked device. The service deletes the credentials itself (whatsmeow's
// own delete runs on a context the session cancels) before it reports
// needs_pairing, and after a restart of the whole test-mode service (its
// in-process fake WhatsApp included) the session still needs pairing,
// with no device in its store, rather than logging in again on the
// revoked keys. Several sessions, since the lost delete was a race.
func TestUnlinkedDeviceIsForgottenAndStaysRefused(t *testing.T) {
	root := t.TempDir()
	cfg := testConfig(root, nil) // the in-process fake, restarted with the service
	svc := start(t, cfg)
	ids := []string{"u1", "u2", "u3", "u4"}
	for _, id := range ids {
		svc.pair(id)
	}
	// Unlink restored sessions, as a phone usually does long after the
	// pairing: right after it, whatsmeow's own delete races with its
	// initial app state fetch (a data race inside whatsmeow).
	svc.stop()
	svc = start(t, cfg)
	for _, id := range ids {
		svc.waitState(id, "connected")
	}
	for _, id := range ids {
		if code, out := svc.call("POST", "/api/whatsapp/test/session/"+id+"/unlink", ""); code != 200 {
			t.Fatalf("unlink %s: %d %v", id, code, out)
		}
	}
	for _, id := range ids {
		st := svc.waitState(id, "needs_pairing")
		// The state is reported only once the delete has committed.
		if n := deviceRows(t, root, id); n != 0 {
			t.Errorf("%s is %v but its store still holds %d device(s)", id, st["state"], n)
		}
		if st["jid"] != nil {
			t.Errorf("%s still shows a jid after the unlink: %v", id, st)
		}
	}
	svc.stop()

	svc = start(t, cfg)
	for _, id := range ids {
		st := svc.settledState(id, "needs_pairing", "connected")
		e, _ := st["error"].(map[string]any)
		if st["state"] != "needs_pairing" || e["code"] != "not_paired" || st["userAction"] != "scan_qr" {
			t.Errorf("%s after the restart: %v, want needs_pairing, not_paired, scan_qr", id, st)
		}
		if n := deviceRows(t, root, id); n != 0 {
			t.Errorf("%s's store holds %d device(s) after the restart", id, n)
		}
	}
}
