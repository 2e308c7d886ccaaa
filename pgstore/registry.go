package pgstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// opTimeout bounds one registry or device-store operation: the callers
// (the manager's goroutines) have no context of their own.
const opTimeout = 30 * time.Second

// Registry is the record of sessions in ws_sessions: which exist and which
// the operator stopped. It is STORE=postgres's actors.Registry.
type Registry struct {
	db *sql.DB
}

// NewRegistry returns the registry over the pool db (migrated).
func NewRegistry(db *sql.DB) *Registry { return &Registry{db: db} }

// unavailable wraps a database error as store.ErrUnavailable, so that the
// API and the session states treat it like an unreadable SQLite store.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %v", store.ErrUnavailable, what, err)
}

// Discover lists the sessions, sorted by id (bytewise, like store.Dir).
func (r *Registry) Discover() ([]store.Stored, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	rows, err := r.db.QueryContext(ctx, `SELECT sender_id, stopped FROM ws_sessions ORDER BY sender_id COLLATE "C"`)
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	defer rows.Close()
	var out []store.Stored
	for rows.Next() {
		var s store.Stored
		if err := rows.Scan(&s.ID, &s.Stopped); err != nil {
			return nil, unavailable("list sessions", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list sessions", err)
	}
	return out, nil
}

// Active lists the sessions that are not stopped, sorted by id: those some
// node of a cluster should run.
func (r *Registry) Active(ctx context.Context) ([]string, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT sender_id FROM ws_sessions WHERE NOT stopped ORDER BY sender_id COLLATE "C"`)
	if err != nil {
		return nil, unavailable("list active sessions", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, unavailable("list active sessions", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("list active sessions", err)
	}
	return out, nil
}

// Exists reports whether session id has a row.
func (r *Registry) Exists(id string) (bool, error) {
	if err := store.ValidateID(id); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var one int
	err := r.db.QueryRowContext(ctx, "SELECT 1 FROM ws_sessions WHERE sender_id = $1", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("look up session", err)
	}
	return true, nil
}

// SetStopped records (or clears) the operator's stop of session id.
// Recording makes the session's row if it has none yet; clearing a
// missing session is store.ErrNotFound, as with store.Dir.
func (r *Registry) SetStopped(id string, stopped bool) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if stopped {
		_, err := r.db.ExecContext(ctx, `INSERT INTO ws_sessions (sender_id, stopped) VALUES ($1, true)
			ON CONFLICT (sender_id) DO UPDATE SET stopped = true, updated_at = now()`, id)
		if err != nil {
			return unavailable("record stop", err)
		}
		return nil
	}
	res, err := r.db.ExecContext(ctx, "UPDATE ws_sessions SET stopped = false, updated_at = now() WHERE sender_id = $1", id)
	if err != nil {
		return unavailable("clear stop", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// Remove deletes session id: its device's whatsmeow rows and its row (its
// lease goes with it), in one transaction. A missing session is no error.
func (r *Registry) Remove(id string) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	tx, err := r.db.BeginTx(ctx, nil)
	if err != nil {
		return unavailable("remove session", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	var jid sql.NullString
	err = tx.QueryRowContext(ctx, "SELECT device_jid FROM ws_sessions WHERE sender_id = $1 FOR UPDATE", id).Scan(&jid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return unavailable("remove session", err)
	}
	if jid.Valid {
		if err := deleteDevice(ctx, tx, jid.String); err != nil {
			return unavailable("remove session", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM ws_sessions WHERE sender_id = $1", id); err != nil {
		return unavailable("remove session", err)
	}
	if err := tx.Commit(); err != nil {
		return unavailable("remove session", err)
	}
	return nil
}

// deleteDevice deletes device jid's whatsmeow rows: the device (every
// per-device table follows it by ON DELETE CASCADE) and its privacy
// tokens, the one per-device table without that foreign key. The LID map
// is shared by every device and stays.
func deleteDevice(ctx context.Context, tx *sql.Tx, jid string) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM whatsmeow_privacy_tokens WHERE our_jid = $1", jid); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, "DELETE FROM whatsmeow_device WHERE jid = $1", jid)
	return err
}
