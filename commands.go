package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/migrate"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// subcommands are the commands besides serving, by name; each returns the
// process's exit code.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"migrate-store": migrateStore,
	"backup":        backup,
}

// migrateStore is `whatsapp-sessions migrate-store --from SESSIONS_DIR
// [--to URL]`: it copies every SQLite session store into Postgres and
// verifies each device (package migrate). The URL may come from
// DATABASE_URL or DATABASE_URL_FILE instead of --to, which keeps the
// password out of the process list. Exit code 1 if any session failed.
func migrateStore(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate-store", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "the sessions directory (SESSIONS_DIR) to copy from; the service must not be running on it")
	to := fs.String("to", "", "the Postgres URL to copy into (default: DATABASE_URL, or the file DATABASE_URL_FILE names)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *from == "" {
		fmt.Fprintln(stderr, "migrate-store: --from SESSIONS_DIR is required")
		return 2
	}
	url, err := databaseURL(*to)
	if err != nil {
		fmt.Fprintln(stderr, "migrate-store:", err)
		return 2
	}
	db, err := pgstore.Open(ctx, url, pgstore.PoolOptions{MaxConns: 4})
	if err != nil {
		fmt.Fprintln(stderr, "migrate-store:", err)
		return 1
	}
	defer db.Close()
	sum, err := migrate.Run(ctx, *from, db, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "migrate-store:", err)
		return 1
	}
	if sum.Failed > 0 {
		return 1
	}
	return 0
}

// databaseURL is to, or else the URL from the environment
// (config.DatabaseURLFromEnv). Errors never show a URL.
func databaseURL(to string) (string, error) {
	if to != "" {
		return to, nil
	}
	u, err := config.DatabaseURLFromEnv()
	if err == nil && u == "" {
		err = errors.New("give the Postgres URL with --to, DATABASE_URL or DATABASE_URL_FILE")
	}
	return u, err
}

// backup is `whatsapp-sessions backup --to DIR|FILE.tar.gz`: with
// STORE=sqlite a consistent snapshot of SESSIONS_DIR while the service
// runs (store.Backup: VACUUM INTO per store, plus the outbox and the
// idempotency store), into a new directory or a gzipped tar. With
// STORE=postgres it says to use pg_dump. It reads the service's own
// configuration (SESSIONS_DIR, STORE). Exit code 1 if any file failed.
func backup(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	to := fs.String("to", "", "a new directory, or a file ending in .tar.gz, to write the snapshot to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *to == "" {
		fmt.Fprintln(stderr, "backup: --to DIR or --to FILE.tar.gz is required")
		return 2
	}
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintln(stderr, "backup:", err)
		return 2
	}
	if cfg.Store == config.StorePostgres {
		fmt.Fprintln(stderr, `backup: with STORE=postgres the sessions are in Postgres: back the database up with pg_dump, for example
  pg_dump --format=custom --file=whatsapp-sessions.dump "$DATABASE_URL"
and restore it with
  pg_restore --clean --if-exists --no-owner --dbname="$DATABASE_URL" whatsapp-sessions.dump
(see README.md, "Backup").`)
		return 2
	}
	dir, archive := *to, strings.HasSuffix(*to, ".tar.gz")
	if archive {
		if dir, err = os.MkdirTemp(filepath.Dir(*to), ".backup-"); err != nil {
			fmt.Fprintln(stderr, "backup:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		dir = filepath.Join(dir, "sessions")
	}
	results, err := store.Backup(ctx, cfg.SessionsDir, dir, []string{app.OutboxFile, idempotency.File})
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
			fmt.Fprintf(stdout, "FAIL %s: %v\n", r.Name, r.Err)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "backup:", err)
		return 1
	}
	if archive {
		if err := writeTarGz(dir, *to); err != nil {
			fmt.Fprintln(stderr, "backup:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "backed up %d file(s) of %s into %s; %d failed\n", len(results)-failed, cfg.SessionsDir, *to, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// writeTarGz writes the tree under dir into the new gzipped tar file,
// with paths relative to dir.
func writeTarGz(dir, file string) (err error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(file)
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}
