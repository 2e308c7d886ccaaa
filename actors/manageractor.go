package actors

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// manager is the root supervisor actor: parent of every session actor and
// keeper of their latest snapshots, so a status never waits on a session.
type manager struct {
	dir     Registry
	deps    *deps
	log     *slog.Logger
	metrics Metrics
	// requestTimeout is how long an asker waits at most.
	requestTimeout time.Duration
	sessions       map[string]*entry
	byPID          map[string]string // actor id -> senderId
	run            *restoreRun
	// sink gets a session.state event for every status that differs from
	// the last one announced of its session (announced), and a
	// session.deleted event for every session removed.
	sink      sessions.EventSink
	announced map[string]sessions.Status

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
	case cmdRead:
		m.onCmdRead(msg)
	case sessionRestarted:
		m.onRestarted(msg)
	case *actor.Terminated:
		m.onTerminated(ctx, msg)
	case actorEnded:
		m.onEnded(ctx, msg)
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
	case adoptCmd:
		m.onAdopt(ctx, msg)
	case adoptable:
		m.onAdoptable(ctx, msg)
	case handoverCmd:
		m.onHandover(ctx, msg)
	case hostedReq:
		answer(msg.reply, m.hosted(), nil)
	case leasesLostCmd:
		m.onLeasesLost(ctx, msg)
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
	// work is shared by the actor's incarnations; the manager waits on it
	// once the actor has terminated.
	work := &sync.WaitGroup{}
	var incarnations atomic.Int32
	// prev is the incarnation before a restart: the account it knew stays
	// shown while the next one opens the store. Only protoactor's
	// supervision calls the producer, one incarnation at a time.
	var prev *session
	d := m.deps
	// The lease hold is shared by the incarnations too: a restarted actor
	// takes the lease its predecessor may still be releasing.
	var hold *leaseHold
	if d.gate != nil {
		hold = &leaseHold{gate: d.gate, id: id}
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		if incarnations.Add(1) == 1 {
			prev = newSession(id, d, work, mode, restore)
			prev.lease = hold
			return prev
		}
		next := newSession(id, d, work, modeRestore, false)
		next.lease = hold
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
	if err := e.spawned(pid, work); err != nil {
		m.log.Error("spawn session", "session_id", id, "err", err)
	}
	m.byPID[pid.Id] = id
	m.publish(id, e)
	return e
}

func (m *manager) onStatus(msg statusUpdate) {
	id := msg.status.SenderID
	e := m.sessions[id]
	if e == nil || e.phase != phaseRunning || !e.pid.Equal(msg.pid) {
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
	m.announce(id, e.status)
}

// announce publishes st as a session.state event unless it is the status
// last announced for id, or differs from it only in since (the manager's
// restoring placeholder, then the actor's own restoring a moment later,
// are one state change). It does not wait for the sink: a state event is
// not deduplicated, and a lost one is superseded by the next.
func (m *manager) announce(id string, st sessions.Status) {
	if m.sink == nil {
		return
	}
	if last, ok := m.announced[id]; ok {
		last.Since = st.Since
		if reflect.DeepEqual(last, st) {
			return
		}
	}
	m.announced[id] = st
	ev, err := stateEvent(id, st)
	if err != nil {
		m.log.Error("session.state event", "session_id", id, "err", err)
		return
	}
	m.sink.Publish([]sessions.Event{ev}, nil)
}

// stateEvent is the session.state event of st, with a random id.
func stateEvent(id string, st sessions.Status) (sessions.Event, error) {
	data, err := json.Marshal(st)
	if err != nil {
		return sessions.Event{}, err
	}
	return sessions.Event{Type: sessions.EventSessionState, ID: "st_" + randomHex(), Timestamp: time.Now().UTC(),
		SenderID: id, Data: data}, nil
}

// randomHex is 128 random bits in hex.
func randomHex() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
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
	// The actor closed its link when it stopped, which ends every
	// goroutine it started; wait for them off the mailbox, so that
	// nothing touches the store once ended arrives.
	self, send, work, pid := ctx.Self(), m.deps.send, e.work, e.pid
	m.deps.goroutine(func() {
		work.Wait()
		send(self, actorEnded{id: id, pid: pid})
	})
}

// onEnded moves a session on once its actor and every goroutine it
// started have ended.
func (m *manager) onEnded(ctx actor.Context, msg actorEnded) {
	e := m.sessions[msg.id]
	if e == nil || e.pid == nil || !e.pid.Equal(msg.pid) {
		return
	}
	defer m.failInflight(msg.id, e)
	var err error
	switch e.ended() {
	case phaseStopping:
		m.setStopped(msg.id, e)
		answer(e.stopReply, e.status, nil)
		e.stopReply = nil
		err = e.move(phaseIdle)
	case phaseDeleting:
		if e.stopReply != nil { // a stop that a delete overtook
			m.setStopped(msg.id, e)
			answer(e.stopReply, e.status, nil)
			e.stopReply = nil
		}
		if err = e.move(phaseRemoving); err == nil {
			m.remove(ctx, msg.id, e.deleteReply)
			e.deleteReply = nil
		}
	case phaseShuttingDown:
		m.metrics.SetSessionConnected(msg.id, false)
		err = e.move(phaseIdle)
	case phaseHandingOver:
		m.handedOver(msg.id, e)
	case phaseRunning:
		// Nobody stopped it: protoactor did, once it spent its restart
		// budget.
		e.status.State = sessions.StateFailed
		e.status.Connected, e.status.LoggedIn = false, false
		e.status.Since = time.Now()
		e.status.NextRetryAt = nil
		e.status.Error = &sessions.ErrorInfo{Code: sessions.CodeRestartBudget,
			Message: fmt.Sprintf("the session's actor kept failing (%d restarts) and was stopped: fix the cause, then restore it", e.restarts)}
		m.log.Error(fmt.Sprintf("❌ Session %s failed: restart budget spent", msg.id), "session_id", msg.id, "restarts", e.restarts)
		m.publish(msg.id, e)
		m.track(msg.id, e.status)
		err = e.move(phaseIdle)
	}
	if err != nil {
		m.log.Error("session lifecycle", "session_id", msg.id, "err", err)
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
	m.untrack(id)
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
	case e == nil:
	case e.busy():
		answer(msg.reply, sessions.CreateResult{}, sessions.WrongState(e.status.State, "session %s is being stopped or deleted: try again when it is done", msg.id))
		return
	case e.phase == phaseRunning:
		m.forward(ctx, e, startCmd{reply: msg.reply})
		return
	case e.status.State == sessions.StateStopped:
		// A directory gone meanwhile holds no stop to clear: the session
		// pairs anew, as one never created would.
		if err := m.dir.SetStopped(msg.id, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			answer(msg.reply, sessions.CreateResult{}, err)
			return
		}
	}
	e = m.spawn(ctx, msg.id, modePair, false)
	answer(msg.reply, sessions.CreateResult{Status: e.status, Created: true}, nil)
}

func (m *manager) onStop(ctx actor.Context, msg stopCmd) {
	e := m.sessions[msg.id]
	switch {
	case e == nil:
		answer(msg.reply, sessions.Status{}, sessions.ErrNotFound)
		return
	case e.busy():
		answer(msg.reply, sessions.Status{}, sessions.WrongState(e.status.State, "session %s is already being stopped or deleted", msg.id))
		return
	case e.status.State == sessions.StateStopped:
		answer(msg.reply, sessions.Status{}, sessions.WrongState(e.status.State, "session %s is already stopped", msg.id))
		return
	}
	// The marker is written first: a crash from here on still leaves the
	// session stopped at the next start.
	if err := m.dir.SetStopped(msg.id, true); err != nil {
		answer(msg.reply, sessions.Status{}, err)
		return
	}
	if e.phase == phaseIdle {
		m.setStopped(msg.id, e)
		answer(msg.reply, e.status, nil)
		return
	}
	if err := e.stop(ctx, msg.reply); err != nil {
		m.log.Error("session lifecycle", "session_id", msg.id, "err", err)
		answer(msg.reply, sessions.Status{}, sessions.WrongState(e.status.State, "session %s cannot be stopped now", msg.id))
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
		e = &entry{status: sessions.Status{SenderID: msg.id, State: sessions.StateStopped, Since: time.Now()}}
		m.sessions[msg.id] = e
	case e.phase == phaseDeleting || e.phase == phaseRemoving:
		answer(msg.reply, struct{}{}, sessions.WrongState(e.status.State, "session %s is already being deleted", msg.id))
		return
	case m.shuttingDown:
		answer(msg.reply, struct{}{}, sessions.ErrShuttingDown)
		return
	}
	var err error
	if e.phase == phaseIdle {
		if err = e.move(phaseRemoving); err == nil {
			m.remove(ctx, msg.id, msg.reply)
		}
	} else {
		err = e.delete(ctx, msg.reply)
	}
	if err != nil {
		m.log.Error("session lifecycle", "session_id", msg.id, "err", err)
		answer(msg.reply, struct{}{}, sessions.WrongState(e.status.State, "session %s cannot be deleted now", msg.id))
	}
}

// remove deletes the session's directory off the mailbox; removed finishes.
// The session has no actor and no goroutine left (phaseRemoving), so
// nothing can create the store again meanwhile.
func (m *manager) remove(ctx actor.Context, id string, rep chan<- reply[struct{}]) {
	self, send, dir := ctx.Self(), m.deps.send, m.dir
	m.deps.goroutine(func() { send(self, removed{id: id, err: dir.Remove(id), reply: rep}) })
}

func (m *manager) onRemoved(msg removed) {
	e := m.sessions[msg.id]
	if msg.err != nil {
		if e != nil {
			if err := e.move(phaseIdle); err != nil {
				m.log.Error("session lifecycle", "session_id", msg.id, "err", err)
			}
		}
		m.log.Error("delete session", "session_id", msg.id, "err", msg.err)
		answer(msg.reply, struct{}{}, msg.err)
		return
	}
	delete(m.sessions, msg.id)
	delete(m.announced, msg.id)
	m.untrack(msg.id)
	m.metrics.RemoveSession(msg.id)
	m.log.Info("session deleted", "session_id", msg.id)
	// Published before the answer: once DELETE answers, the event is in
	// the sink's order after the session's last state.
	m.announceDeleted(msg.id)
	answer(msg.reply, struct{}{}, nil)
}

// announceDeleted publishes a session.deleted event for id, which is gone
// from the fleet and the disk. Like a state event, it is not waited for.
func (m *manager) announceDeleted(id string) {
	if m.sink == nil {
		return
	}
	now := time.Now().UTC()
	data, _ := json.Marshal(sessions.DeletedData{SenderID: id, DeletedAt: now}) // a string and a time: never fails
	m.sink.Publish([]sessions.Event{{Type: sessions.EventSessionDeleted, ID: "del_" + randomHex(), Timestamp: now,
		SenderID: id, Data: data}}, nil)
}

func (m *manager) onForward(ctx actor.Context, msg forwardCmd) {
	e := m.sessions[msg.id]
	switch {
	case e == nil:
		msg.msg.failer()(sessions.ErrNotFound)
	case e.phase != phaseRunning:
		msg.msg.failer()(sessions.WrongState(e.status.State, "session %s is %s", msg.id, e.status.State))
	default:
		m.forward(ctx, e, msg.msg)
	}
}

// forward sends cmd to e's actor and remembers it until the actor has read
// it, or it can no longer be waited for.
func (m *manager) forward(ctx actor.Context, e *entry, cmd sessionCmd) {
	now := time.Now()
	m.forget(e, func(c inflightCmd) bool { return now.Sub(c.at) >= m.requestTimeout })
	e.inflight = append(e.inflight, inflightCmd{fail: cmd.failer(), seq: e.forwarded, at: now})
	e.forwarded++
	ctx.Send(e.pid, cmd)
}

// onCmdRead forgets the oldest command forwarded to the actor that read it.
func (m *manager) onCmdRead(msg cmdRead) {
	e := m.sessions[m.byPID[msg.pid.Id]]
	if e == nil || e.pid == nil || !e.pid.Equal(msg.pid) {
		return // a late report of an actor since replaced
	}
	e.read++
	m.forget(e, func(c inflightCmd) bool { return c.seq < e.read })
}

// forget drops e's remembered commands for which done holds, clearing
// their slots: the array would hold them otherwise.
func (m *manager) forget(e *entry, done func(inflightCmd) bool) {
	keep := e.inflight[:0]
	for _, c := range e.inflight {
		if !done(c) {
			keep = append(keep, c)
		}
	}
	clear(e.inflight[len(keep):])
	e.inflight = keep
}

// failInflight answers every command e's actor may have dropped, and
// starts counting again for the session's next actor.
func (m *manager) failInflight(id string, e *entry) {
	for _, c := range e.inflight {
		c.fail(sessions.WrongState(e.status.State, "session %s stopped before it could answer", id))
	}
	e.inflight, e.forwarded, e.read = nil, 0, 0
}

func (m *manager) onShutdown(ctx actor.Context, msg shutdownCmd) {
	m.shuttingDown = true
	for id, e := range m.sessions {
		if e.pid == nil {
			continue
		}
		// One already stopping for another reason is waited for too.
		m.shutdownLeft++
		if e.phase == phaseRunning {
			if err := e.shutDown(ctx); err != nil {
				m.log.Error("session lifecycle", "session_id", id, "err", err)
			}
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
		if e.phase == phaseDeleting || e.phase == phaseRemoving {
			continue
		}
		f.Sessions = append(f.Sessions, e.status)
		f.Counts[e.status.State]++
	}
	sort.Slice(f.Sessions, func(i, j int) bool { return f.Sessions[i].SenderID < f.Sessions[j].SenderID })
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
