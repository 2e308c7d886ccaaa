package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Dialect is whatsmeow's name for PostgreSQL.
const Dialect = "postgres"

// Devices holds every session's whatsmeow device in one sqlstore.Container
// over the process's pool; ws_sessions.device_jid says which device is
// whose.
type Devices struct {
	db        *sql.DB
	container *sqlstore.Container
}

// NewDevices makes the container over the pool db and upgrades whatsmeow's
// tables (once per process start; whatsmeow's upgrade takes its own lock).
func NewDevices(ctx context.Context, db *sql.DB, log waLog.Logger) (*Devices, error) {
	c := sqlstore.NewWithDB(db, Dialect, log)
	if err := c.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrade whatsmeow's tables: %w", err)
	}
	return &Devices{db: db, container: c}, nil
}

// Container is whatsmeow's container of every device. Never Close it: it
// would close the shared pool.
func (d *Devices) Container() *sqlstore.Container { return d.container }

// Session is one session's device in the shared container. It holds no
// connection of its own: closing it releases nothing but the device.
type Session struct {
	ID     string
	Device *wastore.Device

	db *sql.DB
}

// Open loads session id's device: the one ws_sessions.device_jid names,
// or a new unsaved device when it names none. A session without a row is
// store.ErrNotFound unless create, which makes the row. A device named but
// gone from whatsmeow's tables is store.ErrNoStore (its credentials are
// lost: pair again), unless create, which starts a new device.
func (d *Devices) Open(ctx context.Context, id string, create bool) (*Session, error) {
	if err := store.ValidateID(id); err != nil {
		return nil, err
	}
	if create {
		if _, err := d.db.ExecContext(ctx, "INSERT INTO ws_sessions (sender_id) VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
			return nil, unavailable("create session", err)
		}
	}
	var jid sql.NullString
	err := d.db.QueryRowContext(ctx, "SELECT device_jid FROM ws_sessions WHERE sender_id = $1", id).Scan(&jid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, unavailable("look up session", err)
	}
	s := &Session{ID: id, db: d.db}
	if jid.Valid {
		parsed, err := types.ParseJID(jid.String)
		if err != nil {
			return nil, fmt.Errorf("%w: the session's device JID does not parse", store.ErrCorrupt)
		}
		if s.Device, err = d.container.GetDevice(ctx, parsed); err != nil {
			return nil, unavailable("load device", err)
		}
	}
	if s.Device == nil && jid.Valid && !create {
		return nil, store.ErrNoStore
	}
	if s.Device == nil {
		s.Device = d.container.NewDevice()
	}
	return s, nil
}

// Paired records the device jid that a pairing just saved, so that the
// next Open finds it. whatsmeow committed the device itself.
func (s *Session) Paired(ctx context.Context, jid types.JID) error {
	if _, err := s.db.ExecContext(ctx, "UPDATE ws_sessions SET device_jid = $2, updated_at = now() WHERE sender_id = $1",
		s.ID, jid.String()); err != nil {
		return unavailable("record the paired device", err)
	}
	return nil
}

// Forget deletes device jid's rows (whatsmeow may have deleted them
// already) and clears the session's device_jid, in one transaction.
func (s *Session) Forget(ctx context.Context, jid types.JID) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("forget device", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := deleteDevice(ctx, tx, jid.String()); err != nil {
		return unavailable("forget device", err)
	}
	if _, err := tx.ExecContext(ctx, "UPDATE ws_sessions SET device_jid = NULL, updated_at = now() WHERE sender_id = $1 AND device_jid = $2",
		s.ID, jid.String()); err != nil {
		return unavailable("forget device", err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable("forget device", err)
	}
	return nil
}

// Rest does nothing: the session holds no connection (the pool's idle
// connections are the pool's).
func (s *Session) Rest() {}

// Close does nothing but is there for symmetry with store.Session: the
// device's rows stay, the pool is shared.
func (s *Session) Close() error { return nil }
