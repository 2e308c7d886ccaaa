// Package lease decides who may connect a session when several nodes share
// one Postgres store: a row per session in ws_leases names its owner node,
// a fencing token that grows at every new owner, and an expiry by the
// database's clock. A Keeper acquires leases for its node, renews every
// lease it holds in one statement every TTL/3 together with the node's
// heartbeat in ws_nodes, and gives up (OnLost) any lease it could not renew
// within TTL/2 of its own monotonic clock, so that its node disconnects
// those sessions before any other node can take them.
package lease

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// DefaultTTL is the lease time-to-live when Options.TTL is zero.
const DefaultTTL = 10 * time.Second

// Metrics is what a Keeper counts; nil counts nothing.
type Metrics interface {
	// LeasesHeld is the number of leases the node holds now.
	LeasesHeld(n int)
	// LeasesLost counts leases given up because they could not be renewed
	// (taken, expired, or the database out of reach for TTL/2).
	LeasesLost(n int)
	// LeaseRenewFailed counts renewal round trips that failed.
	LeaseRenewFailed()
}

// Options configure a Keeper.
type Options struct {
	// Node is this node's name (NODE_NAME), the owner written in leases.
	Node string
	// Address is the cluster address other nodes dial, kept in ws_nodes.
	Address string
	// TTL is how long a lease lasts after each renewal (0: DefaultTTL).
	TTL time.Duration
	// OnLost is told the sessions whose leases this node no longer holds
	// although it did not release them; their clients must disconnect at
	// once. It is called from Run's goroutine and must not block long.
	OnLost func(ids []string)
	// Log is the logger (nil: discard).
	Log *slog.Logger
	// Metrics counts leases (nil: none).
	Metrics Metrics
	// RenewDB is the pool the renewals use (nil: the Keeper's db). A small
	// pool of its own keeps a renewal from queueing behind store queries
	// when the main pool is busy (a node adopting thousands of sessions):
	// a renewal that waits past TTL/2 costs the node every lease it holds.
	RenewDB *sql.DB
}

// Node is one node of the cluster as ws_nodes knows it.
type Node struct {
	Name    string
	Address string
}

// Holder is who holds one session's lease.
type Holder struct {
	// Node and Address are the owner's name and cluster address.
	Node    string
	Address string
	// Token is the lease's fencing token.
	Token int64
	// Expires is when the lease ends unless renewed (database clock).
	Expires time.Time
	// Left is how long the lease had to run when it was read, by the
	// database's clock (which the local clock need not agree with).
	Left time.Duration
	// Live: the owner's heartbeat is younger than the TTL and it is not
	// leaving, so it is an eligible node.
	Live bool
	// Renewing: the owner's heartbeat is younger than the TTL (leaving or
	// not), so it may still renew the lease or release it any moment.
	Renewing bool
}

// OwnedElsewhereError is Acquire's answer when another node holds the
// lease; it wraps sessions.ErrOwnedElsewhere.
type OwnedElsewhereError struct {
	Holder
}

// Error names the holder but not the expiry, which moves at every renewal:
// a session's status shows this text, and must not change with it.
func (e *OwnedElsewhereError) Error() string {
	return fmt.Sprintf("lease held by node %s", e.Node)
}

// RetryAfter is when asking again can succeed, when that is known: the
// lease's remaining time if its holder has stopped renewing (a node killed
// or cut off: the lease surely runs out then, not before); zero when the
// holder still renews, and may release it (a hand-over) any moment.
func (e *OwnedElsewhereError) RetryAfter() time.Duration {
	if e.Renewing {
		return 0
	}
	return e.Left
}

// Unwrap makes errors.Is(err, sessions.ErrOwnedElsewhere) true.
func (e *OwnedElsewhereError) Unwrap() error { return sessions.ErrOwnedElsewhere }

// hold is one lease this node holds.
type hold struct {
	token int64
	// gen tells a renewal's answer for an older hold of the same session
	// (released and acquired again meanwhile) from the current one.
	gen uint64
	// safeUntil is the local monotonic time until which the lease surely
	// has not expired: the start of the statement that last extended it,
	// plus TTL/2.
	safeUntil time.Time
}

// Keeper acquires, renews and releases the leases of one node.
type Keeper struct {
	db      *sql.DB
	renewDB *sql.DB
	node    string
	address string
	ttl     time.Duration
	onLost  func([]string)
	log     *slog.Logger
	metrics Metrics

	// leaving is set by SetLeaving: the renewals keep the node marked
	// leaving, and a new Keeper of the same node (the process started
	// again) clears the mark with its first renewal.
	leaving atomic.Bool

	mu   sync.Mutex
	held map[string]*hold
	gen  uint64
}

// New returns a Keeper of leases for opts.Node on db (migrated by
// pgstore.Migrate). It does nothing until Acquire or Run.
func New(db *sql.DB, opts Options) *Keeper {
	k := &Keeper{
		db: db, renewDB: opts.RenewDB, node: opts.Node, address: opts.Address, ttl: opts.TTL,
		onLost: opts.OnLost, log: opts.Log, metrics: opts.Metrics,
		held: make(map[string]*hold),
	}
	if k.ttl <= 0 {
		k.ttl = DefaultTTL
	}
	if k.renewDB == nil {
		k.renewDB = db
	}
	if k.log == nil {
		k.log = slog.New(slog.DiscardHandler)
	}
	if k.onLost == nil {
		k.onLost = func([]string) {}
	}
	return k
}

// TTL is the lease time-to-live.
func (k *Keeper) TTL() time.Duration { return k.ttl }

// Node is the name of the node this Keeper holds leases for.
func (k *Keeper) Node() string { return k.node }

// ms is d in whole milliseconds, the unit the statements take.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// acquireSQL takes a lease that is free, expired or already ours, bumping
// the fencing token when the owner changes. It returns no row when another
// node holds the lease.
const acquireSQL = `
INSERT INTO ws_leases AS l (sender_id, owner, token, expires_at)
VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
ON CONFLICT (sender_id) DO UPDATE
SET owner = excluded.owner,
    token = l.token + CASE WHEN l.owner IS DISTINCT FROM excluded.owner THEN 1 ELSE 0 END,
    expires_at = excluded.expires_at
WHERE l.owner IS NULL OR l.owner = excluded.owner OR l.expires_at <= now()
RETURNING token`

// holderSQL reads who holds leases and whether that node is eligible.
const holderSQL = `
SELECT l.sender_id, l.owner, coalesce(n.address, ''), l.token, l.expires_at,
       greatest(extract(epoch FROM l.expires_at - now()) * 1000, 0)::bigint,
       coalesce(n.heartbeat_at > now() - $2 * interval '1 millisecond' AND NOT n.leaving, false),
       coalesce(n.heartbeat_at > now() - $2 * interval '1 millisecond', false)
FROM ws_leases l LEFT JOIN ws_nodes n ON n.name = l.owner
WHERE l.sender_id = ANY($1) AND l.owner IS NOT NULL AND l.expires_at > now()`

// Acquire takes session id's lease for this node: a free or expired lease,
// or one this node holds already, becomes (stays) this node's; one another
// node holds gives an *OwnedElsewhereError. A session with no row in
// ws_sessions gives an error wrapping sessions.ErrNotFound.
func (k *Keeper) Acquire(ctx context.Context, id string) error {
	for range 3 {
		start := time.Now()
		var token int64
		err := k.db.QueryRowContext(ctx, acquireSQL, id, k.node, ms(k.ttl)).Scan(&token)
		switch {
		case err == nil:
			k.mu.Lock()
			k.gen++
			k.held[id] = &hold{token: token, gen: k.gen, safeUntil: start.Add(k.ttl / 2)}
			k.gaugeLocked()
			k.mu.Unlock()
			return nil
		case errors.Is(err, sql.ErrNoRows):
			hs, err := k.Holders(ctx, []string{id})
			if err != nil {
				return err
			}
			if h, ok := hs[id]; ok {
				return &OwnedElsewhereError{Holder: h}
			}
			// Released or expired between the two statements: try again.
		case isForeignKeyViolation(err):
			return fmt.Errorf("acquire lease: %w", sessions.ErrNotFound)
		default:
			return fmt.Errorf("acquire lease: %w", err)
		}
	}
	return fmt.Errorf("acquire lease: the lease kept changing hands")
}

func isForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// Release gives up this node's leases of ids, so that another node may take
// them at once; a lease another node holds is left alone. The caller
// disconnects the sessions' clients first.
func (k *Keeper) Release(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	// Forget them first: a renewal running now must not count them lost.
	k.mu.Lock()
	for _, id := range ids {
		delete(k.held, id)
	}
	k.gaugeLocked()
	k.mu.Unlock()
	_, err := k.db.ExecContext(ctx, `
UPDATE ws_leases SET owner = NULL, expires_at = '-infinity'
WHERE owner = $1 AND sender_id = ANY($2)`, k.node, ids)
	if err != nil {
		// Unreleased, the leases expire by themselves after the TTL.
		return fmt.Errorf("release leases: %w", err)
	}
	return nil
}

// Holders says who holds each of ids' leases now; a session whose lease is
// free or expired is absent.
func (k *Keeper) Holders(ctx context.Context, ids []string) (map[string]Holder, error) {
	rows, err := k.db.QueryContext(ctx, holderSQL, ids, ms(k.ttl))
	if err != nil {
		return nil, fmt.Errorf("read lease holders: %w", err)
	}
	defer rows.Close()
	out := make(map[string]Holder, len(ids))
	for rows.Next() {
		var id string
		var h Holder
		var leftMS int64
		if err := rows.Scan(&id, &h.Node, &h.Address, &h.Token, &h.Expires, &leftMS, &h.Live, &h.Renewing); err != nil {
			return nil, fmt.Errorf("read lease holders: %w", err)
		}
		h.Left = time.Duration(leftMS) * time.Millisecond
		out[id] = h
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read lease holders: %w", err)
	}
	return out, nil
}

// Eligible lists the nodes that may be given sessions: heartbeat younger
// than the TTL and not leaving, by name.
func (k *Keeper) Eligible(ctx context.Context) ([]Node, error) {
	rows, err := k.db.QueryContext(ctx, `
SELECT name, address FROM ws_nodes
WHERE heartbeat_at > now() - $1 * interval '1 millisecond' AND NOT leaving
ORDER BY name`, ms(k.ttl))
	if err != nil {
		return nil, fmt.Errorf("read eligible nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		if err := rows.Scan(&n.Name, &n.Address); err != nil {
			return nil, fmt.Errorf("read eligible nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read eligible nodes: %w", err)
	}
	return out, nil
}

// SetLeaving marks this node leaving (a SIGTERM drain): it stays in
// ws_nodes, renewing what it still holds, but is no longer eligible.
func (k *Keeper) SetLeaving(ctx context.Context) error {
	k.leaving.Store(true)
	_, err := k.db.ExecContext(ctx, `
INSERT INTO ws_nodes (name, address, heartbeat_at, leaving) VALUES ($1, $2, now(), true)
ON CONFLICT (name) DO UPDATE SET leaving = true`, k.node, k.address)
	if err != nil {
		return fmt.Errorf("mark node leaving: %w", err)
	}
	return nil
}

// Held lists the sessions whose leases this node holds.
func (k *Keeper) Held() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]string, 0, len(k.held))
	for id := range k.held {
		out = append(out, id)
	}
	return out
}

// Token is the fencing token of id's lease if this node holds it.
func (k *Keeper) Token(id string) (int64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h, ok := k.held[id]
	if !ok {
		return 0, false
	}
	return h.token, true
}

// renewSQL renews every lease of $4 this node still holds, and upserts
// the node's heartbeat and leaving mark ($5), in one statement (one round trip): the WITH's
// INSERT runs exactly once whether or not the UPDATE reads it. A lease that
// expired is not renewed: it is lost even if nobody took it.
const renewSQL = `
WITH heartbeat AS (
	INSERT INTO ws_nodes (name, address, heartbeat_at, leaving) VALUES ($1, $2, now(), $5)
	ON CONFLICT (name) DO UPDATE SET address = excluded.address, heartbeat_at = now(), leaving = excluded.leaving
)
UPDATE ws_leases SET expires_at = now() + $3 * interval '1 millisecond'
WHERE owner = $1 AND sender_id = ANY($4) AND expires_at > now()
RETURNING sender_id`

// Run renews the node's heartbeat and leases every TTL/3 (TTL/10 after a
// failed round trip) until ctx ends,
// and calls OnLost for every lease it could not renew: one the database no
// longer gives this node, at once; any lease at all once TTL/2 has passed
// since the start of the statement that last extended it, which is before
// the database's expiry (start + TTL by its clock) whatever the statement's
// latency. Each renewal is bounded by the earliest such deadline, so a
// database that does not answer cannot hold the check back.
func (k *Keeper) Run(ctx context.Context) error {
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(next) {
			next = now.Add(k.ttl / 3)
			if !k.renew(ctx) {
				// Try again soon: one failed round trip alone must
				// not cost every lease at TTL/2.
				next = time.Now().Add(k.ttl / 10)
			}
		}
		k.expire(time.Now())
		wake := next
		if d, ok := k.earliestDeadline(); ok && d.Before(wake) {
			wake = d
		}
		timer.Reset(time.Until(wake))
	}
}

// snapshot is the held leases a renewal asks for.
type snapshot struct {
	ids  []string
	gens map[string]uint64
}

func (k *Keeper) snapshot() snapshot {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := snapshot{ids: make([]string, 0, len(k.held)), gens: make(map[string]uint64, len(k.held))}
	for id, h := range k.held {
		s.ids = append(s.ids, id)
		s.gens[id] = h.gen
	}
	return s
}

// renew runs one renewal round trip and applies its answer; false when the
// round trip failed.
func (k *Keeper) renew(ctx context.Context) bool {
	snap := k.snapshot()
	start := time.Now()
	timeout := k.ttl / 3
	if d, ok := k.earliestDeadline(); ok && time.Until(d) < timeout {
		timeout = time.Until(d)
	}
	rctx, cancel := context.WithTimeout(ctx, max(timeout, time.Millisecond))
	defer cancel()
	renewed, err := k.renewRoundTrip(rctx, snap.ids)
	if err != nil {
		if ctx.Err() == nil {
			k.log.Warn("lease renewal failed", "node", k.node, "leases", len(snap.ids), "err", err)
			if k.metrics != nil {
				k.metrics.LeaseRenewFailed()
			}
		}
		return false
	}
	var lost []string
	k.mu.Lock()
	for _, id := range snap.ids {
		h, ok := k.held[id]
		if !ok || h.gen != snap.gens[id] {
			continue // released or acquired again meanwhile
		}
		if renewed[id] {
			h.safeUntil = start.Add(k.ttl / 2)
			continue
		}
		delete(k.held, id)
		lost = append(lost, id)
	}
	k.gaugeLocked()
	k.mu.Unlock()
	if len(lost) > 0 {
		k.log.Warn("leases taken or expired", "node", k.node, "lost", len(lost))
		k.lose(lost)
	}
	return true
}

func (k *Keeper) renewRoundTrip(ctx context.Context, ids []string) (map[string]bool, error) {
	rows, err := k.renewDB.QueryContext(ctx, renewSQL, k.node, k.address, ms(k.ttl), ids, k.leaving.Load())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	renewed := make(map[string]bool, len(ids))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		renewed[id] = true
	}
	return renewed, rows.Err()
}

// expire gives up every lease whose safe time has passed at now.
func (k *Keeper) expire(now time.Time) {
	var lost []string
	k.mu.Lock()
	for id, h := range k.held {
		if !now.Before(h.safeUntil) {
			delete(k.held, id)
			lost = append(lost, id)
		}
	}
	k.gaugeLocked()
	k.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	k.log.Warn("leases not renewed within half their TTL: disconnecting", "node", k.node, "lost", len(lost))
	k.lose(lost)
}

func (k *Keeper) earliestDeadline() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var d time.Time
	for _, h := range k.held {
		if d.IsZero() || h.safeUntil.Before(d) {
			d = h.safeUntil
		}
	}
	return d, !d.IsZero()
}

func (k *Keeper) lose(ids []string) {
	if k.metrics != nil {
		k.metrics.LeasesLost(len(ids))
	}
	k.onLost(ids)
}

// gaugeLocked reports the number held; k.mu is held, so that reports
// reach the gauge in order.
func (k *Keeper) gaugeLocked() {
	if k.metrics != nil {
		k.metrics.LeasesHeld(len(k.held))
	}
}
