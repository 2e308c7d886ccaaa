// Package idempotency keeps the answers of sends made with an
// Idempotency-Key, in a SQLite database of their own
// (SESSIONS_DIR/idempotency.db) or, with STORE=postgres, in the table
// ws_sends of the shared database (so that a retry answers the same on
// whichever node holds the session then), so that a retried request
// answers as the first did instead of sending again, across restarts.
//
// A send is recorded before it goes out, pending, with the message id it
// will carry; once WhatsApp's server acknowledged it, the answer is
// recorded. A retry with the same key and request gets the recorded
// answer; when the first attempt never finished (an error, a timeout, a
// crash), the retry sends again with the same message id, which recipients
// drop as a duplicate. Only answers are kept, never an error: a request
// that failed is tried again. The same key with a different request is
// ErrKeyReused; a retry while the first attempt still runs in this process
// is ErrKeyInProgress. Entries are kept for Keep (at least 24 h), then
// pruned.
//
// Every write goes through one goroutine that commits the writes waiting
// at that moment in one transaction (group commit): synchronous(FULL)
// costs one fsync per batch, not per send.
package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// File is the database's name in SESSIONS_DIR.
const File = "idempotency.db"

// MinKeep is the shortest time an answer is kept.
const MinKeep = 24 * time.Hour

// MaxKeyLength bounds an Idempotency-Key.
const MaxKeyLength = 255

// maxBatch bounds the writes committed in one transaction.
const maxBatch = 512

// CheckKey checks an Idempotency-Key: 1 to MaxKeyLength printable ASCII
// characters.
func CheckKey(key string) error {
	if len(key) == 0 || len(key) > MaxKeyLength {
		return sessions.Errorf(sessions.ErrInvalid, "the Idempotency-Key must be 1 to %d printable ASCII characters", MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return sessions.Errorf(sessions.ErrInvalid, "the Idempotency-Key must be 1 to %d printable ASCII characters", MaxKeyLength)
		}
	}
	return nil
}

// Options tune Open.
type Options struct {
	// Keep is how long an entry is kept; less than MinKeep means MinKeep.
	Keep time.Duration
	// PruneEvery is how often old entries are deleted; zero means hourly.
	PruneEvery time.Duration
	Log        *slog.Logger
	// Now is the clock; nil means time.Now (tests move it).
	Now func() time.Time
}

// Store is the open database. Its methods are safe for concurrent use.
type Store struct {
	db   *sql.DB
	q    queries
	opts Options
	// closeDB closes db: the SQLite file's; nothing for the shared
	// Postgres pool.
	closeDB func() error

	writes chan *write
	quit   chan struct{}
	ended  chan struct{}
	once   sync.Once

	mu sync.Mutex
	// running holds the keys whose send runs now in this process.
	running map[entry]bool
}

// entry names one key: keys are per session.
type entry struct{ senderID, key string }

// write is one change, run by the writer in a transaction with others.
type write struct {
	run  func(tx *sql.Tx) error
	done chan error
}

const schema = `CREATE TABLE IF NOT EXISTS sends (
	sender_id    TEXT NOT NULL,
	key          TEXT NOT NULL,
	request_hash BLOB NOT NULL,
	message_id   TEXT NOT NULL,
	created_at   INTEGER NOT NULL, -- unix ms
	answered_at  TEXT,             -- WhatsApp's timestamp (RFC 3339), NULL while pending
	PRIMARY KEY (sender_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sends_created ON sends (created_at);`

// queries are the store's statements in one database's dialect.
type queries struct {
	get, insert, finish, prune string
}

// sqliteQueries work on the SQLite file's table, sends.
var sqliteQueries = queries{
	get:    `SELECT request_hash, message_id, answered_at FROM sends WHERE sender_id = ? AND key = ?`,
	insert: `INSERT INTO sends (sender_id, key, request_hash, message_id, created_at) VALUES (?, ?, ?, ?, ?)`,
	finish: `UPDATE sends SET message_id = ?, answered_at = ? WHERE sender_id = ? AND key = ?`,
	prune:  `DELETE FROM sends WHERE created_at < ?`,
}

// postgresQueries work on ws_sends, which pgstore's migrations make with
// the same columns.
var postgresQueries = queries{
	get:    `SELECT request_hash, message_id, answered_at FROM ws_sends WHERE sender_id = $1 AND key = $2`,
	insert: `INSERT INTO ws_sends (sender_id, key, request_hash, message_id, created_at) VALUES ($1, $2, $3, $4, $5)`,
	finish: `UPDATE ws_sends SET message_id = $1, answered_at = $2 WHERE sender_id = $3 AND key = $4`,
	prune:  `DELETE FROM ws_sends WHERE created_at < $1`,
}

// idleTimeout closes the SQLite store's connection once unused this long;
// the next read or write opens it again.
var idleTimeout = 5 * time.Second

// Open opens (creating, 0600) the database at path and starts its writer.
func Open(path string, opts Options) (*Store, error) {
	// Created here, so that it is the owner's alone (SQLite's journal
	// files take the database's mode); never through a symlink.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open idempotency store %s: %w", path, err)
	}
	f.Close()
	db, err := sql.Open(store.DriverName, store.DurableDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open idempotency store %s: %w", path, err)
	}
	// One connection: the writer is the only user. It closes once unused
	// for idleTimeout: its page cache and statements, allocated among the
	// session stores' during a burst of sends, would otherwise keep SQLite's
	// memory regions resident after it (as the outbox's did; BENCHMARKS.md).
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(idleTimeout)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open idempotency store %s: %w", path, err)
	}
	s, err := start(db, sqliteQueries, db.Close, opts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("prune idempotency store %s: %w", path, err)
	}
	return s, nil
}

// OpenPostgres opens the store in the Postgres database db, the process's
// pool, migrated by pgstore (table ws_sends), and starts its writer. Close
// leaves db open.
func OpenPostgres(db *sql.DB, opts Options) (*Store, error) {
	s, err := start(db, postgresQueries, func() error { return nil }, opts)
	if err != nil {
		return nil, fmt.Errorf("idempotency store in postgres: %w", err)
	}
	return s, nil
}

// start prunes the old entries and starts the writer.
func start(db *sql.DB, q queries, closeDB func() error, opts Options) (*Store, error) {
	if opts.Keep < MinKeep {
		opts.Keep = MinKeep
	}
	if opts.PruneEvery <= 0 {
		opts.PruneEvery = time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{db: db, q: q, closeDB: closeDB, opts: opts, writes: make(chan *write, maxBatch), quit: make(chan struct{}),
		ended: make(chan struct{}), running: map[entry]bool{}}
	if _, err := s.prune(); err != nil {
		return nil, err
	}
	go s.writer()
	return s, nil
}

// Close stops the writer (pending writes fail) and closes the database
// (not a shared Postgres pool).
func (s *Store) Close() error {
	s.once.Do(func() { close(s.quit) })
	<-s.ended
	return s.closeDB()
}

// Claim is what Begin found for a key.
type Claim struct {
	// Answer is the recorded answer of a send that finished; nil when
	// the send is to be made (again).
	Answer *sessions.SentMessage
	// MessageID is the id the send must carry: the first attempt's.
	MessageID string
}

// Begin claims req's Idempotency-Key for session senderID. A new key is
// recorded pending, with a message id from newID. The caller then sends
// and calls Finish with the answer, or Release when the send failed.
func (s *Store) Begin(ctx context.Context, senderID string, req sessions.SendRequest, newID func() string) (Claim, error) {
	if err := CheckKey(req.IdempotencyKey); err != nil {
		return Claim{}, err
	}
	e := entry{senderID, req.IdempotencyKey}
	s.mu.Lock()
	if s.running[e] {
		s.mu.Unlock()
		return Claim{}, sessions.ErrKeyInProgress
	}
	s.running[e] = true
	s.mu.Unlock()

	hash := requestHash(req)
	var claim Claim
	var reused bool
	err := s.do(ctx, func(tx *sql.Tx) error {
		claim, reused = Claim{}, false
		var got []byte
		var id string
		var answered sql.NullString
		err := tx.QueryRow(s.q.get, e.senderID, e.key).Scan(&got, &id, &answered)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			claim.MessageID = newID()
			_, err = tx.Exec(s.q.insert, e.senderID, e.key, hash, claim.MessageID, s.opts.Now().UnixMilli())
			return err
		case err != nil:
			return err
		case !bytes.Equal(got, hash):
			reused = true
			return nil
		}
		claim.MessageID = id
		if answered.Valid {
			ts, err := time.Parse(time.RFC3339Nano, answered.String)
			if err != nil {
				return fmt.Errorf("recorded answer: %w", err)
			}
			claim.Answer = &sessions.SentMessage{ID: id, Timestamp: ts}
		}
		return nil
	})
	if err != nil || reused || claim.Answer != nil {
		s.release(e)
	}
	switch {
	case err != nil:
		return Claim{}, err
	case reused:
		return Claim{}, sessions.ErrKeyReused
	}
	return claim, nil
}

// Finish records the answer of the send Begin claimed.
func (s *Store) Finish(ctx context.Context, senderID, key string, ans sessions.SentMessage) error {
	defer s.release(entry{senderID, key})
	return s.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(s.q.finish, ans.ID, ans.Timestamp.Format(time.RFC3339Nano), senderID, key)
		return err
	})
}

// Release gives up the claim of a send that failed: the entry stays
// pending, so a retry sends again with the same message id.
func (s *Store) Release(senderID, key string) { s.release(entry{senderID, key}) }

func (s *Store) release(e entry) {
	s.mu.Lock()
	delete(s.running, e)
	s.mu.Unlock()
}

// Prune deletes the entries older than Keep now, and says how many.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	var n int64
	err := s.do(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(s.q.prune, s.opts.Now().Add(-s.opts.Keep).UnixMilli())
		if err == nil {
			n, err = res.RowsAffected()
		}
		return err
	})
	return n, err
}

func (s *Store) prune() (int64, error) {
	res, err := s.db.Exec(s.q.prune, s.opts.Now().Add(-s.opts.Keep).UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// requestHash identifies a request's content: the same key must come with
// the same request.
func requestHash(req sessions.SendRequest) []byte {
	h := sha256.Sum256([]byte(req.To + "\x00" + req.Text + "\x00" + req.ReplyTo))
	return h[:]
}

// errClosed is what a write gets once the store is closing.
var errClosed = errors.New("idempotency store is closed")

// do runs f in the writer's next transaction and waits for its commit.
func (s *Store) do(ctx context.Context, f func(tx *sql.Tx) error) error {
	w := &write{run: f, done: make(chan error, 1)}
	select {
	case s.writes <- w:
	case <-s.quit:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-w.done:
		return err
	case <-s.ended:
		// The writer may have answered just before it ended.
		select {
		case err := <-w.done:
			return err
		default:
			return errClosed
		}
	}
}

// writer commits the waiting writes in batches, and prunes now and then.
func (s *Store) writer() {
	defer close(s.ended)
	tick := time.NewTicker(s.opts.PruneEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
			if n, err := s.prune(); err != nil {
				s.opts.Log.Error("prune idempotency store", "err", err)
			} else if n > 0 {
				s.opts.Log.Debug("pruned idempotency keys", "count", n)
			}
		case w := <-s.writes:
			batch := []*write{w}
		more:
			for len(batch) < maxBatch {
				select {
				case w := <-s.writes:
					batch = append(batch, w)
				default:
					break more
				}
			}
			s.commit(batch)
		}
	}
}

// commit runs batch in one transaction. A write's own error rolls the
// whole batch back (they are single statements that fail only when the
// database does), and every write of it gets the error.
func (s *Store) commit(batch []*write) {
	err := func() error {
		tx, err := s.db.Begin()
		if err != nil {
			return err
		}
		for _, w := range batch {
			if err := w.run(tx); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		err = fmt.Errorf("idempotency store: %w", err)
	}
	for _, w := range batch {
		w.done <- err
	}
}
