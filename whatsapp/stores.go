package whatsapp

import (
	"context"
	"errors"
	"fmt"

	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"

	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// errNotSynced wraps a failed sync after a committed write: the write
// happened, only its survival of a power loss before the store's next
// checkpoint is in doubt. It is logged, not reported as a failure.
var errNotSynced = errors.New("store not synced: a power loss before its next checkpoint may undo the write")

// SQLiteStores opens the stores of a sessions directory (STORE=sqlite): a
// whatsmeow SQLite file per session.
type SQLiteStores struct {
	Dir *store.Dir
}

var (
	_ Stores = SQLiteStores{}
	_ Stores = PostgresStores{}
)

// Open opens session id's SQLite store (store.Dir.Open).
func (s SQLiteStores) Open(ctx context.Context, id string, opts store.OpenOptions) (Store, error) {
	sess, err := s.Dir.Open(ctx, id, opts)
	if err != nil {
		return nil, err
	}
	return sqliteStore{sess}, nil
}

// sqliteStore adapts a store.Session to Store.
type sqliteStore struct{ s *store.Session }

func (s sqliteStore) Device() *wastore.Device { return s.s.Device }
func (s sqliteStore) Rest()                   { s.s.Rest() }
func (s sqliteStore) Close() error            { return s.s.Close() }

// Paired syncs the store: it runs at synchronous(NORMAL), whose commits
// survive kill -9 but not a power loss (see store.DSN).
func (s sqliteStore) Paired(ctx context.Context, _ types.JID) error { return s.sync(ctx) }

// Forget deletes the device, then syncs the store.
func (s sqliteStore) Forget(ctx context.Context, jid types.JID) error {
	if err := s.s.Container.DeleteDevice(ctx, &wastore.Device{ID: &jid}); err != nil {
		return err
	}
	return s.sync(ctx)
}

func (s sqliteStore) sync(ctx context.Context) error {
	if err := s.s.Sync(ctx); err != nil {
		return fmt.Errorf("%w: %v", errNotSynced, err)
	}
	return nil
}

// PostgresStores opens sessions' devices in the shared Postgres database
// (STORE=postgres).
type PostgresStores struct {
	Devices *pgstore.Devices
}

// Open loads session id's device (pgstore.Devices.Open); only
// opts.Create applies.
func (p PostgresStores) Open(ctx context.Context, id string, opts store.OpenOptions) (Store, error) {
	sess, err := p.Devices.Open(ctx, id, opts.Create)
	if err != nil {
		return nil, err
	}
	return pgStore{sess}, nil
}

// pgStore adapts a pgstore.Session to Store.
type pgStore struct{ *pgstore.Session }

func (p pgStore) Device() *wastore.Device { return p.Session.Device }
