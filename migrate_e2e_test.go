package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// fileState is a file's content hash and modification time.
type fileState struct {
	sum   [32]byte
	mtime time.Time
}

// storeFiles records every session store file (whatsapp.db and its WAL)
// under root.
func storeFiles(t *testing.T, root string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if name := d.Name(); name != "whatsapp.db" && name != "whatsapp.db-wal" && name != "stopped" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fileState{sha256.Sum256(b), fi.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMigrateStore: sessions paired through the API on SQLite are copied
// into Postgres by migrate-store, verified, the SQLite files untouched; a
// second run copies nothing; a conflicting session fails the run (exit 1)
// without stopping the others; then the service on Postgres connects them
// all without pairing, with the same devices, the stopped one stopped.
func TestMigrateStore(t *testing.T) {
	const n = 20
	f := e2e.NewFake(t, fakeserver.Options{})
	pgcfg, db := postgresConfig(t, f)
	dir := pgcfg.SessionsDir
	svc := e2e.Start(t, e2e.Config(dir, f))
	jids := map[string]string{}
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		jids[id] = e2e.JID(svc.Pair(id))
	}
	if _, err := svc.Client.Stop(context.Background(), "m00"); err != nil {
		t.Fatal(err)
	}
	svc.StartPairing("unpaired")
	if _, err := svc.Client.Stop(context.Background(), "unpaired"); err != nil {
		t.Fatal(err)
	}
	svc.Stop()
	before := storeFiles(t, dir)
	if len(before) < n {
		t.Fatalf("found %d store files, want at least %d", len(before), n)
	}

	// m05 is already in Postgres with another device: it fails, alone.
	if _, err := pgstore.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO ws_sessions (sender_id, device_jid) VALUES ('m05', '1:1@s.whatsapp.net')"); err != nil {
		t.Fatal(err)
	}
	var out, errw bytes.Buffer
	args := []string{"--from", dir, "--to", pgcfg.DatabaseURL}
	if code := migrateStore(context.Background(), args, &out, &errw); code != 1 {
		t.Fatalf("run with a conflict: exit %d, want 1\n%s%s", code, out.String(), errw.String())
	}
	if !strings.Contains(out.String(), "FAIL m05: ") || !strings.Contains(out.String(), "1 failed") {
		t.Fatalf("output does not report m05's failure:\n%s", out.String())
	}
	if _, err := db.Exec("DELETE FROM ws_sessions WHERE sender_id = 'm05'"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := migrateStore(context.Background(), args, &out, &errw); code != 0 {
		t.Fatalf("second run: exit %d\n%s%s", code, out.String(), errw.String())
	}
	t.Logf("migrate-store:\n%s", out.String())
	if !strings.Contains(out.String(), fmt.Sprintf("%d session(s): %d with a verified device, 1 without one, 0 failed", n+1, n)) {
		t.Fatalf("summary:\n%s", out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		for _, jid := range jids {
			if strings.Contains(line, strings.Split(jid, "@")[0]) {
				t.Fatalf("output shows a device's number: %s", line)
			}
		}
	}
	out.Reset()
	if code := migrateStore(context.Background(), args, &out, &errw); code != 0 || !strings.Contains(out.String(), "0 failed; 0 rows copied") {
		t.Fatalf("third run: exit %d, want a no-op\n%s%s", code, out.String(), errw.String())
	}
	after := storeFiles(t, dir)
	for p, st := range before {
		if after[p] != st {
			t.Errorf("%s changed", p)
		}
	}

	svc = e2e.Start(t, pgcfg)
	svc.WaitConnected(n-1, time.Minute)
	for id, jid := range jids {
		want := sessions.StateConnected
		if id == "m00" {
			want = sessions.StateStopped
		}
		st := svc.WaitState(id, want, e2e.Wait)
		if want == sessions.StateConnected && (e2e.JID(st) != jid || connections(t, f, st) != 1) {
			t.Errorf("%s on Postgres: %s, want its device connected once", id, e2e.Show(st))
		}
	}
	if st := svc.Status("unpaired"); st.State != sessions.StateStopped {
		t.Errorf("unpaired: %s, want stopped", e2e.Show(st))
	}
	logPostgresCost(t, db, n)
}

// logPostgresCost logs the rows and bytes that n paired sessions take in
// Postgres (BENCHMARKS' cost per session): every whatsmeow and service
// table, with its indexes and TOAST.
func logPostgresCost(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	rows, err := db.Query(`SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
		WHERE c.relkind = 'r' AND ns.nspname = current_schema() AND (c.relname LIKE 'whatsmeow%' OR c.relname LIKE 'ws%')
		ORDER BY 3 DESC`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	var totalBytes int64
	totalRows := 0
	for rows.Next() {
		var name string
		var size int64
		var est int64
		if err := rows.Scan(&name, &est, &size); err != nil {
			t.Fatal(err)
		}
		count := queryInt(t, db, "SELECT count(*) FROM "+name)
		totalRows += count
		totalBytes += size
		if count > 0 {
			lines = append(lines, fmt.Sprintf("  %-36s %6d rows %9d bytes", name, count, size))
		}
	}
	t.Logf("Postgres for %d paired sessions: %d rows, %d bytes (%.0f rows, %.0f KiB per session; small tables are dominated by their first pages)\n%s",
		n, totalRows, totalBytes, float64(totalRows)/float64(n), float64(totalBytes)/1024/float64(n), strings.Join(lines, "\n"))
}
