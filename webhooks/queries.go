package webhooks

import (
	"strconv"
	"strings"
)

// queries are the outbox's statements in one database's dialect: the
// SQLite file's tables (events, deliveries) with ? parameters, or
// Postgres's (ws_events, ws_deliveries, made by pgstore's migrations with
// the same columns) with $n. Every read of the queue and every attempt's
// result names the node: a node's dispatchers work only on its rows (in
// SQLite, node is always "").
type queries struct {
	countActive, activeByEndpoint     string
	insertEvent, insertDelivery, mark string
	heads, next, nextSkip             string
	pruneDeliveries, pruneEvents      string
	list, get, retry, retryDead       string
	claimHeld, claimOrphans           string // Postgres only
	postgres                          bool
}

// activeCond is the SQL condition of a delivery still to be sent; it
// matches the queue indexes'.
const activeCond = `state IN ('pending', 'failed')`

const selectDelivery = `SELECT d.seq, e.id, e.type, d.sender_id, d.endpoint, d.state, d.attempts, d.last_error,
	d.created_at, d.next_try_at, d.last_try_at FROM {deliveries} d JOIN {events} e ON e.seq = d.event_seq`

// selectNext selects the deliveries still to be sent by a node (the first
// parameter) at an endpoint (the second) of a session (the third), with
// their events.
const selectNext = `SELECT d.seq, d.attempts, d.since, coalesce(d.next_try_at, 0), e.id, e.ts, e.body
	FROM {deliveries} d JOIN {events} e ON e.seq = d.event_seq WHERE d.node = ? AND d.endpoint = ? AND d.sender_id = ? AND d.` + activeCond

var templates = queries{
	countActive:      `SELECT count(*) FROM {deliveries} WHERE node = ? AND ` + activeCond,
	activeByEndpoint: `SELECT endpoint, count(*) FROM {deliveries} WHERE node = ? AND ` + activeCond + ` GROUP BY endpoint`,
	insertDelivery: `INSERT INTO {deliveries} (event_seq, endpoint, sender_id, node, state, created_at, since, next_try_at)
		VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)`,
	// The node is checked in the statement that records the result: once
	// another node claimed the delivery, this node's late result changes
	// nothing (the new owner sends it again: at least once).
	mark: `UPDATE {deliveries} SET state = ?, attempts = ?, last_error = ?, last_try_at = ?, next_try_at = ?, done_at = ?
		WHERE seq = ? AND node = ?`,
	// The longest waiting first, when the workers are all busy.
	heads: `SELECT d.seq, h.last, d.sender_id, d.next_try_at FROM {deliveries} d
		JOIN (SELECT min(seq) AS seq, max(seq) AS last FROM {deliveries} WHERE node = ? AND endpoint = ? AND ` + activeCond + ` GROUP BY sender_id) h
		ON d.seq = h.seq ORDER BY d.seq`,
	// LIMIT is a constant, not a parameter: SQLite plans with a bound
	// LIMIT's value, so binding one expired the statement, and every read
	// of the queue was parsed and planned twice.
	next:            selectNext + ` ORDER BY d.seq LIMIT ` + strconv.Itoa(readAhead),
	nextSkip:        selectNext + ` AND (d.seq < ? OR d.seq > ?) ORDER BY d.seq LIMIT ` + strconv.Itoa(readAhead),
	pruneDeliveries: `DELETE FROM {deliveries} WHERE state = 'delivered' AND done_at < ?`,
	pruneEvents:     `DELETE FROM {events} WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM {deliveries} d WHERE d.event_seq = {events}.seq)`,
	list:            selectDelivery + ` WHERE d.state = ? AND d.seq > ? ORDER BY d.seq LIMIT ?`,
	get:             selectDelivery + ` WHERE d.seq = ?`,
	retry: `UPDATE {deliveries} SET state = CASE state WHEN 'dead' THEN 'pending' ELSE state END,
		next_try_at = ?, since = ? WHERE seq = ? AND state = ?`,
	retryDead: `UPDATE {deliveries} SET state = 'pending', next_try_at = ?, since = ? WHERE state = 'dead'`,
}

// sqliteQueries work on the SQLite file's tables.
var sqliteQueries = func() queries {
	q := dialect(templates, "events", "deliveries", false)
	q.insertEvent = `INSERT OR IGNORE INTO events (id, type, sender_id, ts, created_at, body) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq`
	return q
}()

// postgresQueries work on pgstore's ws_events and ws_deliveries.
var postgresQueries = func() queries {
	q := templates
	// A node claims the undelivered rows of the sessions whose leases it
	// holds (it adopted them: a hand-over, a failover, a start), and the
	// rows that nobody may send now: their node is no longer eligible
	// (heartbeat older than the TTL, the second parameter in ms, or
	// leaving) and no live node holds their session's lease (a stopped
	// or deleted session's last events) while this node is eligible.
	// Concurrent claims of one row serialise on its row lock, and the
	// second re-reads the condition, so a row has one node at a time.
	q.claimHeld = `UPDATE ws_deliveries d SET node = ? FROM ws_leases l
		WHERE l.sender_id = d.sender_id AND l.owner = ? AND l.expires_at > now() AND d.node <> ? AND d.` + activeCond + "\n"
	q.claimOrphans = `UPDATE ws_deliveries d SET node = ?
		WHERE d.` + activeCond + ` AND d.node <> ?
		AND EXISTS (SELECT 1 FROM ws_nodes me WHERE me.name = ? AND me.heartbeat_at > now() - ? * interval '1 millisecond' AND NOT me.leaving)
		AND NOT EXISTS (SELECT 1 FROM ws_nodes n WHERE n.name = d.node AND n.heartbeat_at > now() - ? * interval '1 millisecond' AND NOT n.leaving)
		AND NOT EXISTS (SELECT 1 FROM ws_leases l WHERE l.sender_id = d.sender_id AND l.expires_at > now())`
	q = dialect(q, "ws_events", "ws_deliveries", true)
	q.insertEvent = `INSERT INTO ws_events (id, type, sender_id, ts, created_at, body) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (id) DO NOTHING RETURNING seq`
	return q
}()

// dialect names q's tables and, for Postgres, numbers its parameters.
func dialect(q queries, events, deliveries string, postgres bool) queries {
	r := strings.NewReplacer("{events}", events, "{deliveries}", deliveries)
	f := func(s string) string {
		s = r.Replace(s)
		if postgres {
			s = numbered(s)
		}
		return s
	}
	q.postgres = postgres
	for _, p := range []*string{&q.countActive, &q.activeByEndpoint, &q.insertEvent, &q.insertDelivery, &q.mark,
		&q.heads, &q.next, &q.nextSkip, &q.pruneDeliveries, &q.pruneEvents, &q.list, &q.get, &q.retry, &q.retryDead,
		&q.claimHeld, &q.claimOrphans} {
		*p = f(*p)
	}
	return q
}

// numbered turns each ? of s into $1, $2, ... (no statement here has a ?
// inside a literal).
func numbered(s string) string {
	var b strings.Builder
	n := 0
	for _, c := range s {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
