package webhooks

import (
	"context"
	"database/sql"
)

// stmtCache holds the SQLite outbox's busiest statements, prepared when it
// opens: database/sql's *sql.Stmt keeps each prepared per connection (and
// prepares it again on a connection opened since), instead of SQLite
// parsing and planning its text at every run. While messages arrived,
// reading the queue and writing events and results that way was a tenth of
// the service's CPU (BENCHMARKS.md, "The outbox's statements prepared
// once"). A nil cache, or a text it does not hold, runs the text as it is:
// Postgres's driver caches its statements itself.
//
// The cache is filled before the outbox's goroutines start and closed
// after they end, so it needs no lock.
type stmtCache struct {
	m map[string]*sql.Stmt
}

// prepareStmts prepares qs on db. They are prepared now rather than on
// first use: a transaction that prepared one would wait for a free
// connection of the pool while it holds the write lock.
func prepareStmts(ctx context.Context, db *sql.DB, qs ...string) (*stmtCache, error) {
	c := &stmtCache{m: make(map[string]*sql.Stmt, len(qs))}
	for _, q := range qs {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			c.close()
			return nil, err
		}
		c.m[q] = st
	}
	return c, nil
}

// stmt is q's prepared statement, or nil.
func (c *stmtCache) stmt(q string) *sql.Stmt {
	if c == nil {
		return nil
	}
	return c.m[q]
}

// query runs q with args on db, prepared if c holds it.
func (c *stmtCache) query(ctx context.Context, db *sql.DB, q string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return db.QueryContext(ctx, q, args...)
}

// close closes the prepared statements.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	for _, st := range c.m {
		st.Close()
	}
}

// in is the cache's statements bound to tx, each bound once in it.
func (c *stmtCache) in(ctx context.Context, tx *sql.Tx) *txStmts {
	return &txStmts{c: c, ctx: ctx, tx: tx}
}

// txStmts runs statements in one transaction: prepared (the cache's,
// bound to the transaction once each) or, without one, as they are.
type txStmts struct {
	c   *stmtCache
	ctx context.Context
	tx  *sql.Tx
	m   map[string]*sql.Stmt
}

// get is q's statement bound to the transaction, or nil to run q as it is.
func (t *txStmts) get(q string) *sql.Stmt {
	if st, ok := t.m[q]; ok {
		return st
	}
	base := t.c.stmt(q)
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
