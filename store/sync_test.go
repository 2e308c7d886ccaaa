package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/store/sqlstore"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// withoutWAL opens a copy of session id's whatsapp.db without its -wal
// file, the least a power loss can leave of a store at synchronous(NORMAL)
// (the WAL is synced only before a checkpoint, the file after it), and
// returns the JID of the device the copy holds, "" for none.
func withoutWAL(t *testing.T, d *store.Dir, id string) string {
	t.Helper()
	dir, err := d.SessionPath(id)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "whatsapp.db"))
	if err != nil {
		t.Fatal(err)
	}
	return deviceIn(t, data)
}

// deviceIn opens a database file's bytes, alone, with whatsmeow's sqlstore
// and returns the JID of its device, "" for none.
func deviceIn(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := sqlstore.New(ctx, store.DriverName, store.DSN(path), nil)
	if err != nil {
		t.Fatalf("open the copy: %v", err)
	}
	defer c.Close()
	dev, err := c.GetFirstDevice(ctx)
	if err != nil {
		t.Fatalf("load the copy's device: %v", err)
	}
	if dev.ID == nil {
		return ""
	}
	return dev.ID.String()
}

// A commit at synchronous(NORMAL) is in the WAL only; after Sync the
// database file alone holds it: a saved device, then its deletion.
func TestSyncPutsEveryCommitInTheDatabaseFile(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	s, err := d.Open(ctx, "sync", store.OpenOptions{Create: true, IdleTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dev, err := fakeserver.SeedDevice(ctx, s.Container, "15550009001")
	if err != nil {
		t.Fatal(err)
	}
	jid := dev.ID.String()
	// Without Sync the device is not in the file yet: what makes the
	// checks below mean something.
	if got := withoutWAL(t, d, "sync"); got != "" {
		t.Fatalf("before Sync the database file holds device %q already: this test cannot tell Sync's work", got)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := withoutWAL(t, d, "sync"); got != jid {
		t.Fatalf("after Sync the database file holds device %q, want %q", got, jid)
	}

	if err := s.Container.DeleteDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if got := withoutWAL(t, d, "sync"); got != jid {
		t.Fatalf("before Sync the database file holds device %q, want the deleted %q still", got, jid)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := withoutWAL(t, d, "sync"); got != "" {
		t.Fatalf("after Sync the database file still holds device %q", got)
	}
}

// Sync on a closed store is refused, touching nothing.
func TestSyncAfterClose(t *testing.T) {
	d := openDir(t)
	s := create(t, d, "closed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Sync after Close = %v, want ErrUnavailable", err)
	}
}

// Sync racing Close either completes or is ErrUnavailable, and the store
// closes all the same.
func TestSyncRacingClose(t *testing.T) {
	d := openDir(t)
	for range 20 {
		s := create(t, d, "racing")
		synced := make(chan error, 1)
		go func() { synced <- s.Sync(context.Background()) }()
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := <-synced; err != nil && !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Sync racing Close = %v, want nil or ErrUnavailable", err)
		}
	}
}
