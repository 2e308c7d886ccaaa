package main

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/webhooks"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// postgresConfig is e2e.Config with STORE=postgres on a fresh database of
// a real PostgreSQL server, and a pool on that database for the test's
// own queries.
func postgresConfig(t *testing.T, f *e2e.Fake) (config.Config, *sql.DB) {
	t.Helper()
	url := pgtest.Start(t).NewDatabase(t)
	cfg := e2e.Config(t.TempDir(), f)
	cfg.Store, cfg.DatabaseURL = config.StorePostgres, url
	db, err := pgstore.Open(context.Background(), url, pgstore.PoolOptions{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return cfg, db
}

// queryInt runs a query answering one number.
func queryInt(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// pgDeviceRows counts the whatsmeow rows of device jid, in every table that
// keeps per-device rows.
func pgDeviceRows(t *testing.T, db *sql.DB, jid string) int {
	t.Helper()
	n := queryInt(t, db, "SELECT count(*) FROM whatsmeow_device WHERE jid = $1", jid)
	for _, table := range []string{"whatsmeow_identity_keys", "whatsmeow_pre_keys", "whatsmeow_sessions",
		"whatsmeow_app_state_sync_keys", "whatsmeow_contacts", "whatsmeow_privacy_tokens"} {
		col := "our_jid"
		if table == "whatsmeow_pre_keys" || table == "whatsmeow_app_state_sync_keys" {
			col = "jid"
		}
		n += queryInt(t, db, "SELECT count(*) FROM "+table+" WHERE "+col+" = $1", jid)
	}
	return n
}

// TestPostgresStoreEndToEnd: with STORE=postgres, sessions paired through
// the API come back after a restart without pairing, a stop persists, a
// logout deletes the device's credentials and a delete every row of the
// session.
func TestPostgresStoreEndToEnd(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	cfg, db := postgresConfig(t, f)
	svc := e2e.Start(t, cfg)
	jids, users := map[string]string{}, map[string]string{}
	for _, id := range []string{"alice", "bob", "carol"} {
		st := svc.Pair(id)
		jids[id], users[id] = e2e.JID(st), e2e.User(st)
		var got sql.NullString
		if err := db.QueryRow("SELECT device_jid FROM ws_sessions WHERE sender_id = $1", id).Scan(&got); err != nil || got.String != jids[id] {
			t.Fatalf("%s: ws_sessions.device_jid %v (%v), want the paired JID", id, got, err)
		}
		if pgDeviceRows(t, db, jids[id]) < 2 {
			t.Fatalf("%s: no whatsmeow rows for the paired device", id)
		}
	}
	// An idempotent send is recorded in Postgres (ws_sends), not in
	// SESSIONS_DIR: a retry after the restart answers the first answer.
	once := sessions.SendRequest{To: "+" + users["bob"], Text: "once", IdempotencyKey: "k-1"}
	first, err := svc.Client.Send(context.Background(), "alice", once)
	if err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM ws_sends WHERE sender_id = 'alice' AND answered_at IS NOT NULL"); n != 1 {
		t.Errorf("ws_sends holds %d answered sends of alice, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(cfg.SessionsDir, idempotency.File)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s in SESSIONS_DIR with STORE=postgres: %v", idempotency.File, err)
	}
	// So is the webhook outbox: the sessions' events are in ws_events,
	// with this node's deliveries; no outbox.db.
	if n := queryInt(t, db, "SELECT count(*) FROM ws_events WHERE sender_id = 'alice'"); n == 0 {
		t.Error("ws_events holds no event of alice")
	}
	if _, err := os.Stat(filepath.Join(cfg.SessionsDir, app.OutboxFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s in SESSIONS_DIR with STORE=postgres: %v", app.OutboxFile, err)
	}
	if _, err := svc.Client.Stop(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	}
	svc.Stop()

	svc = svc.Restart()
	for _, id := range []string{"alice", "carol"} {
		st := svc.WaitState(id, sessions.StateConnected, e2e.Wait)
		if e2e.JID(st) != jids[id] || connections(t, f, st) != 1 {
			t.Fatalf("%s after restart: %s, want the same device connected once", id, e2e.Show(st))
		}
	}
	if st := svc.Status("bob"); st.State != sessions.StateStopped {
		t.Fatalf("bob after restart: %s, want stopped", e2e.Show(st))
	}
	if again, err := svc.Client.Send(context.Background(), "alice", once); err != nil || again != first {
		t.Errorf("retry after the restart: %+v %v, want the first answer %+v", again, err, first)
	}

	if st, err := svc.Client.Logout(context.Background(), "carol"); err != nil || st.State != sessions.StateNeedsPairing {
		t.Fatalf("logout: %v %v", e2e.Show(st), err)
	}
	if n := pgDeviceRows(t, db, jids["carol"]); n != 0 {
		t.Errorf("carol's device keeps %d rows after logout", n)
	}
	if n := queryInt(t, db, "SELECT count(*) FROM ws_sessions WHERE sender_id = 'carol' AND device_jid IS NULL"); n != 1 {
		t.Errorf("carol's row after logout: %d with no device, want 1", n)
	}

	for _, id := range []string{"alice", "bob"} {
		if err := svc.Client.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, db, "SELECT count(*) FROM ws_sessions WHERE sender_id = $1", id); n != 0 {
			t.Errorf("%s's ws_sessions row survived the delete", id)
		}
		if n := pgDeviceRows(t, db, jids[id]); n != 0 {
			t.Errorf("%s's device keeps %d rows after the delete", id, n)
		}
	}
	svc.Stop()
	svc = svc.Restart()
	svc.WaitState("carol", sessions.StateNeedsPairing, e2e.Wait)
	if f := svc.Fleet(); len(f.Sessions) != 1 || f.Sessions[0].SenderID != "carol" {
		t.Errorf("after the deletes and a restart: %v, want carol alone", f.Sessions)
	}
}

// TestPostgresBadURL: a DATABASE_URL that does not connect is a start-up
// error naming DATABASE_URL, without the password.
func TestPostgresBadURL(t *testing.T) {
	cfg := e2e.Config(t.TempDir(), nil)
	cfg.Store = config.StorePostgres
	cfg.DatabaseURL = "postgres://ws:s3cret-pw@127.0.0.1:1/ws?sslmode=disable&connect_timeout=2"
	logs := &e2e.Logs{}
	a, err := app.New(cfg, logs)
	if err == nil {
		a.Close()
		t.Fatal("started on a database that does not answer")
	}
	if !strings.Contains(err.Error(), "DATABASE_URL") || strings.Contains(err.Error()+logs.String(), "s3cret-pw") {
		t.Fatalf("error %q (logs %q): want one naming DATABASE_URL, without the password", err, logs.String())
	}
}

// TestPostgresOutboxAcrossRestart: with STORE=postgres, events made while
// the webhook receiver is down (a session's stop) wait in ws_deliveries
// and reach the receiver after a restart of the service, each once.
func TestPostgresOutboxAcrossRestart(t *testing.T) {
	secret, err := webhooks.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rcv := e2e.NewReceiver(t, secret)
	f := e2e.NewFake(t, fakeserver.Options{})
	cfg, db := postgresConfig(t, f)
	cfg.WebhookURL, cfg.WebhookSecret = rcv.URL, secret
	svc := e2e.Start(t, cfg)
	svc.Pair("alice")
	// Down drops the requests in flight; one the receiver had already
	// accepted is tried again (at least once), and the receiver would see
	// it twice. So the pairing's events are all delivered first.
	waitUntil(t, "the pairing's events delivered", func() bool {
		return queryInt(t, db, "SELECT count(*) FROM ws_deliveries WHERE state IN ('pending', 'failed')") == 0
	})
	rcv.Down()
	if _, err := svc.Client.Stop(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "alice's stop waiting in ws_deliveries", func() bool {
		return queryInt(t, db, "SELECT count(*) FROM ws_deliveries d JOIN ws_events e ON e.seq = d.event_seq WHERE d.sender_id = 'alice' AND d.state IN ('pending', 'failed') AND convert_from(e.body, 'UTF8') LIKE '%stopped%'") > 0
	})
	svc.Stop()
	rcv.Up()
	svc = svc.Restart()
	waitUntil(t, "alice's stop delivered after the restart", func() bool {
		for _, s := range rcv.States() {
			if s.Event.SenderID == "alice" && s.Status.State == sessions.StateStopped {
				return true
			}
		}
		return false
	})
	seen := map[string]int{}
	for _, d := range rcv.Got() {
		if seen[d.Event.ID]++; seen[d.Event.ID] > 1 {
			t.Errorf("event %s delivered twice", d.Event.ID)
		}
	}
	if _, err := os.Stat(filepath.Join(cfg.SessionsDir, app.OutboxFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s in SESSIONS_DIR with STORE=postgres: %v", app.OutboxFile, err)
	}
}

// waitUntil polls cond until it holds, or fails the test after e2e.Wait.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2e.Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", e2e.Wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
