package webhooks

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps the SQLite outbox's busiest statements prepared: each is
// prepared once on each connection that runs it (database/sql's
// *sql.Stmt keeps it per connection, and prepares it again on a connection
// opened since), instead of SQLite parsing and planning its text at every
// run. While messages arrived, reading the queue and writing events and
// results that way was a tenth of the service's CPU (BENCHMARKS.md,
// "The outbox's statements prepared once"). A nil cache runs each text as
// it is: Postgres's driver caches its statements itself.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: map[string]*sql.Stmt{}}
}

// prepare prepares qs now: a transaction that prepared one later would
// wait for a free connection of the pool while it holds the write lock.
func (c *stmtCache) prepare(ctx context.Context, qs ...string) error {
	for _, q := range qs {
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.m[q] = st
		c.mu.Unlock()
	}
	return nil
}

// stmt is q prepared, or nil when preparing it failed: the caller then
// runs q as it is, which reports the error.
func (c *stmtCache) stmt(ctx context.Context, q string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[q]
	c.mu.Unlock()
	if ok {
		return st
	}
	// Not under mu: preparing waits for a free connection.
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if first, ok := c.m[q]; ok { // prepared meanwhile by another caller
		st.Close()
		return first
	}
	c.m[q] = st
	return st
}

// query runs q with args on db, prepared if c is not nil.
func (c *stmtCache) query(ctx context.Context, db *sql.DB, q string, args ...any) (*sql.Rows, error) {
	if c != nil {
		if st := c.stmt(ctx, q); st != nil {
			return st.QueryContext(ctx, args...)
		}
	}
	return db.QueryContext(ctx, q, args...)
}

// close closes the prepared statements; the cache is not used after.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.m {
		st.Close()
		delete(c.m, q)
	}
}

// in is the cache's statements bound to tx, each bound once in it.
func (c *stmtCache) in(ctx context.Context, tx *sql.Tx) *txStmts {
	return &txStmts{c: c, ctx: ctx, tx: tx}
}

// txStmts runs statements in one transaction: prepared (the cache's,
// bound to the transaction once each) or, without a cache, as they are.
type txStmts struct {
	c   *stmtCache
	ctx context.Context
	tx  *sql.Tx
	m   map[string]*sql.Stmt
}

// get is q's statement bound to the transaction, or nil to run q as it is.
func (t *txStmts) get(q string) *sql.Stmt {
	if t.c == nil {
		return nil
	}
	if st, ok := t.m[q]; ok {
		return st
	}
	base := t.c.stmt(t.ctx, q)
	if base == nil {
		return nil
	}
	st := t.tx.StmtContext(t.ctx, base) // closed with the transaction
	if t.m == nil {
		t.m = map[string]*sql.Stmt{}
	}
	t.m[q] = st
	return st
}

func (t *txStmts) exec(q string, args ...any) (sql.Result, error) {
	if st := t.get(q); st != nil {
		return st.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, q, args...)
}

func (t *txStmts) queryRow(q string, args ...any) *sql.Row {
	if st := t.get(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, q, args...)
}
