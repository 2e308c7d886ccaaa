package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/whatsapp-sessions/whatsapp-sessions/config"
	"github.com/whatsapp-sessions/whatsapp-sessions/migrate"
	"github.com/whatsapp-sessions/whatsapp-sessions/pgstore"
)

// subcommands are the commands besides serving, by name; each returns the
// process's exit code.
var subcommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"migrate-store": migrateStore,
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
