package store_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/store/sqlstore/upgrades"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

const cleanMarker = "clean-close"

func markerExists(t *testing.T, d *store.Dir, id string) bool {
	t.Helper()
	_, err := os.Lstat(filepath.Join(d.Root(), "session-"+id, cleanMarker))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// The clean marker exists only while the store is closed and was closed
// cleanly: Open skips quick_check with it and runs it without, as after a
// crash.
func TestCleanMarkerFollowsTheConnection(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	s := create(t, d, "alice")
	if !s.Checked {
		t.Error("a new store was not checked")
	}
	if _, err := fakeserver.SeedDevice(ctx, s.Container, "15550003333"); err != nil {
		t.Fatal(err)
	}
	if markerExists(t, d, "alice") {
		t.Error("marker present while the store is open")
	}
	// An idle close (Rest) does not mark the store clean: the session
	// still has it open, and reopens the connection when it needs it.
	s.Rest()
	if markerExists(t, d, "alice") {
		t.Error("marker after an idle close")
	}
	if _, err := s.Container.GetFirstDevice(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !markerExists(t, d, "alice") {
		t.Fatal("no marker after a clean close")
	}

	s, err := d.Open(ctx, "alice", store.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Checked {
		t.Error("a cleanly closed store was checked again")
	}
	if !s.Paired() {
		t.Error("device lost")
	}
	// A crash now (kill -9) would leave the store without a marker: the
	// state of the directory while open is what the next process finds.
	if markerExists(t, d, "alice") {
		t.Error("marker present while the store is open")
	}
	crashed := copyStore(t, d, "alice", "crashed")
	s.Close()
	s, err = d.Open(ctx, crashed, store.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Checked {
		t.Error("a store left open by a crash was not checked")
	}
}

// A store found corrupt never gets a marker, so it is checked (and
// refused) at every open. A store written behind the service's back after
// a clean close has another modification time, so its marker vouches for
// nothing and the full check runs. Damage that leaves the file's size and
// time as they were (bit rot) is not quick_checked; SQLite refuses it as
// soon as it reads the damage (a zeroed header at once), and once the
// marker is gone the full check catches the rest.
func TestCorruptStoresAndTheCleanMarker(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	createPaired(t, d, "victim", "15550004444")
	header := copyStore(t, d, "victim", "header")
	written := copyStore(t, d, "victim", "written")
	path := func(id string) string { return filepath.Join(d.Root(), "session-"+id, "whatsapp.db") }
	// damage rewrites the store's file with f applied to its bytes;
	// keepTime: then gives the file its time back.
	damage := func(id string, keepTime bool, f func(b []byte)) {
		t.Helper()
		fi, err := os.Stat(path(id))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path(id))
		if err != nil {
			t.Fatal(err)
		}
		f(b)
		if err := os.WriteFile(path(id), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if keepTime {
			if err := os.Chtimes(path(id), fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Garbage in the last page, which no open reads.
	const page = 4096
	lastPage := func(b []byte) {
		for i := len(b) - page; i < len(b); i++ {
			b[i] = 0xA5
		}
	}

	// Written behind the service's back: checked despite the marker, and
	// refused.
	damage(written, false, lastPage)
	if !markerExists(t, d, written) {
		t.Fatal("the copy has no marker")
	}
	if _, err := d.Open(ctx, written, store.OpenOptions{}); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("open of a store written since its clean close = %v, want ErrCorrupt (checked)", err)
	}

	// Bit rot, the file's size and time unchanged: with the marker the
	// store opens (the limit of the marker); without it, quick_check
	// refuses it, and a refused store gets no marker.
	damage("victim", true, lastPage)
	if !markerExists(t, d, "victim") {
		t.Fatal("no marker after a clean close")
	}
	s, err := d.Open(ctx, "victim", store.OpenOptions{})
	if err == nil {
		t.Logf("damaged store opened on its clean marker (expected: the check is skipped)")
		if s.Checked {
			t.Error("the check ran despite the marker")
		}
		// Reading the damage taints the store: no marker after this close.
		_, _ = s.Container.GetAllDevices(ctx)
		s.Close()
	} else if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("open = %v, want success or ErrCorrupt", err)
	}
	if err := os.Remove(filepath.Join(d.Root(), "session-victim", cleanMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := d.Open(ctx, "victim", store.OpenOptions{}); !errors.Is(err, store.ErrCorrupt) {
			t.Fatalf("open without the marker = %v, want ErrCorrupt", err)
		}
		if markerExists(t, d, "victim") {
			t.Fatal("a corrupt store was marked clean")
		}
	}

	// A zeroed header is refused even with a marker that vouches for the
	// file (its time given back).
	damage(header, true, func(b []byte) { copy(b, make([]byte, 100)) })
	if !markerExists(t, d, header) {
		t.Fatal("the copy has no marker")
	}
	if _, err := d.Open(ctx, header, store.OpenOptions{}); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("open of a zeroed header with the marker = %v, want ErrCorrupt", err)
	}
	if markerExists(t, d, header) {
		t.Error("a corrupt store was marked clean")
	}
}

// A marker that is a symlink is not trusted, and is never written through.
func TestSymlinkedMarkerIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	create(t, d, "alice").Close()
	marker := filepath.Join(d.Root(), "session-alice", cleanMarker)
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, marker); err != nil {
		t.Fatal(err)
	}
	s, err := d.Open(ctx, "alice", store.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Checked {
		t.Error("a symlinked marker was trusted")
	}
	s.Close()
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep" {
		t.Errorf("the symlink's target changed: %q, %v", b, err)
	}
	if fi, err := os.Lstat(marker); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("marker after a clean close: %v, %v; want a regular file", fi, err)
	}
}

// copyStore copies the files of session id, as they are now and with
// their modification times (as cp -a does), into a new session and
// returns its id.
func copyStore(t *testing.T, d *store.Dir, id, to string) string {
	t.Helper()
	src := filepath.Join(d.Root(), "session-"+id)
	dst := filepath.Join(d.Root(), "session-"+to)
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dst, e.Name()), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// whatsmeow's schema check (and upgrade) runs at Open unless the clean
// marker names this build's schema and vouches for the store's file,
// which Close's marker does. To see which way Open went, the store's
// version row claims a schema newer than this build's whatsmeow supports,
// which that check refuses, and the file gets its size and time back
// (what the marker cannot see): so Open succeeds only when it skipped the
// check.
func TestCleanMarkerSkipsTheSchemaCheckOnlyAtThisSchema(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	createPaired(t, d, "alice", "15550005555")
	marker := filepath.Join(d.Root(), "session-alice", cleanMarker)
	written, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	schemaLine, storeLine, _ := strings.Cut(string(written), "\n")
	if schemaLine != store.CleanMarkerSchema() || !strings.HasPrefix(schemaLine, "whatsmeow schema ") || !strings.HasPrefix(storeLine, "store ") {
		t.Fatalf("the marker Close wrote holds %q, want %q and the store's size and time", written, store.CleanMarkerSchema())
	}
	setVersion(t, d, "alice", 9999)

	for _, tc := range []struct {
		name   string
		marker string // "-": no marker
		opens  bool
	}{
		{"marker of this build", string(written), true},
		{"empty marker of an older build", "", false},
		{"marker of another schema", "whatsmeow schema 1\n" + storeLine, false},
		{"marker of another file", schemaLine + "\nstore 1 2\n", false},
		{"marker with more after it", string(written) + "x", false},
		{"no marker", "-", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			if tc.marker != "-" {
				if err := os.WriteFile(marker, []byte(tc.marker), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := d.Open(ctx, "alice", store.OpenOptions{})
			if !tc.opens {
				if err == nil {
					s.Close()
					t.Fatal("opened: the schema check did not run")
				}
				if !strings.Contains(err.Error(), "upgrade schema") {
					t.Fatalf("open = %v, want the schema check's refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open = %v: the schema check ran despite the marker", err)
			}
			if !s.Paired() {
				t.Error("device lost")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}

	// Back at a version this build knows, the store opens without the
	// marker (the check runs and passes), and its clean close writes a
	// marker that the next Open trusts.
	setVersion(t, d, "alice", 0)
	if err := os.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, wantChecked := range []bool{true, false} {
		s, err := d.Open(ctx, "alice", store.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if s.Checked != wantChecked {
			t.Errorf("checked %v, want %v", s.Checked, wantChecked)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if again, err := os.ReadFile(marker); err != nil || !strings.HasPrefix(string(again), store.CleanMarkerSchema()+"\n") {
		t.Errorf("marker after a clean close = %q, %v; want it to name %q", again, err, store.CleanMarkerSchema())
	}
}

// setVersion sets the version and compat of session id's whatsmeow schema
// behind the store's back (the store is closed), then gives the database
// file its size and time back, so that its clean marker still vouches for
// it; 0 sets the version this build's whatsmeow wrote.
func setVersion(t *testing.T, d *store.Dir, id string, v int) {
	t.Helper()
	path := filepath.Join(d.Root(), "session-"+id, "whatsapp.db")
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(store.DriverName, store.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	if v == 0 {
		v = len(upgrades.Table)
	}
	if _, err := db.Exec("UPDATE whatsmeow_version SET version = ?1, compat = ?1", v); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Size() != before.Size() {
		t.Fatalf("the store's size changed from %d to %d", before.Size(), after.Size())
	}
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// A clean marker left in a session's directory after its store was
// removed (by hand: the service removes the directory) says nothing of the
// store created there next: that one gets whatsmeow's schema.
func TestCleanMarkerOfARemovedStoreIsIgnored(t *testing.T) {
	ctx := context.Background()
	d := openDir(t)
	createPaired(t, d, "alice", "15550006666")
	dir := filepath.Join(d.Root(), "session-alice")
	if !markerExists(t, d, "alice") {
		t.Fatal("no marker after a clean close")
	}
	for _, f := range []string{"whatsapp.db", "whatsapp.db-wal", "whatsapp.db-shm"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if _, err := d.Open(ctx, "alice", store.OpenOptions{}); !errors.Is(err, store.ErrNoStore) {
		t.Fatalf("restoring a removed store = %v, want ErrNoStore", err)
	}
	s, err := d.Open(ctx, "alice", store.OpenOptions{Create: true})
	if err != nil {
		t.Fatalf("creating the store again beside the old marker: %v", err)
	}
	defer s.Close()
	if s.Paired() {
		t.Error("a new store holds a paired device")
	}
	if !s.Checked {
		t.Error("the old marker was trusted for the new store")
	}
	if _, err := fakeserver.SeedDevice(ctx, s.Container, "15550006666"); err != nil {
		t.Fatalf("the new store has no whatsmeow schema: %v", err)
	}
}
