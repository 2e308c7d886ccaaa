package actors

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The manager's side of a cluster: adopting stored sessions another node
// no longer hosts, handing sessions over to another node, and the sessions
// whose leases the node lost.

// adoptable: the stored sessions of an adoptCmd, read off the mailbox.
type adoptable struct {
	ids     []string
	stopped []string
	err     error
}

// onAdopt reads which of msg.ids are stored (and stopped) off the mailbox;
// adoptable hosts them. Already hosted and unknown ids are left out.
func (m *manager) onAdopt(ctx actor.Context, msg adoptCmd) {
	if m.shuttingDown {
		answer(msg.reply, struct{}{}, sessions.ErrShuttingDown)
		return
	}
	want := make(map[string]bool, len(msg.ids))
	for _, id := range msg.ids {
		if m.sessions[id] == nil {
			want[id] = true
		}
	}
	answer(msg.reply, struct{}{}, nil)
	if len(want) == 0 {
		return
	}
	self, send, dir := ctx.Self(), m.deps.send, m.dir
	m.deps.goroutine(func() {
		stored, err := dir.Discover()
		var a adoptable
		a.err = err
		for _, s := range stored {
			switch {
			case !want[s.ID]:
			case s.Stopped:
				a.stopped = append(a.stopped, s.ID)
			default:
				a.ids = append(a.ids, s.ID)
			}
		}
		send(self, a)
	})
}

// onAdoptable hosts the sessions as the start-up restore would: a stopped
// one shown stopped, the others restored through the pacer. A session that
// became hosted meanwhile (a create, say) is left alone.
func (m *manager) onAdoptable(ctx actor.Context, msg adoptable) {
	if msg.err != nil {
		m.log.Error("adopt sessions: read stored sessions", "err", msg.err)
		return
	}
	if m.shuttingDown {
		return
	}
	m.showStopped(msg.stopped)
	ids := slices.DeleteFunc(msg.ids, func(id string) bool { return m.sessions[id] != nil })
	if len(ids) > 0 {
		m.log.Info("adopting sessions", "count", len(ids), "stopped", len(msg.stopped))
		m.restoreAll(ctx, ids, 0)
	}
}

// onHandover stops hosting msg.ids: a running session's actor ends
// (disconnect, close the store, release the lease) and the session is
// forgotten; an idle one is forgotten at once. Unknown ids, and sessions
// being stopped or deleted, are left alone. The reply waits for every
// actor to end.
func (m *manager) onHandover(ctx actor.Context, msg handoverCmd) {
	h := &handover{reply: msg.reply}
	for _, id := range msg.ids {
		e := m.sessions[id]
		switch {
		case e == nil:
		case e.phase == phaseIdle:
			m.handedOver(id, e)
		case e.phase == phaseRunning:
			if err := e.handOver(ctx, h); err != nil {
				m.log.Error("session lifecycle", "session_id", id, "err", err)
			}
		}
	}
	if h.left == 0 {
		answer(msg.reply, struct{}{}, nil)
	}
}

// handedOver forgets session id, which another node hosts from now on: no
// stop is recorded and no session.deleted event published (the session
// lives on), only this node's series of it go.
func (m *manager) handedOver(id string, e *entry) {
	m.failInflight(id, e)
	delete(m.sessions, id)
	delete(m.announced, id)
	m.untrack(id)
	m.metrics.RemoveSession(id)
	m.metrics.SessionHandedOver()
	m.log.Info("session handed over", "session_id", id)
	if h := e.handover; h != nil {
		e.handover = nil
		h.left--
		if h.left == 0 {
			answer(h.reply, struct{}{}, nil)
		}
	}
}

// hosted lists the sessions this manager hosts (running or shown stopped
// or failed), sorted; ones being deleted or handed over are not.
func (m *manager) hosted() []string {
	ids := make([]string, 0, len(m.sessions))
	for id, e := range m.sessions {
		switch e.phase {
		case phaseDeleting, phaseRemoving, phaseHandingOver:
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// onLeasesLost tells each running session among msg.ids to disconnect.
func (m *manager) onLeasesLost(ctx actor.Context, msg leasesLostCmd) {
	for _, id := range msg.ids {
		if e := m.sessions[id]; e != nil && e.pid != nil {
			ctx.Send(e.pid, leaseLost{})
		}
	}
}
