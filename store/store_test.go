package store_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

func openDir(t *testing.T) *store.Dir {
	t.Helper()
	d, err := store.OpenDir(filepath.Join(t.TempDir(), "sessions"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// create creates session id's store and returns it open.
func create(t *testing.T, d *store.Dir, id string) *store.Session {
	t.Helper()
	s, err := d.Open(context.Background(), id, store.OpenOptions{Create: true})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return s
}

// createPaired creates session id's store holding a device seeded for
// phone, and closes it cleanly.
func createPaired(t *testing.T, d *store.Dir, id, phone string) {
	t.Helper()
	s := create(t, d, id)
	if _, err := fakeserver.SeedDevice(context.Background(), s.Container, phone); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"a", "user123", "A-b_c", strings.Repeat("x", 64)} {
		if err := store.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want ok", id, err)
		}
	}
	for _, id := range []string{"", ".", "..", "a/b", "../x", "a b", "a\x00", "é", "a%2Fb", strings.Repeat("x", 65), "a\\b"} {
		if err := store.ValidateID(id); !errors.Is(err, store.ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	d := openDir(t)
	if _, err := d.SessionPath("../evil"); !errors.Is(err, store.ErrInvalidID) {
		t.Errorf("SessionPath built a path from a bad id: %v", err)
	}
}

func TestSecondOpenOfTheSameDirectoryIsRefused(t *testing.T) {
	root := t.TempDir()
	d, err := store.OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.OpenDir(root)
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second OpenDir = %v, want ErrLocked naming the holder's pid", err)
	}
	d.Close()
	d2, err := store.OpenDir(root)
	if err != nil {
		t.Fatalf("OpenDir after the first closed: %v", err)
	}
	d2.Close()
}

func TestOpenCreatesAPrivateStoreWithNoDevice(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	if _, err := d.Open(ctx, "fresh", store.OpenOptions{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("open without create: %v, want ErrNotFound", err)
	}
	s := create(t, d, "fresh")
	if s.Paired() {
		t.Error("a new store says it is paired")
	}
	s.Close()
	dirInfo, err := os.Stat(filepath.Join(d.Root(), "session-fresh"))
	if err != nil {
		t.Fatal(err)
	}
	if dirInfo.Mode().Perm() != 0o700 {
		t.Errorf("session directory mode %v, want 0700", dirInfo.Mode().Perm())
	}
	fi, err := os.Stat(filepath.Join(d.Root(), "session-fresh", "whatsapp.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store mode %v, want 0600", fi.Mode().Perm())
	}
	root, _ := os.Stat(d.Root())
	if root.Mode().Perm() != 0o700 {
		t.Errorf("sessions directory mode %v, want 0700", root.Mode().Perm())
	}
}

// A store copied in readable by others (database, WAL and shared-memory
// file) is private again once opened; one already private stays so, and
// the WAL files SQLite creates for it take the database's permissions.
func TestOpenMakesACopiedInStorePrivate(t *testing.T) {
	d := openDir(t)
	create(t, d, "copied").Close()
	dir := filepath.Join(d.Root(), "session-copied")
	files := []string{"whatsapp.db", "whatsapp.db-wal", "whatsapp.db-shm"}
	for _, f := range files {
		if err := os.Chmod(filepath.Join(dir, f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if i == 2 {
			// Closed cleanly, its WAL empty: SQLite makes both files
			// again, as it does for a store copied in without them.
			for _, f := range files[1:] {
				if err := os.Remove(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
		}
		s, err := d.Open(context.Background(), "copied", store.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
			}
		}
		s.Close()
	}
}

func TestPairedDeviceSurvivesReopen(t *testing.T) {
	d := openDir(t)
	ctx := context.Background()
	s := create(t, d, "alice")
	dev, err := fakeserver.SeedDevice(ctx, s.Container, "15550001111")
	if err != nil {
		t.Fatal(err)
	}
	s.Device = dev
	jid := *dev.ID
	noise, identity, reg := *s.Device.NoiseKey.Priv, *s.Device.IdentityKey.Priv, s.Device.RegistrationID
	s.Close()

	s, err = d.Open(ctx, "alice", store.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Paired() || *s.Device.ID != jid || *s.Device.NoiseKey.Priv != noise || *s.Device.IdentityKey.Priv != identity || s.Device.RegistrationID != reg {
		t.Errorf("device changed across reopen: %v", s.Device.ID)
	}
}

func TestBrokenStoresFailAloneAndStayOnDisk(t *testing.T) {
	ctx := context.Background()
	for name, breakIt := range map[string]func(t *testing.T, path string){
		"garbage": func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 500), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"zeroed header": func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			copy(b, make([]byte, 100))
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated": func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, b[:len(b)/3+100], 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"garbage page": func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			page := 4096
			for i := 2 * page; i < 3*page && i < len(b); i++ {
				b[i] = 0xA5
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			d := openDir(t)
			createPaired(t, d, "victim", "15550002222")
			path := filepath.Join(d.Root(), "session-victim", "whatsapp.db")
			breakIt(t, path)
			before, _ := os.ReadFile(path)

			_, err := d.Open(ctx, "victim", store.OpenOptions{})
			if !errors.Is(err, store.ErrCorrupt) && !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("open of a broken store = %v, want ErrCorrupt or ErrUnavailable", err)
			}
			after, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(before, after) {
				t.Errorf("the broken store was changed or removed (err %v)", err)
			}
			// A sibling is unaffected.
			create(t, d, "sibling").Close()
		})
	}
}

func TestGarbageStoreIsCorrupt(t *testing.T) {
	d := openDir(t)
	dir := filepath.Join(d.Root(), "session-junk")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "whatsapp.db"), bytes.Repeat([]byte{0xde, 0xad}, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(context.Background(), "junk", store.OpenOptions{}); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("got %v, want ErrCorrupt", err)
	}
}

func TestSymlinkedSessionIsNeverFollowed(t *testing.T) {
	d := openDir(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(d.Root(), "session-linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Open(context.Background(), "linked", store.OpenOptions{Create: true}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("open through a symlink = %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "whatsapp.db")); err == nil {
		t.Error("a store was created behind the symlink")
	}
	stored, err := d.Discover()
	if err != nil || len(stored) != 1 || stored[0].ID != "linked" {
		t.Errorf("discover = %+v, %v; want the symlinked session listed", stored, err)
	}
	if err := d.Remove("linked"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Error("remove followed the symlink and deleted its target")
	}
}

func TestDiscoverListsOnlySessionDirectories(t *testing.T) {
	d := openDir(t)
	for _, name := range []string{"session-a", "session-b", "session-bad..id", "other", "session-"} {
		if err := os.Mkdir(filepath.Join(d.Root(), name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.Root(), "session-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.SetStopped("b", true); err != nil {
		t.Fatal(err)
	}
	got, err := d.Discover()
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Stored{{ID: "a"}, {ID: "b", Stopped: true}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Discover = %+v, want %+v", got, want)
	}
	if err := d.SetStopped("b", false); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Discover(); got[1].Stopped {
		t.Error("stop marker not cleared")
	}
}

func TestAPIKeyIsGeneratedOnceAndPrivate(t *testing.T) {
	d := openDir(t)
	key, path, created, err := d.APIKey()
	if err != nil || !created || len(key) < 32 {
		t.Fatalf("APIKey = %q, %v, %v", key, created, err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	again, _, created, err := d.APIKey()
	if err != nil || created || again != key {
		t.Errorf("second APIKey = %q (created %v, %v), want the same key", again, created, err)
	}
}

// The webhook secret is generated once into a private file, which
// Discover does not take for a session.
func TestWebhookSecretIsGeneratedOnceAndPrivate(t *testing.T) {
	d := openDir(t)
	gen := func() (string, error) { return "whsec_generated-secret", nil }
	secret, path, created, err := d.WebhookSecret(gen)
	if err != nil || !created || secret != "whsec_generated-secret" || filepath.Base(path) != ".webhook-secret" {
		t.Fatalf("WebhookSecret = %v, %v, %v", path, created, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v", fi.Mode().Perm())
	}
	again, _, created, err := d.WebhookSecret(func() (string, error) { return "whsec_other", nil })
	if err != nil || created || again != secret {
		t.Errorf("second WebhookSecret: created %v, %v; want the same secret", created, err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := d.WebhookSecret(gen); err == nil || !strings.Contains(err.Error(), "webhook secret file") ||
		!strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), secret) {
		t.Errorf("a group-readable secret file: %v", err)
	}
	if got, err := d.Discover(); err != nil || len(got) != 0 {
		t.Errorf("Discover = %v, %v; want no session", got, err)
	}
}
