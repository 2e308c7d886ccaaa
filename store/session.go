package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	waLog "go.mau.fi/whatsmeow/util/log"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// DriverName is the database/sql driver modernc.org/sqlite registers.
const DriverName = "sqlite"

// DSN is the connection string of the session store at path. foreign_keys
// is required by whatsmeow; WAL with busy_timeout and immediate
// transactions keeps concurrent writers from failing with SQLITE_BUSY.
//
// synchronous(NORMAL) in WAL mode: a commit writes its WAL frames into the
// kernel before it returns but syncs nothing, so every committed write
// survives kill -9 (the kernel still writes it out), while a power loss or
// a kernel crash can lose the transactions committed since the WAL was
// last synced, never corrupting the file. SQLite syncs the WAL before each
// checkpoint and the database after it: at each automatic checkpoint, when
// the store's connection closes (idle, Rest, Close), and at Sync. What such
// a loss can take is Signal ratchet state and prekeys (WhatsApp's retry
// receipts heal them: whatsmeow answers and sends them) and the buffered
// plaintext of incoming messages (their events are in the outbox, which
// syncs every commit, and a message is acknowledged only after that
// commit). Credentials are made durable explicitly: after a pairing saved
// them and after a logout deleted them, the client calls Sync. FULL would
// cost two fsyncs per incoming message (whatsmeow's decryption transaction
// and the clearing of its buffered plaintext).
func DSN(path string) string { return dsn(path, "NORMAL") }

// DurableDSN is DSN with synchronous(FULL): every commit syncs the WAL and
// survives a power loss, for a database whose every commit must (the
// idempotency store).
func DurableDSN(path string) string { return dsn(path, "FULL") }

func dsn(path, synchronous string) string {
	return "file:" + path +
		"?_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)" +
		"&_pragma=synchronous(" + synchronous + ")&_pragma=journal_size_limit(0)&_txlock=immediate"
}

// OpenOptions tune Open.
type OpenOptions struct {
	// Create makes the session directory when it does not exist; without
	// it a missing session is ErrNotFound.
	Create bool
	// Log receives whatsmeow's store logs; nil discards them.
	Log waLog.Logger
	// IdleTimeout closes the store's one connection after this long unused
	// (an open connection costs about 500 KiB, a resting store 36 KiB);
	// a store in steady use keeps it longer when idle, up to twice this
	// (see lifetime). Zero means 30 s.
	IdleTimeout time.Duration
	// Watch hears about failed and succeeding writes; nil ignores them.
	Watch WriteWatcher
}

// Session is one open session store: whatsmeow's container and the one
// device it holds (a new, unsaved device when none is paired).
type Session struct {
	ID        string
	Container *sqlstore.Container
	Device    *wastore.Device
	// Checked is whether Open ran quick_check (the store had no clean
	// marker), rather than trusting the marker.
	Checked bool

	path      string // the database file's
	db        *sql.DB
	connector *watchedConnector
	life      *lifetime
	// mu orders Rest and Close: database/sql's Close does not wait for a
	// connection that SetMaxIdleConns is closing on another goroutine, and
	// nothing may touch the store's files once Close returned (a delete
	// removes the directory next).
	mu     sync.Mutex
	closed bool
}

// Paired reports whether the store holds a paired device.
func (s *Session) Paired() bool { return s.Device != nil && s.Device.ID != nil }

// connDrainTimeout bounds how long Close waits for a connection still in
// use (a whatsmeow goroutine's query, which ends with its context).
const connDrainTimeout = 10 * time.Second

// Close closes the store's database, waits until no connection to it is
// left open, and, if it closed cleanly, marks the store clean (see
// cleanFile) unless it ever looked corrupt.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.life.stop()
	if err := s.Container.Close(); err != nil {
		s.connector.shutDown(connDrainTimeout)
		return err
	}
	if !s.connector.shutDown(connDrainTimeout) {
		return fmt.Errorf("%w: a connection to the store was still in use %s after closing it", ErrUnavailable, connDrainTimeout)
	}
	if s.connector.checked.Load() && !s.connector.tainted.Load() && !s.connector.replaced.Load() {
		// Best effort: without the marker the next Open checks the store.
		if fi, err := os.Lstat(s.path); err == nil && fi.Mode().IsRegular() {
			_ = writeCleanMarker(s.connector.marker, fi)
		}
	}
	return nil
}

// Sync makes every write committed so far survive a power loss: a full
// checkpoint copies the WAL into the database file, and SQLite syncs the
// WAL before it and the database after it, so the database file alone
// holds them. It fails if the checkpoint could not complete; its result
// also goes to the store's WriteWatcher. It is for the writes that DSN's
// synchronous(NORMAL) must not risk: credentials saved or deleted.
func (s *Session) Sync(ctx context.Context) error {
	// Not under mu: a Close meanwhile waits for the connection in use (see
	// watchedConnector), and one before makes the query fail.
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: sync: %v", ErrUnavailable, errClosed)
	}
	// busy is 1 when a reader or writer kept the checkpoint from finishing;
	// log and done count the WAL's frames and those copied (-1 when the
	// store is not in WAL mode, which DSN rules out).
	var busy, log, done int
	err := s.db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(FULL)").Scan(&busy, &log, &done)
	s.connector.observe(err)
	if err != nil {
		return classify("sync", err)
	}
	if busy != 0 || log != done {
		return fmt.Errorf("%w: sync: checkpoint incomplete (%d of %d WAL frames copied, busy %d)", ErrUnavailable, done, log, busy)
	}
	return nil
}

// Rest closes the store's database connection if it is idle, as the idle
// timeout would later: a connected session rarely touches its store, and
// an open connection costs ~500 KiB. The next use reopens it, with the
// configured idle timeout.
func (s *Session) Rest() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeIdleLocked()
	s.life.rested()
}

// closeIdle closes the store's connection unless it is in use.
func (s *Session) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeIdleLocked()
}

func (s *Session) closeIdleLocked() {
	if s.closed {
		return
	}
	s.db.SetMaxIdleConns(0)
	s.db.SetMaxIdleConns(1)
}

// Open opens session id's store, checks it and loads its device. The check
// (PRAGMA quick_check) runs unless the store's clean marker says that it
// was last closed cleanly (Session.Close) after it had passed a check, and
// that its file has not changed since (see cleanFile); whatsmeow's schema
// check and upgrade run unless that marker also names this build's schema
// version; the write lock is always taken and dropped, so that a read-only
// or full store is reported now. A store that is not a
// database or fails the check is ErrCorrupt; one that cannot be opened or
// written is ErrUnavailable. Open never deletes or rewrites a store it
// cannot read.
//
// What the marker cannot catch: a store damaged behind the service's back
// after a clean close in a way that leaves its file's size and
// modification time as they were (bit rot; another program's writes change
// the time, and the marker then vouches for nothing). SQLite still
// reports such damage as ErrCorrupt when it reads the damaged pages, at
// Open for the header and the device's own rows, later for the rest; after
// a crash, or a close that was not clean, the marker is absent and the
// full check runs.
func (d *Dir) Open(ctx context.Context, id string, opts OpenOptions) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d.replaced.Load() {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ErrDirReplaced)
	}
	dir, err := d.sessionDir(id, opts.Create)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, dbFile)
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !opts.Create:
		// Restoring never creates a store: a missing one is reported.
		return nil, ErrNoStore
	case err == nil && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnavailable, dbFile)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	watch := opts.Watch
	if watch == nil {
		watch = noWatch{}
	}
	// Read before the first connection opens: opening removes the marker.
	// One left beside a store that is gone says nothing of a new one.
	marker := readCleanMarker(dir, fi)
	clean := marker.present
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = 30 * time.Second
	}
	life := newLifetime(idle)
	connector := &watchedConnector{dsn: DSN(path), drv: &sqlite.Driver{}, watch: watch,
		marker: filepath.Join(dir, cleanFile), life: life, mem: d.mem, replaced: &d.replaced}
	db := sql.OpenDB(connector)
	// One connection per store: whatsmeow's writes serialise on it anyway,
	// and every extra open connection costs memory. The lifetime closes it
	// when idle.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s := &Session{ID: id, Checked: !clean, path: path, db: db, connector: connector, life: life}
	life.closeIdle, life.open = s.closeIdle, connector.isOpen
	// fail closes what Open opened; closing is the database's or the
	// container's (which closes the database).
	fail := func(closing func() error, err error) (*Session, error) {
		life.stop()
		closing()
		return nil, err
	}

	if err := d.check(ctx, db, !clean); err != nil {
		return fail(db.Close, err)
	}
	// A clean close of this store may mark it clean from now on.
	connector.checked.Store(true)
	// From now on keep the WAL files, on this connection and the next.
	connector.persistWAL.Store(true)
	if err := withDriverConn(ctx, db, persistWAL); err != nil {
		return fail(db.Close, classify("persist WAL", err))
	}
	// SQLite creates the -wal and -shm files with the database file's
	// permissions, so only a new store, or one copied in with others,
	// needs the three set (three chmods cost ~1 % of a restore's CPU).
	if fi == nil || fi.Mode().Perm() != fileMode {
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			_ = os.Chmod(f, fileMode)
		}
	}
	container := sqlstore.NewWithDB(db, DriverName, opts.Log)
	// A store closed cleanly at this build's schema is still at it (see
	// cleanFile); any other gets whatsmeow's check and upgrade.
	if !marker.currentSchema {
		if err := container.Upgrade(ctx); err != nil {
			return fail(container.Close, classify("upgrade schema", err))
		}
	}
	dev, err := container.GetFirstDevice(ctx)
	if err != nil {
		return fail(container.Close, classify("load device", err))
	}
	s.Container, s.Device = container, dev
	return s, nil
}

// withDriverConn runs f on the store's one open driver connection.
func withDriverConn(ctx context.Context, db *sql.DB, f func(driver.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return f(dc.(*watchedConn).Conn) })
}

// check runs quick_check if full, and takes (and drops) the write lock, so
// that a read-only or full store is reported now rather than at the first
// write. At most d.checks' capacity of quick_checks run at once.
func (d *Dir) check(ctx context.Context, db *sql.DB, full bool) error {
	if full {
		select {
		case d.checks <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		err := quickCheck(ctx, db)
		if err == nil {
			// quick_check read every page of the store into the
			// connection's page cache, kept until the connection closes:
			// ~350 KiB of RSS per open store in a restore of seeded stores
			// (BENCHMARKS.md). A restore has dozens of stores open at
			// once, so that made its peak a third higher on stores without
			// a clean close. shrink_memory frees the cache's unused pages;
			// login reads the few it needs again. Best effort: a store
			// that stays cached works the same.
			_, _ = db.ExecContext(ctx, "PRAGMA shrink_memory")
		}
		<-d.checks
		if err != nil {
			return err
		}
	}
	tx, err := db.BeginTx(ctx, nil) // _txlock=immediate: takes the write lock
	if err != nil {
		return classify("take write lock", err)
	}
	return classify("take write lock", tx.Rollback())
}

// quickCheck runs PRAGMA quick_check: ErrCorrupt unless it says ok.
func quickCheck(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return classify("quick_check", err)
	}
	var first string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return classify("quick_check", err)
		}
		if first == "" {
			first = line
		}
	}
	if err := rows.Close(); err != nil {
		return classify("quick_check", err)
	}
	if err := rows.Err(); err != nil {
		return classify("quick_check", err)
	}
	if first != "ok" {
		return fmt.Errorf("%w: quick_check: %.200s", ErrCorrupt, first)
	}
	return nil
}

// classify wraps err as ErrCorrupt or ErrUnavailable by its SQLite code.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT:
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, what, err)
		}
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}
