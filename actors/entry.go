package actors

import (
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// phase is where the manager is with one session's actor. It is the one
// fact the manager's decisions read; the session's state (in its status)
// is what the session actor reports.
type phase int

const (
	// phaseIdle: no actor runs and none of its goroutines is left
	// (stopped, failed for good, or never started).
	phaseIdle phase = iota
	// phaseRunning: the actor runs; commands are forwarded to it.
	phaseRunning
	// phaseStopping: an operator stop; the actor is ending, and the stop
	// is answered once its goroutines have too.
	phaseStopping
	// phaseDeleting: the actor is ending; its directory is removed once
	// its goroutines have too.
	phaseDeleting
	// phaseRemoving: no actor; the directory is being removed.
	phaseRemoving
	// phaseShuttingDown: the service stops; the actor is ending.
	phaseShuttingDown
	// phaseHandingOver: another node takes the session; the actor is
	// ending, and the manager forgets the session once it has (and its
	// lease is released).
	phaseHandingOver
)

var phaseNames = [...]string{"idle", "running", "stopping", "deleting", "removing", "shutting down", "handing over"}

func (p phase) String() string { return phaseNames[p] }

// phaseMoves lists, for each phase, the phases it may move to. Every change
// of phase goes through entry.move, which checks it here.
var phaseMoves = map[phase][]phase{
	phaseIdle:     {phaseRunning, phaseRemoving},
	phaseRunning:  {phaseIdle, phaseStopping, phaseDeleting, phaseShuttingDown, phaseHandingOver},
	phaseStopping: {phaseIdle, phaseDeleting},
	phaseDeleting: {phaseRemoving},
	// A removal that failed leaves the session idle, its directory (what
	// is left of it) still listed.
	phaseRemoving:     {phaseIdle},
	phaseShuttingDown: {phaseIdle},
	// A hand-over ends with the entry forgotten; idle only in between.
	phaseHandingOver: {phaseIdle},
}

// entry is the manager's record of one session.
type entry struct {
	phase  phase
	status sessions.Status
	// pid and work are the actor's, from spawn until ended: work counts
	// the goroutines its incarnations started, so that nothing touches
	// the store once the manager has seen them end.
	pid  *actor.PID
	work *sync.WaitGroup
	// restarts and reconnectsCarry survive the actor's restarts, which
	// start its own counters from zero.
	restarts        int
	reconnectsCarry int
	stopReply       chan<- reply[sessions.Status]
	deleteReply     chan<- reply[struct{}]
	// handover is the hand-over batch waiting for this session's end.
	handover *handover
	// inflight are commands forwarded to the actor that it may not have
	// read yet: an actor that stops drops what is left in its mailbox, so
	// the manager fails them then (a command already answered keeps its
	// first answer). The actor reports each command it reads, in the order
	// it was forwarded (a mailbox is first in, first out): forwarded and
	// read count them, and a command whose number is below read is
	// forgotten.
	inflight        []inflightCmd
	forwarded, read uint64
}

type inflightCmd struct {
	fail func(error) // the command's failer
	seq  uint64      // its number among the commands forwarded to this actor
	at   time.Time
}

// move changes e's phase, if phaseMoves allows it. A refused move is a bug
// in the manager: the phase stays, and the error says which move it was.
func (e *entry) move(to phase) error {
	for _, p := range phaseMoves[e.phase] {
		if p == to {
			e.phase = to
			return nil
		}
	}
	return fmt.Errorf("session %s: no move from phase %s to %s", e.status.SenderID, e.phase, to)
}

// busy reports whether e's actor is being stopped or its directory
// removed: the session takes no command until that is done.
func (e *entry) busy() bool {
	switch e.phase {
	case phaseStopping, phaseDeleting, phaseRemoving, phaseShuttingDown, phaseHandingOver:
		return true
	}
	return false
}

// spawned records e's new actor.
func (e *entry) spawned(pid *actor.PID, work *sync.WaitGroup) error {
	if err := e.move(phaseRunning); err != nil {
		return err
	}
	e.pid, e.work = pid, work
	return nil
}

// stop asks for e's actor to end for an operator stop; rep is answered
// when it has.
func (e *entry) stop(ctx actor.Context, rep chan<- reply[sessions.Status]) error {
	if err := e.move(phaseStopping); err != nil {
		return err
	}
	e.stopReply = rep
	ctx.Stop(e.pid)
	return nil
}

// delete asks for e's actor to end (one being stopped keeps ending) so
// that its directory can be removed; rep is answered once it is.
func (e *entry) delete(ctx actor.Context, rep chan<- reply[struct{}]) error {
	wasRunning := e.phase == phaseRunning
	if err := e.move(phaseDeleting); err != nil {
		return err
	}
	e.deleteReply = rep
	if wasRunning {
		ctx.Stop(e.pid)
	}
	return nil
}

// shutDown asks for e's actor to end because the service stops.
func (e *entry) shutDown(ctx actor.Context) error {
	if err := e.move(phaseShuttingDown); err != nil {
		return err
	}
	ctx.Stop(e.pid)
	return nil
}

// handOver asks for e's actor to end because another node takes the
// session; h counts it.
func (e *entry) handOver(ctx actor.Context, h *handover) error {
	if err := e.move(phaseHandingOver); err != nil {
		return err
	}
	e.handover = h
	h.left++
	ctx.Stop(e.pid)
	return nil
}

// handover is one Release call: answered once left is back to zero.
type handover struct {
	left  int
	reply chan<- reply[struct{}]
}

// ended forgets e's actor, whose goroutines have all ended, and returns
// the phase it ended in; the caller moves e on from there.
func (e *entry) ended() phase {
	e.pid, e.work = nil, nil
	return e.phase
}
