package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// reply carries an answer back to an asker waiting on a buffered channel
// of one: the first answer wins, the sender never blocks, and a late or
// second answer is dropped.
type reply[T any] struct {
	val T
	err error
}

func answer[T any](ch chan<- reply[T], v T, err error) {
	if ch == nil {
		return
	}
	select {
	case ch <- reply[T]{val: v, err: err}:
	default:
	}
}

// startMode is what a session actor does when it starts.
type startMode int

const (
	// modeRestore connects a paired store; an unpaired one needs pairing.
	modeRestore startMode = iota
	// modePair connects a paired store and pairs an unpaired one.
	modePair
)

// Commands to the manager (from Manager's methods).
type (
	restoreCmd struct {
		ids   []string // nil: every stored session not stopped
		reply chan<- reply[struct{}]
	}
	statusReq struct {
		id    string
		reply chan<- reply[sessions.Status]
	}
	fleetReq  struct{ reply chan<- reply[sessions.Fleet] }
	createCmd struct {
		id    string
		reply chan<- reply[sessions.CreateResult]
	}
	stopCmd struct {
		id    string
		reply chan<- reply[sessions.Status]
	}
	deleteCmd struct {
		id    string
		reply chan<- reply[struct{}]
	}
	shutdownCmd struct{ reply chan<- reply[struct{}] }
	pingReq     struct{ reply chan<- reply[struct{}] }
	// adoptCmd hosts stored sessions no session of this manager is yet.
	adoptCmd struct {
		ids   []string
		reply chan<- reply[struct{}]
	}
	// handoverCmd ends the hosting of sessions, for another node to take
	// them; answered once each has disconnected and released its lease.
	handoverCmd struct {
		ids   []string
		reply chan<- reply[struct{}]
	}
	hostedReq struct{ reply chan<- reply[[]string] }
	// leasesLostCmd: the node no longer holds these sessions' leases.
	leasesLostCmd struct{ ids []string }
	// forwardCmd is a command for a running session's actor.
	forwardCmd struct {
		id  string
		msg sessionCmd
	}
)

// Manager-internal messages.
type (
	discovered struct {
		ids     []string
		stopped []string
		err     error
	}
	removed struct {
		id    string
		err   error
		reply chan<- reply[struct{}]
	}
	// sessionRestarted: a session actor is being restarted after a panic.
	sessionRestarted struct {
		id     string
		reason string
	}
	// actorEnded: a session's actor has terminated and every goroutine it
	// started has ended.
	actorEnded struct {
		id  string
		pid *actor.PID
	}
	// statusUpdate: a session actor's new snapshot; pid tells a live
	// actor's snapshot from a late one of an actor already replaced.
	statusUpdate struct {
		pid    *actor.PID
		status sessions.Status
	}
	// cmdRead: a session actor has read the oldest command the manager
	// forwarded to it that it had not read yet.
	cmdRead struct{ pid *actor.PID }
)

// sessionCmd is a command the manager forwards to a session actor. failer
// returns what answers it with an error (when there is no actor to forward
// to, or the actor cannot do it): a function that holds the command's
// reply channel alone, so that the manager can keep it while the actor may
// not have read the command. Keeping the command itself would keep its
// payload and the asker's context (for a send, the whole HTTP request)
// alive that long.
type sessionCmd interface {
	failer() func(error)
}

// failWith fails, with the zero value and the error given, whoever waits
// on ch.
func failWith[T any](ch chan<- reply[T]) func(error) {
	return func(err error) {
		var zero T
		answer(ch, zero, err)
	}
}

// Commands to a session actor.
type (
	qrReq        struct{ reply chan<- reply[sessions.QR] }
	pairPhoneCmd struct {
		phone string
		reply chan<- reply[string]
	}
	logoutCmd struct{ reply chan<- reply[sessions.Status] }
	startCmd  struct {
		reply chan<- reply[sessions.CreateResult]
	}
	restartCmd struct{}
	panicCmd   struct{ reply chan<- reply[struct{}] }
	inspectReq struct {
		reply chan<- reply[sessions.Inspection]
	}
	// sendCmd sends a message; ctx is the asker's, so that the send ends
	// when the asker stops waiting.
	sendCmd struct {
		ctx   context.Context
		out   whatsapp.Outgoing
		reply chan<- reply[sessions.SentMessage]
	}
	markReadCmd struct {
		ctx   context.Context
		chat  string
		ids   []string
		reply chan<- reply[struct{}]
	}
)

func (c qrReq) failer() func(error)        { return failWith(c.reply) }
func (c pairPhoneCmd) failer() func(error) { return failWith(c.reply) }
func (c logoutCmd) failer() func(error)    { return failWith(c.reply) }
func (c startCmd) failer() func(error)     { return failWith(c.reply) }
func (restartCmd) failer() func(error)     { return func(error) {} } // nobody waits for it
func (c panicCmd) failer() func(error)     { return failWith(c.reply) }
func (c inspectReq) failer() func(error)   { return failWith(c.reply) }
func (c sendCmd) failer() func(error)      { return failWith(c.reply) }
func (c markReadCmd) failer() func(error)  { return failWith(c.reply) }

// Session-actor internal messages. Each carries the link it belongs to, so
// a result from a link the actor has since closed is ignored.
type (
	// dialing: the store is open and the goroutine dials WhatsApp as soon
	// as the rate allows.
	dialing struct{ link *link }
	dialed  struct {
		link   *link
		err    error
		paired bool
		jid    string // the stored device's, when paired
	}
	clientEvent struct {
		link *link
		ev   whatsapp.Event
	}
	// leaseRefused: the Gate did not grant the lease, so the link did not
	// dial.
	leaseRefused struct {
		link *link
		err  error
	}
	retryDue struct {
		link *link
		seq  int
	}
	pairPhoneDone struct {
		link  *link
		phone string
		code  string
		err   error
		reply chan<- reply[string]
	}
	logoutDone struct {
		link  *link
		err   error
		reply chan<- reply[sessions.Status]
	}
	sendDone struct {
		link  *link
		sent  sessions.SentMessage
		err   error
		reply chan<- reply[sessions.SentMessage]
	}
	markReadDone struct {
		link  *link
		err   error
		reply chan<- reply[struct{}]
	}
	// leaseLost: the node lost the session's lease: disconnect at once.
	leaseLost struct{}
	// goroutinePanicked: a goroutine the actor started panicked; the actor
	// panics in turn so its supervisor restarts it.
	goroutinePanicked struct{ value any }
)
