package pgstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// openMigrated opens a fresh migrated database with whatsmeow's tables.
func openMigrated(t *testing.T) (*sql.DB, *pgstore.Devices) {
	t.Helper()
	ctx := context.Background()
	db, err := pgstore.Open(ctx, pgtest.Start(t).NewDatabase(t), pgstore.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	devs, err := pgstore.NewDevices(ctx, db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return db, devs
}

// count is the number of rows of table matching where (with args).
func count(t *testing.T, db *sql.DB, table, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM "+table+" WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRegistry: the registry behaves as store.Dir does for the manager:
// stop records a session, clearing a missing one is ErrNotFound, Discover
// lists sorted with the stop marker, Remove of a missing one is no error.
func TestRegistry(t *testing.T) {
	db, _ := openMigrated(t)
	r := pgstore.NewRegistry(db)
	for _, id := range []string{"b", "a", "C"} {
		if err := r.SetStopped(id, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.SetStopped("a", false); err != nil {
		t.Fatal(err)
	}
	if err := r.SetStopped("zz", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("clear missing: %v, want ErrNotFound", err)
	}
	if _, err := r.Exists("../x"); !errors.Is(err, store.ErrInvalidID) {
		t.Fatalf("bad id: %v", err)
	}
	got, err := r.Discover()
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Stored{{ID: "C", Stopped: true}, {ID: "a"}, {ID: "b", Stopped: true}}
	if len(got) != len(want) {
		t.Fatalf("discover: %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("discover: %v, want %v", got, want)
		}
	}
	active, err := r.Active(context.Background())
	if err != nil || len(active) != 1 || active[0] != "a" {
		t.Fatalf("active: %v %v, want [a]", active, err)
	}
	if ok, err := r.Exists("b"); !ok || err != nil {
		t.Fatalf("exists b: %v %v", ok, err)
	}
	if err := r.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if ok, err := r.Exists("b"); ok || err != nil {
		t.Fatalf("exists b after remove: %v %v", ok, err)
	}
	if err := r.Remove("b"); err != nil {
		t.Fatalf("remove missing: %v", err)
	}
}

// pair saves dev as a paired device with jid, as whatsmeow does when a
// pairing succeeds, and stores one identity key and one privacy token.
func pair(t *testing.T, db *sql.DB, sess *pgstore.Session, jid types.JID) {
	t.Helper()
	ctx := context.Background()
	dev := sess.Device
	dev.ID = &jid
	dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte{1}, AccountSignature: make([]byte, 64),
		AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	if err := dev.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if err := dev.Identities.PutIdentity(ctx, "someone", [32]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO whatsmeow_privacy_tokens (our_jid, their_jid, token, timestamp) VALUES ($1, 'x', '\\x01', 1)", jid.String()); err != nil {
		t.Fatal(err)
	}
	if err := sess.Paired(ctx, jid); err != nil {
		t.Fatal(err)
	}
}

// TestDevices: a created session gets a row and a new device; once paired
// the next open finds the same device (same keys); Forget removes its
// rows and unrecords it; Remove deletes the session's device rows, its
// row, and leaves the other sessions' devices alone.
func TestDevices(t *testing.T) {
	ctx := context.Background()
	db, devs := openMigrated(t)
	if _, err := devs.Open(ctx, "s1", false); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("open missing: %v, want ErrNotFound", err)
	}
	jids := map[string]types.JID{"s1": types.NewADJID("111", 0, 1), "s2": types.NewADJID("222", 0, 1)}
	for id, jid := range jids {
		sess, err := devs.Open(ctx, id, true)
		if err != nil {
			t.Fatal(err)
		}
		if sess.Device.ID != nil {
			t.Fatal("new session has a paired device")
		}
		pair(t, db, sess, jid)
	}
	sess, err := devs.Open(ctx, "s1", false)
	if err != nil {
		t.Fatal(err)
	}
	if sess.Device.ID == nil || *sess.Device.ID != jids["s1"] {
		t.Fatalf("reopened device %v, want %v", sess.Device.ID, jids["s1"])
	}
	if err := sess.Forget(ctx, jids["s1"]); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "whatsmeow_device", "jid = $1", jids["s1"].String()); n != 0 {
		t.Fatalf("forgotten device has %d rows", n)
	}
	if sess, err = devs.Open(ctx, "s1", false); err != nil || sess.Device.ID != nil {
		t.Fatalf("after forget: %v, %v; want an unpaired device", sess, err)
	}

	// s2's credentials vanish behind the service's back: restoring says
	// so, creating starts a new device.
	if _, err := db.Exec("DELETE FROM whatsmeow_device WHERE jid = $1", jids["s2"].String()); err != nil {
		t.Fatal(err)
	}
	if _, err := devs.Open(ctx, "s2", false); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("open a session whose device is gone: %v, want ErrNoStore", err)
	}
	if sess, err = devs.Open(ctx, "s2", true); err != nil || sess.Device.ID != nil {
		t.Fatalf("create over a lost device: %v, %v; want a new device", sess, err)
	}
	jids["s2"] = types.NewADJID("222", 0, 2)
	pair(t, db, sess, jids["s2"])

	if err := pgstore.NewRegistry(db).Remove("s2"); err != nil {
		t.Fatal(err)
	}
	j2 := jids["s2"].String()
	for table, where := range map[string]string{
		"whatsmeow_device": "jid = $1", "whatsmeow_identity_keys": "our_jid = $1",
		"whatsmeow_privacy_tokens": "our_jid = $1", "ws_sessions": "device_jid = $1",
	} {
		if n := count(t, db, table, where, j2); n != 0 {
			t.Errorf("%s keeps %d rows of the removed session", table, n)
		}
	}
	if n := count(t, db, "ws_sessions", "sender_id = 's1'"); n != 1 {
		t.Errorf("the other session's row: %d", n)
	}
}
