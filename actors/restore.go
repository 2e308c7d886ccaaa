package actors

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

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
		if e := m.sessions[id]; e == nil || e.phase == phaseIdle {
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
		m.log.Error("❌ Failed to read stored sessions", "err", msg.err)
		return
	}
	if m.shuttingDown {
		return
	}
	m.showStopped(msg.stopped)
	m.restoreAll(ctx, msg.ids, len(msg.stopped))
}

// showStopped lists the sessions the operator stopped, which stay stopped,
// as stopped (those not listed yet, and still on disk: one listed before
// a delete finished is gone, and listing it would bring it back).
func (m *manager) showStopped(ids []string) {
	for _, id := range ids {
		if m.sessions[id] != nil {
			continue
		}
		if ok, _ := m.dir.Exists(id); ok {
			e := &entry{status: sessions.Status{SenderID: id, State: sessions.StateStopped, Since: time.Now()}}
			m.sessions[id] = e
			m.publish(id, e)
		}
	}
}

// restoreAll starts each of ids that is not running: a new one is spawned,
// one waiting for the operator (waitsForOperator) starts over, a live one
// or one being stopped or deleted is left alone.
func (m *manager) restoreAll(ctx actor.Context, ids []string, stopped int) {
	var todo []string
	for _, id := range ids {
		e := m.sessions[id]
		switch {
		case e == nil:
			// Listed before a delete finished? Then it is gone: leave it.
			if ok, _ := m.dir.Exists(id); ok {
				todo = append(todo, id)
			}
		case e.phase == phaseIdle:
			todo = append(todo, id)
		case e.phase == phaseRunning && waitsForOperator(e.status.State):
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
		if e := m.sessions[id]; e != nil && e.phase == phaseRunning {
			m.forward(ctx, e, restartCmd{})
			continue
		}
		m.spawn(ctx, id, modeRestore, true)
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

// untrack drops id from the restore run: it was stopped or deleted before
// its restore settled.
func (m *manager) untrack(id string) {
	if m.run != nil {
		delete(m.run.pending, id)
	}
}
