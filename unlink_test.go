package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
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
func settledState(t *testing.T, s *e2e.Service, id string, states ...string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, st := s.Call("GET", "/api/whatsapp/session/"+id+"/status", "")
		for _, want := range states {
			if code == 200 && st["state"] == want {
				return st
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s never reached one of %v; last %d %v\nlogs:\n%s", id, states, code, st, s.Logs)
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
	cfg := e2e.Config(root, nil) // the in-process fake, restarted with the service
	svc := e2e.Start(t, cfg)
	ids := []string{"u1", "u2", "u3", "u4"}
	for _, id := range ids {
		svc.Pair(id)
	}
	// Unlink restored sessions, as a phone usually does long after the
	// pairing: right after it, whatsmeow's own delete races with its
	// initial app state fetch (a data race inside whatsmeow).
	svc.Stop()
	svc = e2e.Start(t, cfg)
	for _, id := range ids {
		svc.WaitState(id, "connected", e2e.Wait)
	}
	for _, id := range ids {
		if code, out := svc.Call("POST", "/api/whatsapp/test/session/"+id+"/unlink", ""); code != 200 {
			t.Fatalf("unlink %s: %d %v", id, code, out)
		}
	}
	for _, id := range ids {
		st := svc.WaitState(id, "needs_pairing", e2e.Wait)
		// The state is reported only once the delete has committed.
		if n := deviceRows(t, root, id); n != 0 {
			t.Errorf("%s is %v but its store still holds %d device(s)", id, st.State, n)
		}
		if st.JID != nil {
			t.Errorf("%s still shows a jid after the unlink: %v", id, st)
		}
	}
	svc.Stop()

	svc = e2e.Start(t, cfg)
	for _, id := range ids {
		st := settledState(t, svc, id, "needs_pairing", "connected")
		e, _ := st["error"].(map[string]any)
		if st["state"] != "needs_pairing" || e["code"] != "not_paired" || st["userAction"] != "scan_qr" {
			t.Errorf("%s after the restart: %v, want needs_pairing, not_paired, scan_qr", id, st)
		}
		if n := deviceRows(t, root, id); n != 0 {
			t.Errorf("%s's store holds %d device(s) after the restart", id, n)
		}
	}
}
