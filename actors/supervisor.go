package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// stopIntent is why the manager stopped a session's actor; an actor that
// terminates with none spent its restart budget.
type stopIntent int

const (
	intentNone stopIntent = iota
	intentStop
	intentDelete
	intentShutdown
)

// entry is the manager's record of one session.
type entry struct {
	pid    *actor.PID // nil when no actor runs (stopped, failed for good)
	status sessions.Status
	// restarts and reconnectsCarry survive the actor's restarts, which
	// start its own counters from zero.
	restarts        int
	reconnectsCarry int
	intent          stopIntent
	deleting        bool
	stopReply       chan<- reply[sessions.Status]
	deleteReply     chan<- reply[struct{}]
	// inflight are commands forwarded to the actor that it may not have
	// read yet: an actor that stops drops what is left in its mailbox, so
	// the manager fails them then (a command already answered keeps its
	// first answer).
	inflight []inflightCmd
}

type inflightCmd struct {
	cmd sessionCmd
	at  time.Time
}

// forward sends cmd to e's actor and remembers it until it can no longer
// be waited for.
func (m *manager) forward(ctx actor.Context, e *entry, cmd sessionCmd) {
	now := time.Now()
	keep := e.inflight[:0]
	for _, c := range e.inflight {
		if now.Sub(c.at) < m.requestTimeout {
			keep = append(keep, c)
		}
	}
	e.inflight = append(keep, inflightCmd{cmd: cmd, at: now})
	ctx.Send(e.pid, cmd)
}

// failInflight answers every command e's actor may have dropped.
func (m *manager) failInflight(id string, e *entry) {
	for _, c := range e.inflight {
		c.cmd.fail(sessions.WrongState(e.status.State, "session %s stopped before it could answer", id))
	}
	e.inflight = nil
}

// restoreRun is the progress of the last restore.
type restoreRun struct {
	started  time.Time
	finished *time.Time
	found    int
	restored int
	needsPg  int
	failed   int
	pending  map[string]time.Time // dispatched, not yet settled
}

// manager is the root supervisor actor: parent of every session actor and
// keeper of their latest snapshots, so a status never waits on a session.
type manager struct {
	dir     *store.Dir
	deps    *deps
	log     *slog.Logger
	metrics Metrics
	// requestTimeout is how long an asker waits at most.
	requestTimeout time.Duration
	sessions       map[string]*entry
	byPID          map[string]string // actor id -> senderId
	run            *restoreRun

	shuttingDown  bool
	shutdownLeft  int
	shutdownReply chan<- reply[struct{}]
}

func (m *manager) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case restoreCmd:
		m.onRestore(ctx, msg)
	case discovered:
		m.onDiscovered(ctx, msg)
	case statusReq:
		if e := m.sessions[msg.id]; e != nil {
			answer(msg.reply, e.status, nil)
		} else {
			answer(msg.reply, sessions.Status{}, sessions.ErrNotFound)
		}
	case fleetReq:
		answer(msg.reply, m.fleet(), nil)
	case statusUpdate:
		m.onStatus(msg)
	case sessionRestarted:
		m.onRestarted(msg)
	case *actor.Terminated:
		m.onTerminated(ctx, msg)
	case createCmd:
		m.onCreate(ctx, msg)
	case stopCmd:
		m.onStop(ctx, msg)
	case deleteCmd:
		m.onDelete(ctx, msg)
	case removed:
		m.onRemoved(msg)
	case forwardCmd:
		m.onForward(ctx, msg)
	case shutdownCmd:
		m.onShutdown(ctx, msg)
	case pingReq:
		answer(msg.reply, struct{}{}, nil)
	}
}

func (m *manager) onRestore(ctx actor.Context, msg restoreCmd) {
	if m.shuttingDown {
		answer(msg.reply, struct{}{}, sessions.ErrShuttingDown)
		return
	}
	if msg.ids == nil {
		// Reading the directory is I/O: do it off the mailbox.
		self, send, dir := ctx.Self(), m.deps.send, m.dir
		m.deps.goroutine(func() {
			stored, err := dir.Discover()
			var ids, stopped []string
			for _, s := range stored {
				if s.Stopped {
					stopped = append(stopped, s.ID)
				} else {
					ids = append(ids, s.ID)
				}
			}
			send(self, discovered{ids: ids, err: err, stopped: stopped})
		})
		answer(msg.reply, struct{}{}, nil)
		return
	}
	var unknown []string
	for _, id := range msg.ids {
		if err := store.ValidateID(id); err != nil {
			answer(msg.reply, struct{}{}, err)
			return
		}
		if m.sessions[id] != nil {
			continue
		}
		if ok, _ := m.dir.Exists(id); !ok {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		answer(msg.reply, struct{}{}, fmt.Errorf("%w: %s", sessions.ErrNotFound, idList(unknown)))
		return
	}
	// Naming a session restores it even if the operator had stopped it.
	for _, id := range msg.ids {
		if e := m.sessions[id]; e == nil || e.pid == nil {
			if err := m.dir.SetStopped(id, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				answer(msg.reply, struct{}{}, err)
				return
			}
		}
	}
	answer(msg.reply, struct{}{}, nil)
	m.restoreAll(ctx, msg.ids, 0)
}

func (m *manager) onDiscovered(ctx actor.Context, msg discovered) {
	if msg.err != nil {
		m.log.Error("❌ Failed to read stored sessions", "dir", m.dir.Root(), "err", msg.err)
		return
	}
	if m.shuttingDown {
		return
	}
	// A session the operator stopped stays stopped, and listed as such.
	for _, id := range msg.stopped {
		if m.sessions[id] == nil {
			e := &entry{status: sessions.Status{SenderID: id, State: sessions.StateStopped, Since: time.Now()}}
			m.sessions[id] = e
			m.publish(id, e)
		}
	}
	m.restoreAll(ctx, msg.ids, len(msg.stopped))
}

// restoreAll starts each of ids that is not running: a new one is spawned,
// one waiting for the operator (failed, conflict, needs pairing) starts
// over, a live one is left alone.
func (m *manager) restoreAll(ctx actor.Context, ids []string, stopped int) {
	var todo []string
	for _, id := range ids {
		e := m.sessions[id]
		switch {
		case e != nil && (e.deleting || e.intent != intentNone):
		case e == nil:
			// Listed before a delete finished? Then it is gone: leave it.
			if ok, _ := m.dir.Exists(id); ok {
				todo = append(todo, id)
			}
		case e.pid == nil:
			todo = append(todo, id)
		case e.status.State == sessions.StateFailed || e.status.State == sessions.StateConflict || e.status.State == sessions.StateNeedsPairing:
			todo = append(todo, id)
		}
	}
	line := fmt.Sprintf("🔄 Found %d stored session(s), restoring...", len(todo))
	if stopped > 0 {
		m.log.Info(line, "stopped_left_alone", stopped)
	} else {
		m.log.Info(line)
	}
	if len(todo) == 0 {
		return
	}
	if m.run == nil || m.run.finished != nil {
		m.run = &restoreRun{started: time.Now(), pending: map[string]time.Time{}}
	}
	now := time.Now()
	for _, id := range todo {
		m.run.found++
		m.run.pending[id] = now
		if e := m.sessions[id]; e != nil && e.pid != nil {
			ctx.Send(e.pid, restartCmd{})
			continue
		}
		m.spawn(ctx, id, modeRestore, true)
	}
}

// spawn starts session id's actor. Its first incarnation starts in mode;
// one restarted after a panic restores (connects if paired).
func (m *manager) spawn(ctx actor.Context, id string, mode startMode, restore bool) *entry {
	e := m.sessions[id]
	if e == nil {
		e = &entry{}
		m.sessions[id] = e
	}
	var incarnations atomic.Int32
	// prev is the incarnation before a restart: the account it knew stays
	// shown while the next one opens the store. Only protoactor's
	// supervision calls the producer, one incarnation at a time.
	var prev *session
	d := m.deps
	props := actor.PropsFromProducer(func() actor.Actor {
		if incarnations.Add(1) == 1 {
			prev = newSession(id, d, mode, restore)
			return prev
		}
		next := newSession(id, d, modeRestore, false)
		next.st.JID, next.st.PushName = prev.st.JID, prev.st.PushName
		prev = next
		return next
	})
	e.status = sessions.Status{SenderID: id, State: sessions.StateRestoring, Since: time.Now(),
		Restarts: e.restarts, Reconnects: e.status.Reconnects}
	e.reconnectsCarry = e.status.Reconnects
	pid, err := ctx.SpawnNamed(props, "session-"+id)
	if err != nil {
		e.status.State = sessions.StateFailed
		e.status.Error = &sessions.ErrorInfo{Code: sessions.CodePanic, Message: "could not start the session's actor: " + err.Error()}
		m.log.Error("spawn session", "session_id", id, "err", err)
		m.publish(id, e)
		return e
	}
	e.pid = pid
	m.byPID[pid.Id] = id
	m.publish(id, e)
	return e
}

func (m *manager) onStatus(msg statusUpdate) {
	id := msg.status.SenderID
	e := m.sessions[id]
	if e == nil || e.pid == nil || !e.pid.Equal(msg.pid) || e.intent != intentNone {
		return // a late snapshot of an actor that is gone or going
	}
	st := msg.status
	st.Restarts = e.restarts
	st.Reconnects += e.reconnectsCarry
	e.status = st
	m.publish(id, e)
	m.track(id, st)
}

// publish derives e's user action from its state and shows its status in
// the metrics.
func (m *manager) publish(id string, e *entry) {
	e.status.UserAction = e.status.State.UserAction()
	m.metrics.SetSessionState(id, e.status.State)
	m.metrics.SetSessionConnected(id, e.status.Connected)
	if e.status.LastConnectedAt != nil {
		m.metrics.SetSessionLastConnected(id, *e.status.LastConnectedAt)
	}
}

// track counts a restoring session's outcome into the restore run and logs
// the source document's lines.
func (m *manager) track(id string, st sessions.Status) {
	r := m.run
	if r == nil {
		return
	}
	startedAt, ok := r.pending[id]
	if !ok {
		return
	}
	reason := ""
	if st.Error != nil {
		reason = st.Error.Message
	}
	switch st.State {
	case sessions.StateConnected:
		r.restored++
		m.metrics.RestoreResult(sessions.ResultRestored)
		m.metrics.ObserveRestore(time.Since(startedAt))
		m.log.Info(fmt.Sprintf("✅ WhatsApp session %s restored and ready!", id), "session_id", id, "took", time.Since(startedAt).Round(time.Millisecond))
	case sessions.StateNeedsPairing:
		r.needsPg++
		m.metrics.RestoreResult(sessions.ResultNeedsPairing)
		m.log.Warn(fmt.Sprintf("❌ Session %s needs pairing: %s", id, reason), "session_id", id)
	case sessions.StateFailed, sessions.StateConflict, sessions.StateBanned:
		r.failed++
		m.metrics.RestoreResult(sessions.ResultFailed)
		m.log.Error(fmt.Sprintf("❌ Failed to restore session %s: %s", id, reason), "session_id", id, "state", st.State)
	default:
		return
	}
	delete(r.pending, id)
	if len(r.pending) == 0 {
		now := time.Now()
		r.finished = &now
		m.log.Info("restore finished", "found", r.found, "restored", r.restored, "needs_pairing", r.needsPg,
			"failed", r.failed, "took", now.Sub(r.started).Round(time.Millisecond))
	}
}

func (m *manager) onRestarted(msg sessionRestarted) {
	e := m.sessions[msg.id]
	if e == nil {
		return
	}
	e.restarts++
	e.reconnectsCarry = e.status.Reconnects
	e.status.Restarts = e.restarts
	// The old incarnation's client is gone: do not show it connected
	// while the new one opens its store.
	e.status.State, e.status.Connected, e.status.LoggedIn = sessions.StateRestoring, false, false
	e.status.Since, e.status.NextRetryAt = time.Now(), nil
	e.status.Error = &sessions.ErrorInfo{Code: sessions.CodePanic, Message: "the session's actor panicked and was restarted: " + msg.reason}
	m.publish(msg.id, e)
	m.metrics.SessionRestarted(msg.id)
	m.log.Warn("session actor panicked; restarting it", "session_id", msg.id, "reason", msg.reason, "restarts", e.restarts)
}

func (m *manager) onTerminated(ctx actor.Context, msg *actor.Terminated) {
	id, ok := m.byPID[msg.Who.Id]
	if !ok {
		return
	}
	delete(m.byPID, msg.Who.Id)
	e := m.sessions[id]
	if e == nil || e.pid == nil || !e.pid.Equal(msg.Who) {
		return
	}
	defer m.failInflight(id, e)
	e.pid = nil
	intent := e.intent
	e.intent = intentNone
	switch intent {
	case intentStop:
		m.setStopped(id, e)
		answer(e.stopReply, e.status, nil)
		e.stopReply = nil
	case intentDelete:
		if e.stopReply != nil { // a stop that a delete overtook
			m.setStopped(id, e)
			answer(e.stopReply, e.status, nil)
			e.stopReply = nil
		}
		m.remove(ctx, id, e.deleteReply)
		e.deleteReply = nil
	case intentShutdown:
		m.metrics.SetSessionConnected(id, false)
	default:
		e.status.State = sessions.StateFailed
		e.status.Connected, e.status.LoggedIn = false, false
		e.status.Since = time.Now()
		e.status.NextRetryAt = nil
		e.status.Error = &sessions.ErrorInfo{Code: sessions.CodeRestartBudget,
			Message: fmt.Sprintf("the session's actor kept failing (%d restarts) and was stopped: fix the cause, then restore it", e.restarts)}
		m.log.Error(fmt.Sprintf("❌ Session %s failed: restart budget spent", id), "session_id", id, "restarts", e.restarts)
		m.publish(id, e)
		m.track(id, e.status)
	}
	if m.shuttingDown {
		m.shutdownLeft--
		if m.shutdownLeft == 0 {
			answer(m.shutdownReply, struct{}{}, nil)
		}
	}
}

func (m *manager) setStopped(id string, e *entry) {
	e.status = sessions.Status{SenderID: id, State: sessions.StateStopped, Since: time.Now(),
		JID: e.status.JID, PushName: e.status.PushName, LastConnectedAt: e.status.LastConnectedAt,
		Restarts: e.restarts, Reconnects: e.status.Reconnects}
	m.metrics.SessionDisconnected(id, sessions.ReasonStopped)
	m.publish(id, e)
	if m.run != nil {
		delete(m.run.pending, id)
	}
}

func (m *manager) onCreate(ctx actor.Context, msg createCmd) {
	if err := store.ValidateID(msg.id); err != nil {
		answer(msg.reply, sessions.CreateResult{}, err)
		return
	}
	if m.shuttingDown {
		answer(msg.reply, sessions.CreateResult{}, sessions.ErrShuttingDown)
		return
	}
	e := m.sessions[msg.id]
	switch {
	case e != nil && (e.deleting || e.intent != intentNone):
		answer(msg.reply, sessions.CreateResult{}, sessions.WrongState(e.status.State, "session %s is being stopped or deleted: try again when it is done", msg.id))
	case e != nil && e.pid != nil:
		m.forward(ctx, e, startCmd{reply: msg.reply})
	default:
		if e != nil && e.status.State == sessions.StateStopped {
			if err := m.dir.SetStopped(msg.id, false); err != nil {
				answer(msg.reply, sessions.CreateResult{}, err)
				return
			}
		}
		e = m.spawn(ctx, msg.id, modePair, false)
		answer(msg.reply, sessions.CreateResult{Status: e.status, Created: true}, nil)
	}
}

func (m *manager) onStop(ctx actor.Context, msg stopCmd) {
	e := m.sessions[msg.id]
	switch {
	case e == nil:
		answer(msg.reply, sessions.Status{}, sessions.ErrNotFound)
	case e.deleting || e.intent != intentNone:
		answer(msg.reply, sessions.Status{}, sessions.WrongState(e.status.State, "session %s is already being stopped or deleted", msg.id))
	case e.status.State == sessions.StateStopped:
		answer(msg.reply, sessions.Status{}, sessions.WrongState(e.status.State, "session %s is already stopped", msg.id))
	default:
		// The marker is written first: a crash from here on still leaves
		// the session stopped at the next start.
		if err := m.dir.SetStopped(msg.id, true); err != nil {
			answer(msg.reply, sessions.Status{}, err)
			return
		}
		if e.pid == nil {
			m.setStopped(msg.id, e)
			answer(msg.reply, e.status, nil)
			return
		}
		e.intent, e.stopReply = intentStop, msg.reply
		ctx.Stop(e.pid)
	}
}

func (m *manager) onDelete(ctx actor.Context, msg deleteCmd) {
	e := m.sessions[msg.id]
	switch {
	case e == nil:
		if ok, _ := m.dir.Exists(msg.id); !ok {
			answer(msg.reply, struct{}{}, sessions.ErrNotFound)
			return
		}
		m.sessions[msg.id] = &entry{status: sessions.Status{SenderID: msg.id, State: sessions.StateStopped, Since: time.Now()}, deleting: true}
		m.remove(ctx, msg.id, msg.reply)
	case e.deleting:
		answer(msg.reply, struct{}{}, sessions.WrongState(e.status.State, "session %s is already being deleted", msg.id))
	case m.shuttingDown:
		answer(msg.reply, struct{}{}, sessions.ErrShuttingDown)
	case e.pid != nil:
		e.deleting, e.intent, e.deleteReply = true, intentDelete, msg.reply
		ctx.Stop(e.pid)
	default:
		e.deleting = true
		m.remove(ctx, msg.id, msg.reply)
	}
}

// remove deletes the session's directory off the mailbox; removed finishes.
func (m *manager) remove(ctx actor.Context, id string, rep chan<- reply[struct{}]) {
	self, send, dir := ctx.Self(), m.deps.send, m.dir
	m.deps.goroutine(func() { send(self, removed{id: id, err: dir.Remove(id), reply: rep}) })
}

func (m *manager) onRemoved(msg removed) {
	e := m.sessions[msg.id]
	if msg.err != nil {
		if e != nil {
			e.deleting = false
		}
		m.log.Error("delete session", "session_id", msg.id, "err", msg.err)
		answer(msg.reply, struct{}{}, msg.err)
		return
	}
	delete(m.sessions, msg.id)
	if m.run != nil {
		delete(m.run.pending, msg.id)
	}
	m.metrics.RemoveSession(msg.id)
	m.log.Info("session deleted", "session_id", msg.id)
	answer(msg.reply, struct{}{}, nil)
}

func (m *manager) onForward(ctx actor.Context, msg forwardCmd) {
	e := m.sessions[msg.id]
	switch {
	case e == nil:
		msg.msg.fail(sessions.ErrNotFound)
	case e.pid == nil || e.deleting || e.intent != intentNone:
		msg.msg.fail(sessions.WrongState(e.status.State, "session %s is %s", msg.id, e.status.State))
	default:
		m.forward(ctx, e, msg.msg)
	}
}

func (m *manager) onShutdown(ctx actor.Context, msg shutdownCmd) {
	m.shuttingDown = true
	for _, e := range m.sessions {
		if e.pid == nil {
			continue
		}
		// One already stopping for another reason is waited for too.
		m.shutdownLeft++
		if e.intent == intentNone {
			e.intent = intentShutdown
			ctx.Stop(e.pid)
		}
	}
	if m.shutdownLeft == 0 {
		answer(msg.reply, struct{}{}, nil)
		return
	}
	m.shutdownReply = msg.reply
	m.log.Info("stopping sessions", "count", m.shutdownLeft)
}

func (m *manager) fleet() sessions.Fleet {
	f := sessions.Fleet{Sessions: make([]sessions.Status, 0, len(m.sessions)), Counts: map[sessions.State]int{}}
	for _, e := range m.sessions {
		if e.deleting {
			continue
		}
		f.Sessions = append(f.Sessions, e.status)
		f.Counts[e.status.State]++
	}
	sortStatuses(f.Sessions)
	if r := m.run; r != nil {
		started := r.started
		f.Restore = sessions.RestoreProgress{Started: &started, Finished: r.finished, Found: r.found, Restored: r.restored,
			NeedsPairing: r.needsPg, Failed: r.failed, Pending: len(r.pending)}
	}
	return f
}

// idList names ids in an error: each once, the first ten, then how many
// more, so that a restore naming thousands of unknown ids answers briefly.
func idList(ids []string) string {
	const shown = 10
	seen := make(map[string]bool, len(ids))
	var unique []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	if len(unique) <= shown {
		return strings.Join(unique, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(unique[:shown], ", "), len(unique)-shown)
}
