package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// Session stores run at synchronous(NORMAL) (1), on the connection
// whatsmeow uses; DurableDSN's databases at FULL (2).
func TestSynchronousLevels(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	s, err := d.Open(ctx, "sync", OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := pragmaSynchronous(t, s.db); got != 1 {
		t.Errorf("session store: PRAGMA synchronous = %d, want 1 (NORMAL)", got)
	}

	db, err := sql.Open(DriverName, DurableDSN(filepath.Join(t.TempDir(), "durable.db")))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := pragmaSynchronous(t, db); got != 2 {
		t.Errorf("DurableDSN: PRAGMA synchronous = %d, want 2 (FULL)", got)
	}
}

func pragmaSynchronous(t *testing.T, db *sql.DB) int {
	t.Helper()
	var level int
	if err := db.QueryRow("PRAGMA synchronous").Scan(&level); err != nil {
		t.Fatal(err)
	}
	return level
}
