package webhooks

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/whatsapp-sessions/whatsapp-sessions/relay"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// dsn is the outbox's connection string. synchronous(FULL) syncs the WAL
// at every commit, so an event reported committed survives kill -9 and
// power loss; group commit pays that fsync once per batch.
// _txlock=immediate takes the write lock at BEGIN, so the committer and
// the admin API's updates queue on busy_timeout instead of failing.
func dsn(path string) string {
	return "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate"
}

// schema is the outbox: each event once (its id unique, so a redelivered
// WhatsApp message is dropped), and a delivery per endpoint. Times are
// Unix nanoseconds. A delivery's since starts its RETRY_FOR clock: when
// it was created, or last retried by an operator.
const schema = `
CREATE TABLE IF NOT EXISTS events (
	seq        INTEGER PRIMARY KEY AUTOINCREMENT,
	id         TEXT NOT NULL UNIQUE,
	type       TEXT NOT NULL,
	sender_id  TEXT NOT NULL,
	ts         INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	body       BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	event_seq   INTEGER NOT NULL REFERENCES events(seq),
	endpoint    TEXT NOT NULL,
	sender_id   TEXT NOT NULL,
	node        TEXT NOT NULL DEFAULT '',
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	since       INTEGER NOT NULL,
	next_try_at INTEGER,
	last_try_at INTEGER,
	done_at     INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_queue ON deliveries(endpoint, sender_id, seq) WHERE state IN ('pending', 'failed');
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(state, seq);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_seq);
CREATE INDEX IF NOT EXISTS events_created ON events(created_at);
`

// addNode gives an outbox file made before the node column its column
// (every row "": the file is one node's).
const addNode = `ALTER TABLE deliveries ADD COLUMN node TEXT NOT NULL DEFAULT ''`

// Outbox is the durable outbox and its dispatchers. It implements
// sessions.EventSink and sessions.Deliveries.
type Outbox struct {
	db    *sql.DB
	q     queries
	stmts *stmtCache // SQLite only; nil runs each statement's text
	// writer is the committer's own connection while it commits; nil
	// once it was idle for writerIdleTimeout, until the next commit.
	writer *sql.Conn
	// closeDB closes db: the SQLite file's; nothing for the shared
	// Postgres pool.
	closeDB func() error
	// node is the node whose deliveries this outbox sends: NODE_NAME with
	// Postgres, "" in a SQLite file (one node's own).
	node       string
	nodeTTL    time.Duration
	claimEvery time.Duration
	log        *slog.Logger
	obs        Observer
	now        func() time.Time
	backoff    func(int) time.Duration
	sign       *signer
	client     *http.Client
	endpoints  []string
	events     map[sessions.EventType]bool
	timeout    time.Duration
	retryFor   time.Duration
	keep       time.Duration
	conc       int

	// mu guards the queue Publish and the workers append to and the
	// committer takes, and the two steps of closing.
	mu   sync.Mutex
	cond *sync.Cond
	// queue holds what the one writer commits next: published events and
	// attempts' results. One writer, so that writes never wait on SQLite's
	// lock (its busy handler sleeps up to 100 ms at a time), and every
	// write shares the batch's one fsync.
	queue   []batchItem
	closing bool // Publish refuses
	stopped bool // the committer ends once the queue is empty

	commits   atomic.Int64
	committed atomic.Int64
	depth     atomic.Int64
	// depthMu keeps the claim loop's recount of the depth (Postgres:
	// other nodes claim and retry this node's rows) from mixing with a
	// change in flight: whoever changes the queue holds it for reading
	// from its write's commit to its depth update, the recount holds it
	// for writing from its count to its store.
	depthMu sync.RWMutex

	lanes []*lane // one per endpoint
	// commitHook, when set (tests only), runs before each commit with how
	// many attempts' results it holds; an error fails the commit.
	commitHook func(results int) error
	stop       context.CancelFunc
	committer  sync.WaitGroup
	workers    sync.WaitGroup
	closeOnce  sync.Once
}

var (
	_ sessions.EventSink  = (*Outbox)(nil)
	_ sessions.Deliveries = (*Outbox)(nil)
)

// batchItem is one Publish call (its events, marshalled) or one attempt's
// result (mark), and its done.
type batchItem struct {
	evs  []sessions.Event
	body [][]byte
	mark *mark
	done func(error)
}

// mark is an attempt's result: the delivery's new state.
type mark struct {
	seq       int64
	state     string // delivered, failed or dead
	attempts  int
	lastError string
	at        int64
	next      sql.NullInt64
	doneAt    sql.NullInt64
}

// readerIdleTimeout closes a connection of a SQLite outbox's pool once
// unused this long (the writer's too, once given back: writerIdleTimeout).
// A connection's page cache and statements live in SQLite's C heap: kept
// open after a burst of messages, they pin the heap pages they were
// allocated among (the session stores', freed when the stores close), and
// the allocator cannot give those pages back. Measured with the messaging
// bench: 19–27 KiB less RSS per session after it (BENCHMARKS.md).
var readerIdleTimeout = 5 * time.Second

// writerIdleTimeout gives the committer's connection back to the pool once
// it committed nothing for this long, so that the pool closes it like a
// reader's (readerIdleTimeout); the next commit takes a connection again.
// Measured with the messaging bench: RSS per session at rest after it
// 165–174 → 133–143 KiB (BENCHMARKS.md).
var writerIdleTimeout = 3 * time.Second

// Open opens (or creates) the outbox in the SQLite file opts.Path and
// starts its committer, its dispatchers (one per endpoint) and its
// pruning. Close stops them.
func Open(opts Options) (*Outbox, error) {
	o, err := newOutbox(opts)
	if err != nil {
		return nil, err
	}
	// Events hold message text: the file is the owner's alone (SQLite
	// gives its -wal and -shm files the database file's mode), and never
	// reached through a symlink planted in its place.
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open webhook outbox %s: %w", opts.Path, err)
	}
	err = f.Chmod(0o600)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("open webhook outbox %s: %w", opts.Path, err)
	}
	// A few connections: the committer writes on one of its own while
	// dispatchers and the admin API read on the others; WAL lets readers
	// run beside the one writer. The writer's own connection keeps the
	// commits from queueing behind 32 workers per endpoint for the pool.
	db, _ := sql.Open("sqlite", dsn(opts.Path)) // sql.Open only checks the driver name
	db.SetMaxOpenConns(7)
	db.SetMaxIdleConns(7)
	db.SetConnMaxIdleTime(readerIdleTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = db.ExecContext(ctx, schema)
	var hasNode int
	if err == nil {
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info('deliveries') WHERE name = 'node'`).Scan(&hasNode)
	}
	if err == nil && hasNode == 0 {
		_, err = db.ExecContext(ctx, addNode)
	}
	if err == nil {
		o.db, o.q, o.closeDB, o.node = db, sqliteQueries, db.Close, ""
		o.stmts, err = prepareStmts(ctx, db, o.q.insertEvent, o.q.insertDelivery, o.q.mark, o.q.next, o.q.nextSkip)
	}
	if err == nil {
		err = o.start(ctx)
	}
	if err != nil {
		o.stmts.close()
		db.Close()
		return nil, fmt.Errorf("open webhook outbox %s: %w", opts.Path, err)
	}
	return o, nil
}

// DefaultClaimEvery is how often an outbox in Postgres claims the
// deliveries of the sessions its node took over.
const DefaultClaimEvery = time.Second

// DefaultNodeTTL is OpenPostgres's NodeTTL when none is given: package
// lease's default TTL.
const DefaultNodeTTL = 10 * time.Second

// OpenPostgres opens the outbox in the Postgres database db, the
// process's pool, migrated by pgstore (tables ws_events and
// ws_deliveries), shared by every node: opts.Node names this node, whose
// dispatchers send only the deliveries whose node it is. Every
// opts.ClaimEvery the outbox claims the undelivered rows of the sessions
// whose leases this node holds, and those no eligible node may send
// (package lease's ws_leases and ws_nodes; opts.NodeTTL is the lease
// TTL). opts.Path is not used. Close leaves db open.
func OpenPostgres(db *sql.DB, opts Options) (*Outbox, error) {
	o, err := newOutbox(opts)
	if err != nil {
		return nil, err
	}
	o.db, o.q, o.closeDB, o.node = db, postgresQueries, func() error { return nil }, opts.Node
	o.nodeTTL, o.claimEvery = cmp.Or(opts.NodeTTL, DefaultNodeTTL), cmp.Or(opts.ClaimEvery, DefaultClaimEvery)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := o.start(ctx); err != nil {
		return nil, fmt.Errorf("webhook outbox in postgres: %w", err)
	}
	return o, nil
}

// newOutbox checks opts and makes an outbox without its database.
func newOutbox(opts Options) (*Outbox, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Backoff == nil {
		opts.Backoff = Backoff
	}
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	opts.RetryFor = cmp.Or(opts.RetryFor, DefaultRetryFor)
	opts.Keep = cmp.Or(opts.Keep, DefaultKeep)
	opts.Concurrency = cmp.Or(opts.Concurrency, DefaultConcurrency)
	if len(opts.Events) == 0 {
		opts.Events = sessions.EventTypes
	}
	for i, u := range opts.URLs {
		if err := CheckURL(u); err != nil {
			return nil, fmt.Errorf("webhook URL %s %v", redact(u), err)
		}
		// Each endpoint's dispatcher owns its rows: two would send each twice.
		if slices.Contains(opts.URLs[:i], u) {
			return nil, fmt.Errorf("webhook URL %s is listed twice", redact(u))
		}
	}
	o := &Outbox{
		log: opts.Log, obs: opts.Observer, now: opts.Now, backoff: opts.Backoff,
		endpoints: slices.Clone(opts.URLs), events: map[sessions.EventType]bool{},
		timeout: opts.Timeout, retryFor: opts.RetryFor, keep: opts.Keep, conc: opts.Concurrency,
		client:     newClient(opts.Timeout, opts.AllowPrivate, opts.Concurrency),
		commitHook: opts.commitHook,
	}
	for _, t := range opts.Events {
		o.events[t] = true
	}
	if len(o.endpoints) > 0 {
		var err error
		if o.sign, err = newSigner(opts.Secret); err != nil {
			return nil, err
		}
	}
	o.cond = sync.NewCond(&o.mu)
	return o, nil
}

// start counts the queue, takes the committer's connection, and starts
// the committer, the dispatchers, the pruning and (Postgres) the claims.
func (o *Outbox) start(ctx context.Context) error {
	var n int64
	if err := o.db.QueryRowContext(ctx, o.q.countActive, o.node).Scan(&n); err != nil {
		return err
	}
	o.addDepth(n)
	o.warnUnknownEndpoints(ctx)

	runCtx, stop := context.WithCancel(context.Background())
	o.stop = stop
	o.committer.Add(1)
	go o.commitLoop()
	for _, ep := range o.endpoints {
		l := newLane(ep)
		o.lanes = append(o.lanes, l)
		o.workers.Add(1)
		go o.dispatch(runCtx, l)
	}
	o.workers.Add(1)
	go o.pruneLoop(runCtx)
	if o.q.postgres {
		o.workers.Add(1)
		go o.claimLoop(runCtx)
	}
	return nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// warnUnknownEndpoints logs deliveries waiting for endpoints that are no
// longer configured: they stay in the outbox (and the queue depth) until
// the endpoint comes back.
func (o *Outbox) warnUnknownEndpoints(ctx context.Context) {
	rows, err := o.db.QueryContext(ctx, o.q.activeByEndpoint, o.node)
	if err != nil {
		return
	}
	defer rows.Close()
	for rows.Next() {
		var ep string
		var n int
		if rows.Scan(&ep, &n) == nil && !slices.Contains(o.endpoints, ep) {
			o.log.Warn("deliveries wait for a webhook endpoint that WEBHOOK_URL no longer lists; they are sent if it comes back",
				"endpoint", redact(ep), "deliveries", n)
		}
	}
}

// Publish queues evs for a durable commit and returns at once; done (when
// not nil) hears the commit's result. An event whose id the outbox already
// holds is dropped and counts as committed. After Close, done gets
// ErrClosed before Publish returns.
func (o *Outbox) Publish(evs []sessions.Event, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	item := batchItem{evs: evs, body: make([][]byte, len(evs)), done: done}
	for i, ev := range evs {
		if ev.ID == "" || ev.Type == "" || ev.SenderID == "" {
			// An empty id would make every later such event a "duplicate".
			done(fmt.Errorf("event %d of %d has no id, type or senderId", i+1, len(evs)))
			return
		}
		b, err := json.Marshal(ev)
		if err != nil {
			done(fmt.Errorf("event %s of type %s cannot be encoded: %w", ev.ID, ev.Type, err))
			return
		}
		item.body[i] = b
	}
	if !o.enqueue(item) {
		done(ErrClosed)
	}
}

// commitLoop is the one writer: it takes everything queued, commits it
// in one transaction, tells each publisher, and starts over, so the next
// batch is whatever queued while this commit ran. Once stopped, it
// returns when the queue is empty.
func (o *Outbox) commitLoop() {
	defer o.committer.Done()
	defer o.releaseWriter()
	for {
		o.mu.Lock()
		idleSince := time.Now()
		for len(o.queue) == 0 && !o.stopped {
			if o.writer != nil && time.Since(idleSince) >= writerIdleTimeout {
				o.mu.Unlock()
				o.releaseWriter()
				o.mu.Lock()
				continue
			}
			var wake *time.Timer // for the idle writer's release
			if o.writer != nil {
				wake = time.AfterFunc(writerIdleTimeout-time.Since(idleSince), o.wakeCommitter)
			}
			o.cond.Wait()
			if wake != nil {
				wake.Stop()
			}
		}
		batch := o.queue
		o.queue = nil
		stopped := o.stopped
		o.mu.Unlock()
		if len(batch) == 0 && stopped {
			return
		}
		err := o.commit(batch)
		if err != nil {
			o.log.Error("webhook outbox commit failed; the events were not kept and their publishers were told", "events", countEvents(batch), "err", err)
		}
		for _, it := range batch {
			it.done(err)
		}
	}
}

// wakeCommitter wakes the committer from its wait. It takes the lock, so
// that a committer about to wait is waiting by then and misses nothing.
func (o *Outbox) wakeCommitter() {
	o.mu.Lock()
	o.cond.Broadcast()
	o.mu.Unlock()
}

// releaseWriter gives the committer's connection back to the pool, if it
// holds one. Only the committer calls it.
func (o *Outbox) releaseWriter() {
	if o.writer != nil {
		o.writer.Close() //nolint:errcheck // returns the connection to the pool
		o.writer = nil
	}
}

// enqueue queues it for the writer, unless the outbox no longer takes
// such items: it reports whether it did.
func (o *Outbox) enqueue(it batchItem) bool {
	o.mu.Lock()
	if o.stopped || (it.mark == nil && o.closing) {
		o.mu.Unlock()
		return false
	}
	o.queue = append(o.queue, it)
	o.mu.Unlock()
	o.cond.Signal()
	return true
}

func countResults(batch []batchItem) int {
	n := 0
	for _, it := range batch {
		if it.mark != nil {
			n++
		}
	}
	return n
}

// flush waits until everything queued before it is committed (or its
// commit failed): the admin API reads and changes deliveries only after
// the results recorded so far are in the database. It returns at once
// when the outbox is closing (no results are recorded then but those
// the writer is finishing).
func (o *Outbox) flush(ctx context.Context) error {
	done := make(chan struct{})
	if !o.enqueue(batchItem{done: func(error) { close(done) }}) {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func countEvents(batch []batchItem) int {
	n := 0
	for _, it := range batch {
		n += len(it.evs)
	}
	return n
}

// commit writes batch in one transaction: each new event with a pending
// delivery per endpoint for the types delivered, and each attempt's
// result.
func (o *Outbox) commit(batch []batchItem) error {
	if o.commitHook != nil {
		if err := o.commitHook(countResults(batch)); err != nil {
			return fmt.Errorf("webhook outbox: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if o.writer == nil {
		w, err := o.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("webhook outbox: take a connection: %w", err)
		}
		o.writer = w
	}
	tx, err := o.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("webhook outbox: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	st := o.stmts.in(ctx, tx)
	now := o.now().UnixNano()
	var added, left int64
	var seqs []int64 // the events inserted, for the other nodes' streams
	for _, it := range batch {
		if it.mark != nil {
			m := it.mark
			res, err := st.exec(o.q.mark, m.state, m.attempts, m.lastError, m.at, m.next, m.doneAt, m.seq, o.node)
			if err != nil {
				return fmt.Errorf("webhook outbox: record an attempt: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 && m.state != "failed" {
				left++ // else another node claimed the delivery meanwhile
			}
			continue
		}
		for i, ev := range it.evs {
			var seq int64
			err := st.queryRow(o.q.insertEvent, ev.ID, string(ev.Type), ev.SenderID, ev.Timestamp.UnixNano(), now, it.body[i]).Scan(&seq)
			if errors.Is(err, sql.ErrNoRows) {
				continue // a duplicate: the first one is delivered
			}
			if err != nil {
				return fmt.Errorf("webhook outbox: insert event: %w", err)
			}
			seqs = append(seqs, seq)
			if !o.events[ev.Type] {
				continue
			}
			for _, ep := range o.endpoints {
				if _, err := st.exec(o.q.insertDelivery, seq, ep, ev.SenderID, o.node, now, now, now); err != nil {
					return fmt.Errorf("webhook outbox: insert delivery: %w", err)
				}
				added++
			}
		}
	}
	if err := o.notify(ctx, tx, seqs); err != nil {
		return err
	}
	o.depthMu.RLock()
	if err := tx.Commit(); err != nil {
		o.depthMu.RUnlock()
		return fmt.Errorf("webhook outbox: commit: %w", err)
	}
	if added != left {
		o.addDepth(added - left)
	}
	o.depthMu.RUnlock()
	o.commits.Add(1)
	o.committed.Add(int64(countEvents(batch)))
	if added > 0 {
		o.wakeAll()
	}
	return nil
}

// notify tells the other nodes (package relay), in the commit's
// transaction, which events it adds (Postgres only: a SQLite outbox has
// one node).
func (o *Outbox) notify(ctx context.Context, tx *sql.Tx, seqs []int64) error {
	if !o.q.postgres || len(seqs) == 0 {
		return nil
	}
	payloads, err := relay.Payloads(o.node, seqs)
	if err != nil {
		return fmt.Errorf("webhook outbox: notify: %w", err)
	}
	for _, p := range payloads {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, relay.Channel, p); err != nil {
			return fmt.Errorf("webhook outbox: notify: %w", err)
		}
	}
	return nil
}

// wakeAll tells every dispatcher to look for due deliveries.
func (o *Outbox) wakeAll() {
	for _, l := range o.lanes {
		l.poke()
	}
}

func (o *Outbox) addDepth(n int64) {
	d := o.depth.Add(n)
	if o.obs != nil {
		o.obs.WebhookQueueDepth(int(d))
	}
}

// claimLoop claims, every claimEvery, the deliveries this node now has to
// send (OpenPostgres's claims), reads its queue depth again (other nodes
// claim and retry this node's rows too), and wakes the dispatchers: an
// operator's retry on another node, or a claim, made rows due here.
func (o *Outbox) claimLoop(ctx context.Context) {
	defer o.workers.Done()
	t := time.NewTicker(o.claimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := o.Claim(ctx)
		if err != nil {
			if ctx.Err() == nil {
				o.log.Warn("webhook outbox: cannot claim deliveries; retrying later", "err", err)
			}
			continue
		}
		if n > 0 {
			o.log.Info("webhook outbox: claimed the deliveries of sessions this node took over", "deliveries", n)
		}
		o.recountDepth(ctx)
		o.wakeAll()
	}
}

// recountDepth reads the queue depth from the database again, while no
// change of this node's is between its write and its depth update.
func (o *Outbox) recountDepth(ctx context.Context) {
	o.depthMu.Lock()
	defer o.depthMu.Unlock()
	var depth int64
	if err := o.db.QueryRowContext(ctx, o.q.countActive, o.node).Scan(&depth); err == nil {
		o.addDepth(depth - o.depth.Load())
	}
}

// Claim makes this node the sender of the undelivered deliveries of the
// sessions whose leases it holds, and of those whose node is no longer
// eligible while nobody holds their session, and says how many it took
// (OpenPostgres's outbox; 0 in a SQLite file). The outbox claims every
// ClaimEvery by itself; the manager may call it after adopting sessions.
func (o *Outbox) Claim(ctx context.Context) (int64, error) {
	if !o.q.postgres {
		return 0, nil
	}
	res, err := o.db.ExecContext(ctx, o.q.claimHeld, o.node, o.node, o.node)
	if err != nil {
		return 0, fmt.Errorf("claim the deliveries of held sessions: %w", err)
	}
	held, _ := res.RowsAffected()
	ttl := o.nodeTTL.Milliseconds()
	res, err = o.db.ExecContext(ctx, o.q.claimOrphans, o.node, o.node, o.node, ttl, ttl)
	if err != nil {
		return held, fmt.Errorf("claim the deliveries of sessions nobody holds: %w", err)
	}
	orphans, _ := res.RowsAffected()
	return held + orphans, nil
}

// Stats are counts since Open, for tests and benchmarks.
type Stats struct {
	// Commits is how many transactions the committer made.
	Commits int64
	// Events is how many events were committed (duplicates included).
	Events int64
	// Queued is how many deliveries wait (pending or failed).
	Queued int64
}

// Stats reports counts since Open.
func (o *Outbox) Stats() Stats {
	return Stats{Commits: o.commits.Load(), Events: o.committed.Load(), Queued: o.depth.Load()}
}

// pruneEvery is how often delivered deliveries older than Keep are
// removed.
const pruneEvery = time.Minute

func (o *Outbox) pruneLoop(ctx context.Context) {
	defer o.workers.Done()
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if _, err := o.Prune(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("webhook outbox: pruning failed; retrying later", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune removes deliveries delivered more than Keep ago, and events older
// than Keep that have no delivery left (an event is kept that long even
// without deliveries, so that a redelivered duplicate is still
// recognised). It says how many deliveries it removed.
func (o *Outbox) Prune(ctx context.Context) (int64, error) {
	cutoff := o.now().Add(-o.keep).UnixNano()
	res, err := o.db.ExecContext(ctx, o.q.pruneDeliveries, cutoff)
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := o.db.ExecContext(ctx, o.q.pruneEvents, cutoff); err != nil {
		return n, fmt.Errorf("prune events: %w", err)
	}
	return n, nil
}

// Close stops taking events, stops the deliveries (one in flight is
// abandoned and sent again after the next start), commits everything
// already published and every recorded attempt (each publisher hears),
// and closes the database (not a shared Postgres pool). ctx bounds the wait for the deliveries to
// stop.
func (o *Outbox) Close(ctx context.Context) error {
	var err error
	o.closeOnce.Do(func() {
		o.mu.Lock()
		o.closing = true
		o.mu.Unlock()
		o.stop()
		stopped := make(chan struct{})
		go func() { o.workers.Wait(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			err = errors.New("webhook deliveries did not stop in time")
			<-stopped // an attempt ends by its own timeout; the database must outlive it
		}
		o.mu.Lock()
		o.stopped = true
		o.mu.Unlock()
		o.cond.Broadcast()
		o.committer.Wait()
		o.client.CloseIdleConnections()
		o.stmts.close()
		if cerr := o.closeDB(); err == nil && cerr != nil {
			err = fmt.Errorf("close webhook outbox: %w", cerr)
		}
	})
	return err
}
