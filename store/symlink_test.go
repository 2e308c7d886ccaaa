package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Every file the service writes in SESSIONS_DIR is opened without following
// a symlink: a link planted there must never make it write, truncate or
// read the file the link points to.

// victim is a file outside the sessions directory that planted links point
// to; check fails the test if it changed.
type victim struct {
	path    string
	content string
	mode    os.FileMode
}

func newVictim(t *testing.T) victim {
	t.Helper()
	v := victim{path: filepath.Join(t.TempDir(), "precious"), content: "do not touch\n", mode: 0o644}
	if err := os.WriteFile(v.path, []byte(v.content), v.mode); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v victim) check(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(v.path)
	if err != nil {
		t.Fatalf("the file a link pointed to: %v", err)
	}
	if string(b) != v.content {
		t.Errorf("the file a link pointed to was written: %q", b)
	}
	if fi, _ := os.Stat(v.path); fi.Mode().Perm() != v.mode {
		t.Errorf("the file a link pointed to changed mode: %v", fi.Mode())
	}
}

func TestPlantedLockSymlinkIsRefusedAndNotFollowed(t *testing.T) {
	root := t.TempDir()
	v := newVictim(t)
	if err := os.Symlink(v.path, filepath.Join(root, ".lock")); err != nil {
		t.Fatal(err)
	}
	d, err := store.OpenDir(root)
	if err == nil {
		d.Close()
		t.Fatal("OpenDir accepted a symlinked .lock")
	}
	if !strings.Contains(err.Error(), "symlink") {
		t.Errorf("error %q does not say the lock is a symlink", err)
	}
	v.check(t)

	// A dangling link creates nothing either.
	root2 := t.TempDir()
	target := filepath.Join(t.TempDir(), "created")
	if err := os.Symlink(target, filepath.Join(root2, ".lock")); err != nil {
		t.Fatal(err)
	}
	if d, err := store.OpenDir(root2); err == nil {
		d.Close()
		t.Fatal("OpenDir accepted a dangling symlinked .lock")
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("a dangling .lock link made its target: %v", err)
	}
}

func TestPlantedStopMarkerSymlinkIsNotWritten(t *testing.T) {
	d := openDir(t)
	v := newVictim(t)
	p, err := d.SessionPath("alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(p, "stopped")
	if err := os.Symlink(v.path, marker); err != nil {
		t.Fatal(err)
	}
	if err := d.SetStopped("alice", true); err != nil {
		t.Fatalf("SetStopped: %v", err)
	}
	v.check(t)
	// Clearing removes the link itself, never its target.
	if err := d.SetStopped("alice", false); err != nil {
		t.Fatalf("clear: %v", err)
	}
	if _, err := os.Lstat(marker); !os.IsNotExist(err) {
		t.Errorf("marker still there: %v", err)
	}
	v.check(t)

	// A dangling link: nothing is created where it points.
	target := filepath.Join(t.TempDir(), "created")
	if err := os.Symlink(target, marker); err != nil {
		t.Fatal(err)
	}
	if err := d.SetStopped("alice", true); err != nil {
		t.Fatalf("SetStopped over a dangling link: %v", err)
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) {
		t.Errorf("the stop marker was written through a dangling link: %v", err)
	}
	// A real marker is written when none is there.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := d.SetStopped("alice", true); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(marker)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("stop marker: %v %v", fi, err)
	}
}

func TestAPIKeyFileMustBePrivateAndNotALink(t *testing.T) {
	const key = "a-perfectly-good-key-0123456789abcdef"
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, path string) victim
		want  string
	}{
		{"symlink", func(t *testing.T, path string) victim {
			v := newVictim(t)
			if err := os.Symlink(v.path, path); err != nil {
				t.Fatal(err)
			}
			return v
		}, "symlink"},
		{"dangling symlink", func(t *testing.T, path string) victim {
			if err := os.Symlink(filepath.Join(t.TempDir(), "nothing"), path); err != nil {
				t.Fatal(err)
			}
			return victim{}
		}, "symlink"},
		{"readable by others", func(t *testing.T, path string) victim {
			if err := os.WriteFile(path, []byte(key), 0o644); err != nil {
				t.Fatal(err)
			}
			return victim{}
		}, "chmod 600"},
		{"readable by group", func(t *testing.T, path string) victim {
			if err := os.WriteFile(path, []byte(key), 0o640); err != nil {
				t.Fatal(err)
			}
			return victim{}
		}, "chmod 600"},
		{"a directory", func(t *testing.T, path string) victim {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return victim{}
		}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openDir(t)
			path := filepath.Join(d.Root(), ".api-key")
			v := tc.plant(t, path)
			got, _, _, err := d.APIKey()
			if err == nil {
				t.Fatalf("APIKey accepted it and returned a key of %d characters", len(got))
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file and say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Error("the error shows the key")
			}
			if v.path != "" {
				v.check(t)
			}
		})
	}

	t.Run("private file", func(t *testing.T) {
		d := openDir(t)
		if err := os.WriteFile(filepath.Join(d.Root(), ".api-key"), []byte(key+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		got, _, created, err := d.APIKey()
		if err != nil || got != key || created {
			t.Errorf("APIKey = %d characters, created %v, %v", len(got), created, err)
		}
	})
}

func TestSessionsDirectoryWritableByOthers(t *testing.T) {
	for _, tc := range []struct {
		mode          os.FileMode
		refused       bool
		groupWritable bool
	}{
		{0o700, false, false},
		{0o750, false, false},
		{0o770, false, true},
		{0o707, true, false},
		{0o777, true, true},
		{os.ModeSticky | 0o777, true, true},
	} {
		t.Run(strings.ReplaceAll(tc.mode.String(), "-", "_"), func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "sessions")
			if err := os.Mkdir(root, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(root, tc.mode); err != nil {
				t.Fatal(err)
			}
			d, err := store.OpenDir(root)
			if tc.refused {
				if err == nil {
					d.Close()
					t.Fatal("OpenDir accepted a directory every user may write to")
				}
				if !strings.Contains(err.Error(), "chmod 700 "+root) {
					t.Errorf("error %q does not say how to fix it", err)
				}
				if _, err := os.Lstat(filepath.Join(root, ".lock")); !os.IsNotExist(err) {
					t.Errorf("a refused directory got a lock file: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenDir: %v", err)
			}
			defer d.Close()
			if d.GroupWritable() != tc.groupWritable {
				t.Errorf("GroupWritable = %v, want %v", d.GroupWritable(), tc.groupWritable)
			}
		})
	}
}
