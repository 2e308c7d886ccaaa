package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// WriteWatcher hears about a store's writes: WriteFailed when one fails
// for lack of space, an I/O error or a read-only file, and WriteOK after
// each one that succeeds. Both are called on whatever goroutine wrote, so
// they must be cheap and never block.
type WriteWatcher interface {
	WriteFailed(err error)
	WriteOK()
}

// IsWriteFailure reports whether err is SQLite refusing a write for a
// reason outside the database itself: a full disk, an I/O error, a
// read-only file.
func IsWriteFailure(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN:
		return true
	}
	return false
}

// watchedConnector opens modernc connections whose writes a WriteWatcher
// observes. Only the calls that write are looked at; everything else goes
// straight through.
type watchedConnector struct {
	dsn   string
	drv   *sqlite.Driver
	watch WriteWatcher
	// life closes the connection when idle; mem counts it among the
	// Dir's open connections.
	life *lifetime
	mem  *reclaimer
	// replaced is the Dir's: once set, no connection opens (CheckLock).
	replaced *atomic.Bool
	// persistWAL is set once the store passed its check (see persistWAL);
	// until then a failed open leaves nothing behind next to the store.
	persistWAL atomic.Bool
	// marker is the store's clean marker (cleanFile), removed before any
	// connection opens. Session.Close writes it once checked is set (the
	// store passed Open's check), unless SQLite ever reported the store
	// corrupt (tainted).
	marker           string
	checked, tainted atomic.Bool

	// live counts the connections being opened or open; database/sql's
	// Close leaves a connection that is in use (a whatsmeow goroutine's
	// query) open until it is returned, and one being opened opens anyway.
	// Session.Close waits for live to reach zero (drained), so that no
	// connection outlives it: a delete removes the directory next, and the
	// clean marker must not vouch for a store still open.
	mu      sync.Mutex
	live    int
	shut    bool
	drained chan struct{}
}

// errClosed answers a connection asked for after Session.Close.
var errClosed = errors.New("store is closed")

// enter counts a connection about to open, or refuses once shut.
func (c *watchedConnector) enter() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return errClosed
	}
	c.live++
	return nil
}

// leave counts a connection closed (or one that failed to open).
func (c *watchedConnector) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live--
	if c.shut && c.live == 0 {
		close(c.drained)
	}
}

// isOpen reports whether a connection is being opened or open.
func (c *watchedConnector) isOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live > 0
}

// shutDown refuses new connections and waits up to limit for the open ones
// to close; it reports whether they all did.
func (c *watchedConnector) shutDown(limit time.Duration) bool {
	c.mu.Lock()
	if !c.shut {
		c.shut = true
		c.drained = make(chan struct{})
		if c.live == 0 {
			close(c.drained)
		}
	}
	drained := c.drained
	c.mu.Unlock()
	select {
	case <-drained:
		return true
	case <-time.After(limit):
		return false
	}
}

// persistWAL keeps the connection's -wal and -shm files when it closes:
// stores reopen often (their connection closes when idle), and creating
// and deleting both files each time is most of a restore's kernel time. A
// clean close still checkpoints the WAL, and journal_size_limit(0)
// truncates it to nothing.
func persistWAL(conn driver.Conn) error {
	pw, ok := conn.(interface {
		FileControlPersistWAL(dbName string, mode int) (int, error)
	})
	if !ok {
		return nil
	}
	_, err := pw.FileControlPersistWAL("main", 1)
	return err
}

func (c *watchedConnector) Connect(context.Context) (driver.Conn, error) {
	if err := c.enter(); err != nil {
		return nil, err
	}
	conn, err := c.open()
	if err != nil {
		c.leave()
		return nil, err
	}
	c.mem.opened()
	c.life.opened()
	return &watchedConn{Conn: conn, c: c}, nil
}

func (c *watchedConnector) open() (driver.Conn, error) {
	if c.replaced.Load() {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ErrDirReplaced)
	}
	// Before the store can change: a crash from here on leaves no marker.
	if c.marker != "" {
		if err := removeCleanMarker(c.marker); err != nil {
			return nil, err
		}
	}
	conn, err := c.drv.Open(c.dsn)
	if err != nil {
		c.observe(err)
		return nil, err
	}
	if c.persistWAL.Load() {
		if err := persistWAL(conn); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return conn, nil
}

func (c *watchedConnector) Driver() driver.Driver { return c.drv }

func (c *watchedConnector) observe(err error) {
	switch {
	case err == nil:
		c.watch.WriteOK()
	case IsWriteFailure(err):
		c.watch.WriteFailed(err)
	default:
		c.taint(err)
	}
}

// taint remembers that SQLite found the store corrupt, so that no clean
// marker vouches for it again.
func (c *watchedConnector) taint(err error) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
			c.tainted.Store(true)
		}
	}
}

// conn is what modernc's connections implement beyond driver.Conn.
type conn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type watchedConn struct {
	driver.Conn
	c *watchedConnector
	// stmts are the statements run on this connection, each prepared once:
	// whatsmeow's store runs the same few dozen SQL texts through
	// QueryContext and ExecContext, and SQLite parsing each one every time
	// was a quarter of the service's CPU per message. database/sql uses a
	// connection from one goroutine at a time, so no lock.
	stmts map[string]*cachedStmt
}

// maxCachedStmts bounds a connection's statement cache: texts past it (a
// query built for a number of arguments, say) are prepared each time.
const maxCachedStmts = 64

// cachedStmt is a statement prepared once on a connection; busy while
// rows read from it are open (a query run again meanwhile, in the same
// transaction, is prepared anew instead of resetting those rows).
type cachedStmt struct {
	st   stmt
	busy bool
}

func (w *watchedConn) inner() conn { return w.Conn.(conn) }

// Close closes the connection; database/sql closes each one once.
func (w *watchedConn) Close() error {
	for _, cs := range w.stmts {
		cs.st.Close()
	}
	w.stmts = nil
	err := w.Conn.Close()
	w.c.leave()
	w.c.mem.closed()
	return err
}

// cached is query's statement on this connection, prepared now if it is
// new; nil when it is in use or the cache is full (the caller runs the
// query unprepared).
func (w *watchedConn) cached(ctx context.Context, query string) *cachedStmt {
	if cs, ok := w.stmts[query]; ok {
		if cs.busy {
			return nil
		}
		return cs
	}
	if len(w.stmts) >= maxCachedStmts {
		return nil
	}
	st, err := w.inner().PrepareContext(ctx, query)
	if err != nil {
		return nil // the unprepared run reports it
	}
	s, ok := st.(stmt)
	if !ok {
		st.Close()
		return nil
	}
	if w.stmts == nil {
		w.stmts = map[string]*cachedStmt{}
	}
	cs := &cachedStmt{st: s}
	w.stmts[query] = cs
	return cs
}

func (w *watchedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	w.c.life.used()
	tx, err := w.inner().BeginTx(ctx, opts)
	if err != nil {
		if IsWriteFailure(err) {
			w.c.watch.WriteFailed(err)
		}
		return nil, err
	}
	return &watchedTx{Tx: tx, c: w.c}, nil
}

func (w *watchedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := w.inner().PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return &watchedStmt{Stmt: st, c: w.c}, nil
}

// drop closes a cached statement whose run failed: the next run prepares
// it anew rather than trusting its state.
func (w *watchedConn) drop(query string, cs *cachedStmt) {
	delete(w.stmts, query)
	cs.st.Close()
}

func (w *watchedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (r driver.Result, err error) {
	w.c.life.used()
	if cs := w.cached(ctx, query); cs != nil {
		if r, err = cs.st.ExecContext(ctx, args); err != nil {
			w.drop(query, cs)
		}
	} else {
		r, err = w.inner().ExecContext(ctx, query, args)
	}
	w.c.observe(err)
	return r, err
}

func (w *watchedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	w.c.life.used()
	cs := w.cached(ctx, query)
	if cs == nil {
		r, err := w.inner().QueryContext(ctx, query, args)
		if err != nil {
			w.c.taint(err)
		}
		return r, err
	}
	r, err := cs.st.QueryContext(ctx, args)
	if err != nil {
		w.drop(query, cs)
		w.c.taint(err)
		return nil, err
	}
	mr, ok := r.(modernRows)
	if !ok { // not modernc's rows: read them as they are, prepared anew next time
		delete(w.stmts, query)
		return &closingRows{Rows: r, st: cs.st}, nil
	}
	cs.busy = true
	return &cachedRows{modernRows: mr, cs: cs}, nil
}

func (w *watchedConn) Ping(ctx context.Context) error         { return w.inner().Ping(ctx) }
func (w *watchedConn) ResetSession(ctx context.Context) error { return w.inner().ResetSession(ctx) }
func (w *watchedConn) IsValid() bool                          { return w.inner().IsValid() }
func (w *watchedConn) Prepare(query string) (driver.Stmt, error) {
	return w.PrepareContext(context.Background(), query)
}

type watchedTx struct {
	driver.Tx
	c *watchedConnector
}

func (t *watchedTx) Commit() error {
	err := t.Tx.Commit()
	t.c.observe(err)
	return err
}

// stmt is what modernc's statements implement beyond driver.Stmt.
type stmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type watchedStmt struct {
	driver.Stmt
	c *watchedConnector
}

func (s *watchedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.life.used()
	r, err := s.Stmt.(stmt).ExecContext(ctx, args)
	s.c.observe(err)
	return r, err
}

func (s *watchedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.life.used()
	r, err := s.Stmt.(stmt).QueryContext(ctx, args)
	if err != nil {
		s.c.taint(err)
	}
	return r, err
}

// modernRows is what modernc's rows implement beyond driver.Rows, kept
// visible through cachedRows for database/sql's ColumnTypes.
type modernRows interface {
	driver.Rows
	driver.RowsColumnTypeDatabaseTypeName
	driver.RowsColumnTypeLength
	driver.RowsColumnTypeNullable
	driver.RowsColumnTypePrecisionScale
	driver.RowsColumnTypeScanType
}

// cachedRows are rows read from a cached statement, which is free again
// once they are closed.
type cachedRows struct {
	modernRows
	cs *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.modernRows.Close()
	r.cs.busy = false
	return err
}

// closingRows close their statement with them.
type closingRows struct {
	driver.Rows
	st driver.Stmt
}

func (r *closingRows) Close() error {
	err := r.Rows.Close()
	if e := r.st.Close(); err == nil {
		err = e
	}
	return err
}

// noWatch ignores everything.
type noWatch struct{}

func (noWatch) WriteFailed(error) {}
func (noWatch) WriteOK()          {}
