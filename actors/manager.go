// Package actors runs the sessions: a root supervisor (the manager) that
// keeps the latest snapshot of every session, and one supervised child
// actor per session that owns its WhatsApp client and store. A session that
// panics is restarted alone; one that spends its restart budget is left
// failed, visibly. Manager's methods turn API calls into messages carrying
// a buffered reply channel, awaited with the caller's context.
//
// Files: manager.go is the handle (Manager, the API's way in);
// manageractor.go the manager actor, with each session's lifecycle phase in
// entry.go and restore tracking in restore.go; session.go the session
// actor, its state table and WhatsApp's verdicts in states.go, one opening
// of its store and client in link.go; messages.go every message.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/idempotency"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// Metrics is what the actors report to; *metrics.Metrics implements it.
type Metrics interface {
	SetSessionState(session string, state sessions.State)
	SetSessionConnected(session string, connected bool)
	SessionRestarted(session string)
	SessionReconnected(session string)
	SessionDisconnected(session string, reason sessions.Reason)
	SetSessionLastConnected(session string, t time.Time)
	SessionMessage(session string, direction sessions.Direction)
	SessionStoreWriteFailed(session string)
	RemoveSession(session string)
	ObserveRestore(d time.Duration)
	RestoreResult(result sessions.RestoreResult)
	// SessionHandedOver counts a session Release handed to another node.
	SessionHandedOver()
}

// Registry records which sessions exist and which the operator stopped:
// *store.Dir (a directory per session) with STORE=sqlite, *pgstore.Registry
// (the ws_sessions table) with STORE=postgres. Its methods do I/O: the
// manager calls Discover and Remove off its mailbox.
type Registry interface {
	// Discover lists the stored sessions, sorted by id.
	Discover() ([]store.Stored, error)
	// Exists reports whether session id is recorded.
	Exists(id string) (bool, error)
	// SetStopped records (or clears) the operator's stop of session id,
	// recording the session if it is not yet.
	SetStopped(id string, stopped bool) error
	// Remove deletes session id and its credentials; a missing one is no
	// error.
	Remove(id string) error
}

var _ Registry = (*store.Dir)(nil)

// Options are what NewManager needs.
type Options struct {
	Registry Registry
	Opener   whatsapp.Opener
	Metrics  Metrics // nil: not measured
	Log      *slog.Logger

	Backoff            Backoff
	RestoreConcurrency int
	ConnectRate        float64
	ConnectBurst       int
	RestartBudget      int
	RestartWindow      time.Duration
	// RequestTimeout bounds every ask, on top of the caller's context.
	RequestTimeout time.Duration
	// Sink receives a session.state event at every change of a session's
	// status and a session.deleted event when one is deleted, without
	// waiting; nil publishes none.
	Sink sessions.EventSink
	// Idempotency keeps the answers of sends with an Idempotency-Key;
	// nil refuses such sends.
	Idempotency *idempotency.Store
	// Gate, when not nil, must grant a session's lease before its client
	// connects (several nodes on one store); nil: one node, no leases.
	Gate Gate
	// LeaseRetry is how often a session whose lease another node holds
	// asks again, jittered (0: one second).
	LeaseRetry time.Duration
	// OwnedElsewhere, when not nil, is told of a session whose lease
	// another node holds (refusal wraps sessions.ErrOwnedElsewhere), so
	// that the holder's node can settle the session now: hand it over, or
	// say it keeps it. It must not block (it runs in the session's actor)
	// and returns whether it told anyone; a session that told once does
	// not tell again for the same refusal (the same holder) until it
	// holds its lease. nil: one node.
	OwnedElsewhere func(id string, refusal error) bool
}

// Manager is the handle on the running sessions: the actors' implementation
// of sessions.Service.
type Manager struct {
	system  *actor.ActorSystem
	pid     *actor.PID
	timeout time.Duration
	deps    *deps
	idem    *idempotency.Store
	stopped atomic.Bool
}

var (
	_ sessions.Service   = (*Manager)(nil)
	_ sessions.Messenger = (*Manager)(nil)
)

// NewManager starts the actor system and the manager. No session starts
// until Restore or Create is called.
func NewManager(opts Options) (*Manager, error) {
	if opts.Registry == nil || opts.Opener == nil {
		return nil, errors.New("actors: Registry and Opener are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = noMetrics{}
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.LeaseRetry <= 0 {
		opts.LeaseRetry = defaultLeaseRetry
	}
	// protoactor logs every dead letter (a late result for a stopped
	// session is routine here) at info: keep its warnings and errors only.
	plog := slog.New(minLevel{Handler: opts.Log.Handler(), min: slog.LevelWarn}).With("component", "protoactor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return plog }))
	send := func(pid *actor.PID, msg any) { system.Root.Send(pid, msg) }
	d := &deps{
		opener:  opts.Opener,
		pacer:   NewPacer(opts.ConnectRate, opts.ConnectBurst, opts.RestoreConcurrency),
		backoff: opts.Backoff,
		metrics: opts.Metrics,
		log:     opts.Log,
		send:    send,

		gate:           opts.Gate,
		leaseRetry:     opts.LeaseRetry,
		ownedElsewhere: opts.OwnedElsewhere,
	}
	m := &Manager{timeout: opts.RequestTimeout, deps: d, idem: opts.Idempotency}
	mgr := &manager{
		requestTimeout: opts.RequestTimeout,
		dir:            opts.Registry,
		deps:           d,
		log:            opts.Log,
		metrics:        opts.Metrics,
		sessions:       map[string]*entry{},
		byPID:          map[string]string{},
		sink:           opts.Sink,
		announced:      map[string]sessions.Status{},
	}
	// OneForOne: a failing session restarts alone; past the budget it is
	// stopped and the manager sees *actor.Terminated and marks it failed.
	strategy := actor.NewOneForOneStrategy(opts.RestartBudget, opts.RestartWindow, actor.DefaultDecider)
	props := actor.PropsFromProducer(func() actor.Actor { return mgr }, actor.WithSupervisor(strategy))
	pid, err := system.Root.SpawnNamed(props, "manager")
	if err != nil {
		return nil, fmt.Errorf("spawn manager: %w", err)
	}
	m.system, m.pid = system, pid
	return m, nil
}

// ask sends the message build makes and waits for its reply, the
// caller's context or the request timeout, whichever comes first. The reply
// channel is buffered, so a late reply is dropped without blocking anyone.
func ask[T any](ctx context.Context, m *Manager, build func(chan<- reply[T]) any) (T, error) {
	var zero T
	if m.stopped.Load() {
		return zero, sessions.ErrShuttingDown
	}
	ch := make(chan reply[T], 1)
	m.system.Root.Send(m.pid, build(ch))
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	select {
	case r := <-ch:
		return r.val, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("%w: %v", sessions.ErrTimeout, ctx.Err())
	}
}

// Restore starts every stored session that is not running, in the
// background and paced; ids, when given, restores only those (a stopped
// one included). It returns once the work is dispatched.
func (m *Manager) Restore(ctx context.Context, ids []string) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return restoreCmd{ids: ids, reply: ch} })
	return err
}

// Status is one session's latest snapshot; it never waits on the session.
func (m *Manager) Status(ctx context.Context, id string) (sessions.Status, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.Status]) any { return statusReq{id: id, reply: ch} })
}

// Fleet is every session's snapshot, sorted by senderId, with counts.
func (m *Manager) Fleet(ctx context.Context) (sessions.Fleet, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.Fleet]) any { return fleetReq{reply: ch} })
}

// Create creates (or starts) session id: a new one goes to pairing.
func (m *Manager) Create(ctx context.Context, id string) (sessions.CreateResult, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.CreateResult]) any { return createCmd{id: id, reply: ch} })
}

// Stop disconnects session id, keeps its credentials and remembers the
// stop across restarts.
func (m *Manager) Stop(ctx context.Context, id string) (sessions.Status, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.Status]) any { return stopCmd{id: id, reply: ch} })
}

// Delete stops session id and removes its directory.
func (m *Manager) Delete(ctx context.Context, id string) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return deleteCmd{id: id, reply: ch} })
	return err
}

// Logout unlinks session id on WhatsApp and deletes its credentials.
func (m *Manager) Logout(ctx context.Context, id string) (sessions.Status, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.Status]) any { return forwardCmd{id: id, msg: logoutCmd{reply: ch}} })
}

// QR is the code session id shows now, while it is pairing.
func (m *Manager) QR(ctx context.Context, id string) (sessions.QR, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.QR]) any { return forwardCmd{id: id, msg: qrReq{reply: ch}} })
}

// PairPhone asks for a pairing code for phone, while session id is pairing.
func (m *Manager) PairPhone(ctx context.Context, id, phone string) (string, error) {
	return ask(ctx, m, func(ch chan<- reply[string]) any {
		return forwardCmd{id: id, msg: pairPhoneCmd{phone: phone, reply: ch}}
	})
}

// Inspect returns what test mode needs to act as the phone for session id.
func (m *Manager) Inspect(ctx context.Context, id string) (sessions.Inspection, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.Inspection]) any { return forwardCmd{id: id, msg: inspectReq{reply: ch}} })
}

// Panic makes session id's actor panic once (test mode).
func (m *Manager) Panic(ctx context.Context, id string) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return forwardCmd{id: id, msg: panicCmd{reply: ch}} })
	return err
}

// Send sends req from session id once it is connected, and answers once
// WhatsApp's server acknowledged the message. With an Idempotency-Key, a
// retry answers as the first send did, or sends again with the first
// attempt's message id when that one never finished.
func (m *Manager) Send(ctx context.Context, id string, req sessions.SendRequest) (sessions.SentMessage, error) {
	var none sessions.SentMessage
	if err := store.ValidateID(id); err != nil {
		return none, err
	}
	if err := whatsapp.CheckSend(req); err != nil {
		return none, err
	}
	out := whatsapp.Outgoing{To: req.To, Text: req.Text, ReplyTo: req.ReplyTo}
	key := req.IdempotencyKey
	if key == "" {
		return m.send(ctx, id, out)
	}
	if m.idem == nil {
		return none, sessions.Errorf(sessions.ErrInvalid, "this service keeps no Idempotency-Keys: send without one")
	}
	claim, err := m.idem.Begin(ctx, id, req, whatsapp.NewMessageID)
	if err != nil {
		return none, err
	}
	if claim.Answer != nil {
		return *claim.Answer, nil
	}
	out.ID = claim.MessageID
	sent, err := m.send(ctx, id, out)
	if err != nil {
		m.idem.Release(id, key)
		return none, err
	}
	// Recorded even when the asker has gone: the message went out.
	if err := m.idem.Finish(context.WithoutCancel(ctx), id, key, sent); err != nil {
		m.deps.log.Error("idempotent send: answer not recorded; a retry sends again with the same message id", "session_id", id, "err", err)
	}
	return sent, nil
}

func (m *Manager) send(ctx context.Context, id string, out whatsapp.Outgoing) (sessions.SentMessage, error) {
	return ask(ctx, m, func(ch chan<- reply[sessions.SentMessage]) any {
		return forwardCmd{id: id, msg: sendCmd{ctx: ctx, out: out, reply: ch}}
	})
}

// MarkRead tells the sender of message req.ID in req.Chat that session id
// read it.
func (m *Manager) MarkRead(ctx context.Context, id string, req sessions.ReadRequest) error {
	if err := store.ValidateID(id); err != nil {
		return err
	}
	if err := whatsapp.CheckRead(req); err != nil {
		return err
	}
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any {
		return forwardCmd{id: id, msg: markReadCmd{ctx: ctx, chat: req.Chat, ids: []string{req.ID}, reply: ch}}
	})
	return err
}

// Adopt hosts the stored sessions ids as the start-up restore would: a
// stopped one is shown stopped, the others restore through the pacer (and,
// with a Gate, connect once they hold their leases). Sessions already
// hosted are left untouched, unknown ids ignored. It returns once the work
// is dispatched.
func (m *Manager) Adopt(ctx context.Context, ids []string) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return adoptCmd{ids: ids, reply: ch} })
	return err
}

// Release hands sessions ids over to another node: each running one
// disconnects, closes its store and releases its lease, and every one is
// forgotten here, with no stop recorded and no session.deleted event.
// Unknown ids, and sessions being stopped or deleted, are left alone. It
// returns when done, or with ErrTimeout when ctx or the request timeout
// ends first (the hand-over still completes).
func (m *Manager) Release(ctx context.Context, ids []string) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return handoverCmd{ids: ids, reply: ch} })
	return err
}

// Hosted lists the sessions this manager hosts (whatever their state), sorted.
func (m *Manager) Hosted(ctx context.Context) ([]string, error) {
	return ask(ctx, m, func(ch chan<- reply[[]string]) any { return hostedReq{reply: ch} })
}

// LeasesLost tells sessions ids that this node no longer holds their
// leases: each disconnects at once (counted as a lease_lost disconnect)
// and waits to take its lease again. It does not wait; a lease.Keeper's
// OnLost calls it.
func (m *Manager) LeasesLost(ids []string) {
	if m.stopped.Load() || len(ids) == 0 {
		return
	}
	m.system.Root.Send(m.pid, leasesLostCmd{ids: ids})
}

// Ping checks that the manager answers.
func (m *Manager) Ping(ctx context.Context) error {
	_, err := ask(ctx, m, func(ch chan<- reply[struct{}]) any { return pingReq{reply: ch} })
	return err
}

// Shutdown stops every session (each disconnects and closes its store),
// then the manager, waiting at most until ctx ends. protoactor's own
// Shutdown stops no actors, hence this.
func (m *Manager) Shutdown(ctx context.Context) error {
	ch := make(chan reply[struct{}], 1)
	if m.stopped.Swap(true) {
		return nil
	}
	m.system.Root.Send(m.pid, shutdownCmd{reply: ch})
	var err error
	select {
	case r := <-ch:
		err = r.err
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: sessions still stopping: %w", ctx.Err())
	}
	m.system.Root.Stop(m.pid)
	m.system.Shutdown()
	// A dial that was opening a store when its session stopped closes it
	// itself: wait for those too, so no store outlives Shutdown.
	select {
	case <-m.deps.running.idle():
	case <-ctx.Done():
		if err == nil {
			err = fmt.Errorf("shutdown: session goroutines still running: %w", ctx.Err())
		}
	}
	return err
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{Handler: h.Handler.WithGroup(name), min: h.min}
}

type noMetrics struct{}

func (noMetrics) SetSessionState(string, sessions.State)      {}
func (noMetrics) SetSessionConnected(string, bool)            {}
func (noMetrics) SessionRestarted(string)                     {}
func (noMetrics) SessionReconnected(string)                   {}
func (noMetrics) SessionDisconnected(string, sessions.Reason) {}
func (noMetrics) SetSessionLastConnected(string, time.Time)   {}
func (noMetrics) SessionMessage(string, sessions.Direction)   {}
func (noMetrics) SessionStoreWriteFailed(string)              {}
func (noMetrics) RemoveSession(string)                        {}
func (noMetrics) ObserveRestore(time.Duration)                {}
func (noMetrics) RestoreResult(sessions.RestoreResult)        {}
func (noMetrics) SessionHandedOver()                          {}
