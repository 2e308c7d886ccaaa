package pgstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/pgtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
)

// TestMigrate: nodes starting together migrate once, a second run applies
// nothing, and the tables are there.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Start(t).NewDatabase(t)
	db, err := pgstore.Open(ctx, url, pgstore.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var wg sync.WaitGroup
	counts := make([]int, 3)
	errs := make([]error, 3)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = pgstore.Migrate(ctx, db)
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
		total += counts[i]
	}
	if total == 0 {
		t.Fatal("no migration applied")
	}
	if n, err := pgstore.Migrate(ctx, db); err != nil || n != 0 {
		t.Fatalf("second run applied %d, err %v; want 0, nil", n, err)
	}
	for _, table := range []string{"ws_sessions", "ws_nodes", "ws_leases"} {
		if _, err := db.ExecContext(ctx, "SELECT 1 FROM "+table+" LIMIT 1"); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

// TestMigrateRefusesNewerSchema: a database a newer program migrated is
// refused, not touched.
func TestMigrateRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	url := pgtest.Start(t).NewDatabase(t)
	db, err := pgstore.Open(ctx, url, pgstore.PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := pgstore.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "INSERT INTO ws_schema_migrations (version, name) VALUES (9999, 'future')"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Migrate(ctx, db); err == nil {
		t.Fatal("migrate accepted a schema newer than it knows")
	}
}

// TestOpenHidesTheURL: a failed connection's error does not carry the
// password.
func TestOpenHidesTheURL(t *testing.T) {
	url := "postgres://postgres:s3cret-pw@127.0.0.1:1/nope?sslmode=disable&connect_timeout=2"
	_, err := pgstore.Open(context.Background(), url, pgstore.PoolOptions{})
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("error carries the password: %v", err)
	}
}
