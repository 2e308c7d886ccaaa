package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// treeFiles lists the regular files under root, relative, with their
// modes.
func treeFiles(t *testing.T, root string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fi.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackupWhileRunning: a backup taken while the service runs (into a
// directory, and into a .tar.gz) holds every session's store, stop marker,
// the API key and the service's other databases (0600); pointed at as
// SESSIONS_DIR, it brings the sessions back connected without pairing.
func TestBackupWhileRunning(t *testing.T) {
	const n = 5
	f := e2e.NewFake(t, fakeserver.Options{})
	dir := t.TempDir()
	cfg := e2e.Config(dir, f)
	// A key file as the service generates without API_KEY: the backup
	// carries it.
	if err := os.WriteFile(filepath.Join(dir, ".api-key"), []byte(e2e.APIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc := e2e.Start(t, cfg)
	jids := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("b%d", i)
		jids[id] = e2e.JID(svc.Pair(id))
	}
	if _, err := svc.Client.Stop(context.Background(), "b0"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Client.TestReceive(context.Background(), "b1", "15550001111", "hello", ""); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SESSIONS_DIR", dir)

	out := t.TempDir()
	bdir, tgz := filepath.Join(out, "snap"), filepath.Join(out, "snap.tar.gz")
	for _, to := range []string{bdir, tgz} {
		var stdout, stderr bytes.Buffer
		if code := backup(context.Background(), []string{"--to", to}, &stdout, &stderr); code != 0 {
			t.Fatalf("backup --to %s: exit %d\n%s%s", to, code, stdout.String(), stderr.String())
		}
		t.Logf("backup --to %s: %s", filepath.Base(to), stdout.String())
	}
	if code := backup(context.Background(), []string{"--to", bdir}, io.Discard, io.Discard); code == 0 {
		t.Error("a backup over an existing directory succeeded")
	}
	files := treeFiles(t, bdir)
	want := []string{".api-key", "outbox.db", "idempotency.db", "session-b0/stopped"}
	for id := range jids {
		want = append(want, "session-"+id+"/whatsapp.db")
	}
	for _, name := range want {
		if mode, ok := files[name]; !ok || mode != 0o600 {
			t.Errorf("backup's %s: present %v, mode %04o; want 0600", name, ok, mode)
		}
	}
	if names := tarNames(t, tgz); !slices.Equal(names, sortedKeys(files)) {
		t.Errorf("the archive holds %v, the directory %v", names, sortedKeys(files))
	}
	svc.Stop()

	cfg.SessionsDir = bdir
	svc = e2e.Start(t, cfg)
	svc.WaitConnected(n-1, time.Minute)
	for id, jid := range jids {
		st := svc.Status(id)
		switch {
		case id == "b0" && st.State != sessions.StateStopped:
			t.Errorf("b0 from the backup: %s, want stopped", e2e.Show(st))
		case id != "b0" && (e2e.JID(st) != jid || st.State != sessions.StateConnected):
			t.Errorf("%s from the backup: %s, want its device connected", id, e2e.Show(st))
		}
	}
}

// TestBackupOnPostgres: with STORE=postgres the command points to pg_dump.
func TestBackupOnPostgres(t *testing.T) {
	t.Setenv("STORE", "postgres")
	t.Setenv("DATABASE_URL", "postgres://ws:s3cret-pw@127.0.0.1:1/ws")
	var stderr bytes.Buffer
	if code := backup(context.Background(), []string{"--to", t.TempDir() + "/x"}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "pg_dump") || strings.Contains(stderr.String(), "s3cret-pw") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// tarNames lists the regular files of a .tar.gz, sorted.
func tarNames(t *testing.T, file string) []string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			names = append(names, h.Name)
		}
	}
	slices.Sort(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
