package webhooks

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// MaxListLimit is the most deliveries List returns at once.
const MaxListLimit = 1000

// deliveryIDPrefix starts every delivery id.
const deliveryIDPrefix = "dlv_"

func deliveryID(seq int64) string { return deliveryIDPrefix + strconv.FormatInt(seq, 10) }

// parseID is the row of delivery id, or an ErrInvalid error.
func parseID(id string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(id, deliveryIDPrefix), 10, 64)
	if !strings.HasPrefix(id, deliveryIDPrefix) || err != nil || n <= 0 {
		return 0, sessions.Errorf(sessions.ErrInvalid, "%q is not a delivery id (dlv_ and a number)", id)
	}
	return n, nil
}

// List returns up to limit deliveries in state, oldest first, after the
// delivery id after ("" for the first page).
func (o *Outbox) List(ctx context.Context, state sessions.DeliveryState, after string, limit int) ([]sessions.Delivery, error) {
	switch state {
	case sessions.DeliveryPending, sessions.DeliveryFailed, sessions.DeliveryDead, sessions.DeliveryDelivered:
	default:
		return nil, sessions.Errorf(sessions.ErrInvalid, "state must be pending, failed, dead or delivered, got %q", state)
	}
	if limit < 1 || limit > MaxListLimit {
		return nil, sessions.Errorf(sessions.ErrInvalid, "limit must be 1 to %d, got %d", MaxListLimit, limit)
	}
	var from int64
	if err := o.flush(ctx); err != nil {
		return nil, err
	}
	if after != "" {
		var err error
		if from, err = parseID(after); err != nil {
			return nil, err
		}
	}
	rows, err := o.db.QueryContext(ctx, o.q.list, string(state), from, limit)
	if err != nil {
		return nil, o.dbError(err)
	}
	defer rows.Close()
	out := []sessions.Delivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, o.dbError(err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, o.dbError(err)
	}
	return out, nil
}

// Retry makes one failed or dead (or pending) delivery due now, with a
// fresh RETRY_FOR, and returns it as it is then.
func (o *Outbox) Retry(ctx context.Context, id string) (sessions.Delivery, error) {
	seq, err := parseID(id)
	if err != nil {
		return sessions.Delivery{}, err
	}
	// Every result recorded so far first: a dead delivery's result, still
	// in memory, would otherwise be written over the retry.
	if err := o.flush(ctx); err != nil {
		return sessions.Delivery{}, err
	}
	d, err := o.get(ctx, seq)
	if err != nil {
		return d, err
	}
	if d.State == sessions.DeliveryDelivered {
		return d, sessions.Errorf(sessions.ErrWrongState, "delivery %s was delivered already", id)
	}
	// The state is checked again in the update: the delivery may have
	// been delivered (or died) since it was read.
	now := o.now().UnixNano()
	o.depthMu.RLock()
	res, err := o.db.ExecContext(ctx, o.q.retry, now, now, seq, string(d.State))
	if err != nil {
		o.depthMu.RUnlock()
		return d, o.dbError(err)
	}
	n, _ := res.RowsAffected()
	if n > 0 && d.State == sessions.DeliveryDead {
		o.addDepth(1)
	}
	o.depthMu.RUnlock()
	if n == 0 {
		return o.Retry(ctx, id) // it changed under us: decide on its new state
	}
	o.wakeAll()
	// The answer is the delivery as the retry left it: a worker may take
	// it, and record its attempt, before a read here would see it.
	if d.State == sessions.DeliveryDead {
		d.State = sessions.DeliveryPending
	}
	d.NextTryAt = nullTime(sql.NullInt64{Int64: now, Valid: true})
	return d, nil
}

// RetryDead makes every dead delivery due now, with a fresh RETRY_FOR,
// and says how many there were.
func (o *Outbox) RetryDead(ctx context.Context) (int, error) {
	if err := o.flush(ctx); err != nil {
		return 0, err
	}
	now := o.now().UnixNano()
	o.depthMu.RLock()
	res, err := o.db.ExecContext(ctx, o.q.retryDead, now, now)
	if err != nil {
		o.depthMu.RUnlock()
		return 0, o.dbError(err)
	}
	n, _ := res.RowsAffected()
	o.addDepth(n)
	o.depthMu.RUnlock()
	if n > 0 {
		o.wakeAll()
	}
	return int(n), nil
}

// get is delivery seq, or ErrNotFound.
func (o *Outbox) get(ctx context.Context, seq int64) (sessions.Delivery, error) {
	d, err := scanDelivery(o.db.QueryRowContext(ctx, o.q.get, seq))
	if errors.Is(err, sql.ErrNoRows) {
		return d, sessions.Errorf(sessions.ErrNotFound, "no delivery %s (delivered ones are kept for WEBHOOK_KEEP)", deliveryID(seq))
	}
	if err != nil {
		return d, o.dbError(err)
	}
	return d, nil
}

// dbError is a database failure as the API reports it: ErrClosed once
// the outbox is closed, else a wrapped error (a 500 whose words stay in
// the log).
func (o *Outbox) dbError(err error) error {
	o.mu.Lock()
	closing := o.closing
	o.mu.Unlock()
	if closing {
		return ErrClosed
	}
	return fmt.Errorf("webhook outbox: %w", err)
}

func scanDelivery(row interface{ Scan(...any) error }) (sessions.Delivery, error) {
	var d sessions.Delivery
	var seq, created int64
	var next, last sql.NullInt64
	var typ, state, ep string
	if err := row.Scan(&seq, &d.EventID, &typ, &d.SenderID, &ep, &state, &d.Attempts, &d.LastError, &created, &next, &last); err != nil {
		return d, err
	}
	d.ID, d.EventType, d.Endpoint, d.State = deliveryID(seq), sessions.EventType(typ), redact(ep), sessions.DeliveryState(state)
	d.CreatedAt = time.Unix(0, created).UTC()
	d.NextTryAt, d.LastTryAt = nullTime(next), nullTime(last)
	return d, nil
}

func nullTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.Unix(0, v.Int64).UTC()
	return &t
}
