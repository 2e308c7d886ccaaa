package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// A sessions directory removed while the service runs, then made again
// (a backup restored into it, say), loses the lock: its flock stays on the
// old file, so a second process takes the new one. CheckLock notices, and
// from then on the first process writes nothing through the paths that
// now name the second process's files: no store opens, no connection
// reopens, no clean marker vouches for a store it never checked.
func TestReplacedDirectoryIsNoticedAndNotWritten(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "sessions")
	d, err := store.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.CheckLock(); err != nil {
		t.Fatalf("CheckLock on the directory just locked: %v", err)
	}
	alice := create(t, d, "alice")
	alice.Rest() // its connection closes; the next query reopens it

	if err := os.Rename(root, root+".old"); err != nil {
		t.Fatal(err)
	}
	d2, err := store.OpenDir(root)
	if err != nil {
		t.Fatalf("a second process on the new directory: %v", err)
	}
	t.Cleanup(func() { d2.Close() })
	// The second process restores alice into its directory.
	if err := os.Mkdir(filepath.Join(root, "session-alice"), 0o700); err != nil {
		t.Fatal(err)
	}

	if err := d.CheckLock(); !errors.Is(err, store.ErrDirReplaced) {
		t.Fatalf("CheckLock after the directory was replaced = %v, want ErrDirReplaced", err)
	}
	if err := d2.CheckLock(); err != nil {
		t.Errorf("CheckLock of the new owner = %v", err)
	}
	if s, err := d.Open(ctx, "bob", store.OpenOptions{Create: true}); !errors.Is(err, store.ErrDirReplaced) {
		if s != nil {
			s.Close()
		}
		t.Errorf("Open after the directory was replaced = %v, want ErrDirReplaced", err)
	}
	if _, err := alice.Container.GetFirstDevice(ctx); !errors.Is(err, store.ErrDirReplaced) {
		t.Errorf("a query needing a new connection after the directory was replaced = %v, want ErrDirReplaced", err)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".lock" && e.Name() != "session-alice" {
			t.Errorf("the replaced process wrote %s into the new directory", e.Name())
		}
	}
	if left, _ := os.ReadDir(filepath.Join(root, "session-alice")); len(left) != 0 {
		t.Errorf("the replaced process wrote into the new session-alice: %v", left)
	}
}

// A sessions directory removed and not made again is noticed too: its
// lock file is gone.
func TestRemovedDirectoryIsNoticed(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sessions")
	d, err := store.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := d.CheckLock(); !errors.Is(err, store.ErrDirReplaced) {
		t.Fatalf("CheckLock after the directory was removed = %v, want ErrDirReplaced", err)
	}
	if err := d.CheckLock(); !errors.Is(err, store.ErrDirReplaced) {
		t.Errorf("CheckLock a second time = %v, want ErrDirReplaced still", err)
	}
}
