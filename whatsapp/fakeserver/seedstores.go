package fakeserver

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.mau.fi/whatsmeow/store/sqlstore"
	"golang.org/x/sync/errgroup"

	sessionstore "github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Seed is one session SeedStores writes.
type Seed struct {
	// ID is the senderId: the store goes to session-{ID}.
	ID string
	// User is the device's phone number (see SeedDevice).
	User string
	// LowPreKeys leaves no uploaded prekeys in the store, as after a long
	// time offline: its first login generates and uploads a batch.
	LowPreKeys bool
}

// SeedOptions tune SeedStores.
type SeedOptions struct {
	// Workers is how many stores are written at once (at least 1).
	Workers int
	// CleanClose opens and closes each seeded store once more through the
	// service's store package, so that it holds what a clean shutdown of
	// the service leaves (its clean marker): the next open skips the
	// integrity check. Without it the store looks as after a crash.
	CleanClose bool
}

// SeedStores writes a paired device (SeedDevice) for each of seeds into
// the sessions directory root, as an earlier run of the service would have
// left them; a session directory already there is replaced. Each store starts as a copy of one empty store made by the
// service's own store package (its schema is most of a store's cost), and
// is written without fsync: the page cache is what the service reads. Tests
// and the bench use it to make many stored sessions fast.
func SeedStores(ctx context.Context, root string, seeds []Seed, o SeedOptions) error {
	empty, err := emptyStore(ctx, root)
	if err != nil {
		return err
	}
	dir, err := sessionstore.OpenDir(root)
	if err != nil {
		return err
	}
	defer dir.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(o.Workers, 1))
	for _, s := range seeds {
		g.Go(func() error {
			if err := seedStore(ctx, dir, empty, s); err != nil || !o.CleanClose {
				return err
			}
			return reopen(ctx, dir, s.ID)
		})
	}
	return g.Wait()
}

// emptyStore is the bytes of a store with whatsmeow's schema and no
// device, made in a scratch directory beside root.
func emptyStore(ctx context.Context, root string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(filepath.Clean(root)), 0o700); err != nil {
		return nil, err
	}
	scratch, err := os.MkdirTemp(filepath.Dir(filepath.Clean(root)), "seed-empty-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	dir, err := sessionstore.OpenDir(scratch)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	s, err := dir.Open(ctx, "empty", sessionstore.OpenOptions{Create: true})
	if err != nil {
		return nil, err
	}
	// Closing the last connection checkpoints the WAL into the main file.
	if err := s.Close(); err != nil {
		return nil, err
	}
	path, err := dir.SessionPath("empty")
	if err != nil {
		return nil, err
	}
	return os.ReadFile(filepath.Join(path, "whatsapp.db"))
}

// seedStore writes one session: a copy of the empty store, then a paired
// device.
func seedStore(ctx context.Context, dir *sessionstore.Dir, empty []byte, s Seed) error {
	path, err := dir.SessionPath(s.ID)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(path); err != nil {
		return err
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		return err
	}
	dbPath := filepath.Join(path, "whatsapp.db")
	if err := os.WriteFile(dbPath, empty, 0o600); err != nil {
		return err
	}
	// The service's connection string, syncing nothing (seeding is for
	// tests and benches); an error if store.DSN changed under this.
	dsn := strings.Replace(sessionstore.DSN(dbPath), "synchronous(NORMAL)", "synchronous(OFF)", 1)
	if !strings.Contains(dsn, "synchronous(OFF)") {
		return fmt.Errorf("seed %s: store.DSN has no synchronous(NORMAL) to turn off", s.ID)
	}
	db, err := sql.Open(sessionstore.DriverName, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	container := sqlstore.NewWithDB(db, sessionstore.DriverName, nil)
	if err := container.Upgrade(ctx); err != nil {
		return fmt.Errorf("seed %s: %w", s.ID, err)
	}
	if _, err := SeedDevice(ctx, container, s.User); err != nil {
		return fmt.Errorf("seed %s: %w", s.ID, err)
	}
	if s.LowPreKeys {
		if _, err := db.ExecContext(ctx, "DELETE FROM whatsmeow_pre_keys"); err != nil {
			return fmt.Errorf("seed %s: %w", s.ID, err)
		}
	}
	return container.Close()
}

// reopen opens and closes session id's store with the service's store
// package: the open checks it, the close marks it clean.
func reopen(ctx context.Context, dir *sessionstore.Dir, id string) error {
	s, err := dir.Open(ctx, id, sessionstore.OpenOptions{})
	if err != nil {
		return fmt.Errorf("reopen %s: %w", id, err)
	}
	return s.Close()
}
