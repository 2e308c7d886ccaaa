package store

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
)

// stmtCacheStore is a fresh store with a table t(k PRIMARY KEY, v) holding
// rows 1..3, and the connection to it (the store's one).
func stmtCacheStore(t *testing.T) (*Session, *sql.Conn) {
	t.Helper()
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()
	s, err := d.Open(ctx, "stmts", OpenOptions{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	conn, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, q := range []string{"CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)",
		"INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return s, conn
}

// cachedCount is how many statements conn's driver connection holds.
func cachedCount(t *testing.T, conn *sql.Conn) (n int) {
	t.Helper()
	if err := conn.Raw(func(dc any) error { n = len(dc.(*watchedConn).stmts); return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

func value(t *testing.T, conn *sql.Conn, k int) string {
	t.Helper()
	var v string
	if err := conn.QueryRowContext(context.Background(), "SELECT v FROM t WHERE k = ?", k).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A query run again with other arguments reuses its prepared statement
// and reads the right rows; so does an exec.
func TestStatementsArePreparedOncePerConnection(t *testing.T) {
	_, conn := stmtCacheStore(t)
	ctx := context.Background()
	base := cachedCount(t, conn)
	for range 3 {
		for k, want := range map[int]string{1: "a", 2: "b", 3: "c"} {
			if got := value(t, conn, k); got != want {
				t.Fatalf("k %d: %q, want %q", k, got, want)
			}
		}
	}
	for k := 4; k < 10; k++ {
		if _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (?, ?)", k, fmt.Sprint("v", k)); err != nil {
			t.Fatal(err)
		}
	}
	if got := value(t, conn, 7); got != "v7" {
		t.Fatalf("k 7: %q", got)
	}
	if n := cachedCount(t, conn) - base; n != 2 {
		t.Errorf("%d new cached statements for two texts run 9 and 6 times", n)
	}
}

// A query run again while rows of its first run are open (in one
// transaction) does not disturb them.
func TestAQueryRunWhileItsRowsAreOpenLeavesThemAlone(t *testing.T) {
	_, conn := stmtCacheStore(t)
	ctx := context.Background()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	const q = "SELECT k, v FROM t WHERE k >= ? ORDER BY k"
	outer, err := tx.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for outer.Next() {
		var k int
		var v string
		if err := outer.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		var inner string
		if err := tx.QueryRowContext(ctx, q, 3).Scan(new(int), &inner); err != nil {
			t.Fatal(err)
		}
		got = append(got, v+inner)
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if fmt.Sprint(got) != "[ac bc cc]" {
		t.Errorf("got %v, want [ac bc cc]", got)
	}
}

// A statement whose run failed is prepared anew, and works.
func TestAFailedStatementIsPreparedAgain(t *testing.T) {
	_, conn := stmtCacheStore(t)
	ctx := context.Background()
	const ins = "INSERT INTO t VALUES (?, ?)"
	if _, err := conn.ExecContext(ctx, ins, 1, "dup"); err == nil {
		t.Fatal("a duplicate key was inserted")
	}
	if _, err := conn.ExecContext(ctx, ins, 10, "ten"); err != nil {
		t.Fatal(err)
	}
	if got := value(t, conn, 10); got != "ten" {
		t.Fatalf("k 10: %q", got)
	}
}

// The cache is bounded; texts past the bound still run; and the store
// closes (every cached statement finalized) and reopens.
func TestStatementCacheIsBoundedAndClosesWithTheConnection(t *testing.T) {
	s, conn := stmtCacheStore(t)
	ctx := context.Background()
	for i := range 2 * maxCachedStmts {
		var n int
		if err := conn.QueryRowContext(ctx, fmt.Sprintf("SELECT count(*) + %d FROM t", i)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 3+i {
			t.Fatalf("query %d: %d", i, n)
		}
	}
	if n := cachedCount(t, conn); n != maxCachedStmts {
		t.Errorf("%d cached statements, want the bound %d", n, maxCachedStmts)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	s.Rest() // closes the idle connection and its statements
	s.connector.mu.Lock()
	live := s.connector.live
	s.connector.mu.Unlock()
	if live != 0 {
		t.Fatalf("%d connections open after Rest", live)
	}
	var v string
	if err := s.db.QueryRowContext(ctx, "SELECT v FROM t WHERE k = ?", 2).Scan(&v); err != nil || v != "b" {
		t.Fatalf("after reopening: %q, %v", v, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
