// Package webhooks keeps events in a durable outbox and delivers them to
// webhook endpoints, signed the Standard Webhooks way
// (https://www.standardwebhooks.com).
//
// An Outbox is a SQLite database of its own (SESSIONS_DIR/outbox.db, WAL,
// synchronous(FULL)), or two tables of the shared Postgres database
// (OpenPostgres: each delivery names the node that sends it, and a node
// claims the deliveries of the sessions it takes over), holding each event once and one delivery row per
// (event, endpoint subscribed to its type). Publish only queues; one
// committer goroutine writes whatever queued while its previous commit ran
// in one transaction (group commit), so a thousand events a second cost a
// few fsyncs, and only then tells each publisher its events are durable.
//
// Per endpoint, a dispatcher sends each session's deliveries in order of
// arrival, sessions in parallel: a session whose head delivery fails waits
// (with exponential backoff) without holding up other sessions. A 2xx
// within the timeout is a delivery; after RetryFor without one, a delivery
// is dead and stops blocking its session until an operator retries it.
// Every state lives in the database, so a restart carries on where the
// last run stopped. A worker does not wait for its attempt's result to be
// committed before its session's next delivery: until the commit lands,
// the result is held in memory and every read of the queue sees it
// there. A crash before that commit sends the delivery again, with the
// same webhook-id (delivery is at least once).
package webhooks

import (
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// ErrClosed: the outbox is closed (the service is stopping); it wraps
// sessions.ErrShuttingDown, which the API answers with 503.
var ErrClosed = &sessions.Error{Kind: sessions.ErrShuttingDown, Message: "the webhook outbox is closed: the service is stopping"}

// Observer hears about deliveries; package metrics implements it.
type Observer interface {
	// WebhookAttempt reports one delivery attempt's result: "delivered"
	// (with the time from the event to the 2xx), "failed", or "dead" for
	// a delivery given up after its last failed attempt.
	WebhookAttempt(result string, sinceEvent time.Duration)
	// WebhookQueueDepth reports how many deliveries wait to be delivered
	// (pending or failed).
	WebhookQueueDepth(n int)
}

// The results WebhookAttempt reports.
const (
	ResultDelivered = "delivered"
	ResultFailed    = "failed"
	ResultDead      = "dead"
)

// Results lists every attempt result, for metrics to start at 0.
var Results = []string{ResultDelivered, ResultFailed, ResultDead}

// Options configure Open.
type Options struct {
	// Path is the outbox database file (Open).
	Path string
	// Node names this node (NODE_NAME) in a shared Postgres outbox
	// (OpenPostgres): its dispatchers send the deliveries whose node it is.
	Node string
	// NodeTTL is the lease TTL (LEASE_TTL) with OpenPostgres: a node whose
	// heartbeat is older is no longer eligible, and its deliveries of the
	// sessions nobody holds are claimed by another node. Default
	// DefaultNodeTTL.
	NodeTTL time.Duration
	// ClaimEvery is how often OpenPostgres's outbox claims deliveries
	// (and reads its queue depth again); default DefaultClaimEvery.
	ClaimEvery time.Duration
	// URLs are the endpoints, each already validated (CheckURL).
	URLs []string
	// Events are the event types delivered; empty means all.
	Events []sessions.EventType
	// Secret signs every delivery: "whsec_" and base64 (CheckSecret).
	Secret string
	// Timeout bounds one attempt (WEBHOOK_TIMEOUT); default 10 s.
	Timeout time.Duration
	// RetryFor is how long a delivery is retried before it is dead
	// (WEBHOOK_RETRY_FOR); default 72 h.
	RetryFor time.Duration
	// Keep is how long delivered deliveries (and their events) stay
	// (WEBHOOK_KEEP); default 24 h.
	Keep time.Duration
	// AllowPrivate lets endpoints resolve to loopback, private and
	// link-local addresses (WEBHOOK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Concurrency bounds the sessions delivered to at once per endpoint;
	// default 32.
	Concurrency int
	// Log receives delivery failures (no event content); nil discards.
	Log *slog.Logger
	// Observer, when set, hears about attempts and the queue depth.
	Observer Observer
	// Now is the clock; nil means time.Now. Tests move it forward.
	Now func() time.Time
	// Backoff is the wait after a delivery's attempts-th failure; nil
	// means Backoff (1 s doubling to 1 h, with jitter).
	Backoff func(attempts int) time.Duration

	// commitHook, when set (tests only: export_test.go), runs before
	// each commit with how many attempts' results it holds; an error
	// fails the commit.
	commitHook func(results int) error
}

// The defaults of the Options' durations.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultRetryFor    = 72 * time.Hour
	DefaultKeep        = 24 * time.Hour
	DefaultConcurrency = 32
)

// Backoff is the default wait after a delivery's attempts-th failure:
// 1 s doubling up to 1 h, with "equal jitter" (a random point in the upper
// half), so that endpoints coming back are not hit by every retry at once
// while the wait still grows.
func Backoff(attempts int) time.Duration {
	const lo, hi = time.Second, time.Hour
	d := hi
	if attempts < 13 { // 2^12 s > 1 h
		d = min(lo<<max(attempts-1, 0), hi)
	}
	return d/2 + rand.N(d/2+1)
}
