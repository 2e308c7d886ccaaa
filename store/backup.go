package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// BackupResult is one file a backup wrote or could not write.
type BackupResult struct {
	// Name is the file's path relative to the sessions directory.
	Name string
	Err  error
}

// Backup writes a consistent snapshot of the sessions directory root into
// the new directory to, in the same layout, while the service runs on
// root (it takes no lock): each session's store through VACUUM INTO (one
// read transaction: a consistent copy of that store, WAL included), its
// stop marker, the API key and webhook secret files, and the SQLite
// databases named in dbs (the service's outbox and idempotency store). The
// stores are snapshotted one after the other, so the backup is consistent
// per file, not across files. to must not exist yet. Symlinked sessions
// are skipped (reported); a session without a store gets its directory.
func Backup(ctx context.Context, root, to string, dbs []string) ([]BackupResult, error) {
	stored, err := discover(root)
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(to, dirMode); err != nil {
		return nil, fmt.Errorf("backup directory: %w", err)
	}
	var out []BackupResult
	add := func(name string, err error) { out = append(out, BackupResult{Name: name, Err: err}) }
	for _, s := range stored {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		name := sessionPrefix + s.ID
		fi, err := os.Lstat(filepath.Join(root, name))
		if err != nil {
			add(name, err)
			continue
		}
		if !fi.IsDir() {
			add(name, errors.New("a symlink, which is never followed: skipped"))
			continue
		}
		if err := os.Mkdir(filepath.Join(to, name), dirMode); err != nil {
			add(name, err)
			continue
		}
		if s.Stopped {
			add(filepath.Join(name, stoppedFile), copyFile(filepath.Join(root, name, stoppedFile), filepath.Join(to, name, stoppedFile)))
		}
		db := filepath.Join(name, dbFile)
		if _, err := os.Lstat(filepath.Join(root, db)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		add(db, vacuumInto(ctx, filepath.Join(root, db), filepath.Join(to, db)))
	}
	for _, name := range dbs {
		if _, err := os.Lstat(filepath.Join(root, name)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		add(name, vacuumInto(ctx, filepath.Join(root, name), filepath.Join(to, name)))
	}
	for _, name := range []string{apiKeyFile, webhookSecretFile} {
		if _, err := os.Lstat(filepath.Join(root, name)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		add(name, copyFile(filepath.Join(root, name), filepath.Join(to, name)))
	}
	return out, nil
}

// vacuumInto writes a consistent copy of the SQLite database src (which
// another process may be writing) to dst, through a read-only connection.
func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open(DriverName, "file:"+src+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("VACUUM INTO: %w", err)
	}
	return os.Chmod(dst, fileMode)
}

// copyFile copies the regular file src to the new file dst (0600), never
// through a symlink.
func copyFile(src, dst string) error {
	in, err := openNoFollow(src, os.O_RDONLY, "file")
	if err != nil {
		return err
	}
	defer in.Close()
	b, err := io.ReadAll(io.LimitReader(in, 1<<20)) // small files: a marker, a key
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, fileMode)
}
