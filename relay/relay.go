// Package relay carries the live event stream between the nodes that
// share one Postgres store: every node's webhook outbox commits its
// sessions' events to ws_events and, in the same transaction, notifies
// the channel Channel with the node's name and the events' sequence
// numbers (Notice); Run listens on that channel on a connection of its
// own, reads the events other nodes committed and adds them to this
// node's hub, so that GET /api/whatsapp/events on any node streams every
// node's sessions.
//
// Postgres delivers notifications in commit order, so another node's
// events reach the hub in the order they were committed; this node's own
// go to the hub at their commit, a few milliseconds before a relayed event
// committed just before them may arrive. A session's events come from the
// node that holds it, in order; across a hand-over the two nodes' events
// can interleave by that much, and each session.state event carries the
// status's since, which tells the newer. Notifications reach only a
// listening connection: an event committed while the relay reconnects is
// not relayed (the stream is live, not durable; the outbox keeps every
// event for webhooks). The hub drops an event whose id it already holds.
package relay

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/whatsapp-sessions/whatsapp-sessions/events"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Channel is the notification channel the outboxes notify.
const Channel = "ws_events"

// MaxSeqs is how many sequence numbers one notification carries at most,
// well inside Postgres's 8,000-byte payload limit; a larger commit sends
// several.
const MaxSeqs = 400

// Notice is one notification's payload: who committed which events.
type Notice struct {
	Node string  `json:"node"`
	Seqs []int64 `json:"seqs"`
}

// Payloads splits the events node committed (their ws_events sequence
// numbers, in commit order) into notification payloads.
func Payloads(node string, seqs []int64) ([]string, error) {
	var out []string
	for start := 0; start < len(seqs); start += MaxSeqs {
		b, err := json.Marshal(Notice{Node: node, Seqs: seqs[start:min(start+MaxSeqs, len(seqs))]})
		if err != nil {
			return nil, err
		}
		out = append(out, string(b))
	}
	return out, nil
}

// retryEvery is how long Run waits before listening again after its
// connection failed.
const retryEvery = time.Second

// Run listens until ctx ends, adding to hub the events the other nodes
// commit (node is this node's name; its own events reach the hub
// directly). It reconnects after a failure, logging it.
func Run(ctx context.Context, db *sql.DB, node string, hub *events.Hub, log *slog.Logger) {
	for ctx.Err() == nil {
		err := listen(ctx, db, node, hub)
		if ctx.Err() != nil {
			return
		}
		log.Warn("event relay: listening failed; other nodes' events are not streamed here until it listens again", "err", err, "retry_in", retryEvery)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryEvery):
		}
	}
}

// listen holds one pooled connection, LISTENs on it and relays until ctx
// ends or the connection fails; the connection is then discarded, never
// returned to the pool still listening.
func listen(ctx context.Context, db *sql.DB, node string, hub *events.Hub) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var failed error
	_ = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			failed = fmt.Errorf("event relay: not a pgx connection (%T)", dc)
			return driver.ErrBadConn
		}
		pc := sc.Conn()
		if _, err := pc.Exec(ctx, "LISTEN "+Channel); err != nil {
			failed = fmt.Errorf("listen: %w", err)
			return driver.ErrBadConn
		}
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				failed = err
				return driver.ErrBadConn // discard it: it still listens
			}
			var notice Notice
			if err := json.Unmarshal([]byte(n.Payload), &notice); err != nil || notice.Node == node || len(notice.Seqs) == 0 {
				continue
			}
			evs, err := read(ctx, db, notice.Seqs)
			if err != nil {
				failed = fmt.Errorf("read relayed events: %w", err)
				return driver.ErrBadConn
			}
			hub.Add(evs...)
		}
	})
	if failed == nil {
		failed = errors.New("event relay: the connection ended")
	}
	return failed
}

// read reads the events seqs from ws_events, in order; one pruned
// meanwhile is left out.
func read(ctx context.Context, db *sql.DB, seqs []int64) ([]sessions.Event, error) {
	rows, err := db.QueryContext(ctx, `SELECT body FROM ws_events WHERE seq = ANY($1) ORDER BY seq`, seqs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sessions.Event
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var ev sessions.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			return nil, fmt.Errorf("an event in ws_events is not JSON: %w", err)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}
