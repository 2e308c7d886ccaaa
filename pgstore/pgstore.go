// Package pgstore is the PostgreSQL side of STORE=postgres: the one
// connection pool of a process (pgx through database/sql) and the versioned
// migrations of the service's own tables (migrations/NNN_name.sql, applied
// in order, each once, under an advisory lock so that nodes starting
// together migrate once).
package pgstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DriverName is the database/sql driver pgx's stdlib registers.
const DriverName = "pgx"

// PoolOptions size the pool.
type PoolOptions struct {
	// MaxConns caps the open connections (0: 20). A session holds no
	// connection of its own: whatsmeow's store queries borrow one per
	// query or transaction, so the pool is sized for concurrent queries,
	// not sessions.
	MaxConns int
}

// Open opens the pool for url and checks that the database answers. The
// URL carries credentials: an error never includes it.
func Open(ctx context.Context, url string, opts PoolOptions) (*sql.DB, error) {
	db, err := sql.Open(DriverName, url)
	if err != nil {
		return nil, errors.New("open postgres: the database URL is not valid")
	}
	max := opts.MaxConns
	if max <= 0 {
		max = 20
	}
	db.SetMaxOpenConns(max)
	db.SetMaxIdleConns(max)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return db, nil
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one numbered schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNN_name.sql", path)
		}
		body, err := migrationFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// migrateLock is the advisory lock key nodes migrate under.
const migrateLock = 0x77735f6d6967 // "ws_mig"

// Migrate applies the migrations the database has not had yet, in one
// transaction, and returns how many it applied. A database migrated by a
// newer version of the service (a version this one does not know) is an
// error: running old code on a newer schema could lose data.
func Migrate(ctx context.Context, db *sql.DB) (int, error) {
	all, err := migrations()
	if err != nil {
		return 0, err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
		return 0, fmt.Errorf("migrate: lock: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS ws_schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	var newest sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT max(version) FROM ws_schema_migrations").Scan(&newest); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	if len(all) > 0 && newest.Valid && int(newest.Int64) > all[len(all)-1].version {
		return 0, fmt.Errorf("migrate: the database is at schema version %d, newer than this program knows (%d): run a newer version", newest.Int64, all[len(all)-1].version)
	}
	applied := 0
	for _, m := range all {
		if newest.Valid && m.version <= int(newest.Int64) {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return 0, fmt.Errorf("migrate: %03d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO ws_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return 0, fmt.Errorf("migrate: %w", err)
		}
		applied++
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate: commit: %w", err)
	}
	return applied, nil
}
