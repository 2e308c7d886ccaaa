package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp"
)

// deps is what every session actor shares.
type deps struct {
	opener  whatsapp.Opener
	pacer   *Pacer
	backoff Backoff
	metrics Metrics
	log     *slog.Logger
	send    func(pid *actor.PID, msg any)
	// gate, when not nil, must grant a session's lease before its client
	// connects; a session refused one tries again every leaseRetry
	// (jittered).
	gate       Gate
	leaseRetry time.Duration
	// ownedElsewhere is Options.OwnedElsewhere.
	ownedElsewhere func(id string, refusal error) bool
	// running counts the goroutines actors started, so that Shutdown can
	// wait until none still holds a store.
	running goroutines
	// refused counts the state moves set refused: bugs, which tests
	// expect to be none.
	refused atomic.Int64
}

// goroutine runs f on its own goroutine, counted in running.
func (d *deps) goroutine(f func()) {
	d.running.add()
	go func() {
		defer d.running.done()
		f()
	}()
}

// goroutines counts running goroutines. Unlike a sync.WaitGroup it may
// gain one while someone waits for none: after a Shutdown whose deadline
// passed, sessions still stopping start goroutines (a dial closing its
// store), and a WaitGroup panics when Add meets a Wait that has not
// returned.
type goroutines struct {
	mu   sync.Mutex
	n    int
	none chan struct{} // closed once n is 0; nil while it has been 0 throughout
}

// add counts one more.
func (g *goroutines) add() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		g.none = make(chan struct{})
	}
	g.n++
}

// done counts one fewer.
func (g *goroutines) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.n == 0 {
		close(g.none)
	}
}

// idle is closed when none is running: now, or once the ones running now
// and any they start have ended.
func (g *goroutines) idle() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == 0 {
		done := make(chan struct{})
		close(done)
		return done
	}
	return g.none
}

// session is the actor of one session: it owns the session's client (and
// through it the store), runs the state machine, and reports every change
// to its parent, the manager. Slow work runs in goroutines that report back
// as messages; nothing here blocks on the network.
type session struct {
	id   string
	deps *deps
	// work counts the goroutines this actor's incarnations start; the
	// manager waits on it once the actor has terminated.
	work    *sync.WaitGroup
	mode    startMode
	restore bool // started by a restore: log the source document's lines
	log     *slog.Logger
	// lease is the session's hold on its lease, shared by the actor's
	// incarnations; nil without a Gate.
	lease *leaseHold

	st    sessions.Status
	link  *link
	timer *time.Timer
	seq   int // retry timer generation
	// awaitingLease: the retry timer is armed to ask for the lease again
	// (another node held it, or this node lost it).
	awaitingLease bool
	// toldHolder is the refusal the holder's node was told of (its text
	// names the holder), so that it is told once, not at every retry.
	toldHolder  string
	attempts    int // consecutive failed attempts, for the backoff
	connectedAt time.Time
	qr          sessions.QR
	pairPhone   string
	pairCode    string
	panicked    string
	// storeFailing: the store refused a write and has not accepted one
	// since. Its error stays in the status whatever else happens, until a
	// write succeeds or the store is closed.
	storeFailing *sessions.ErrorInfo
}

func newSession(id string, d *deps, work *sync.WaitGroup, mode startMode, restore bool) *session {
	return &session{id: id, deps: d, work: work, mode: mode, restore: restore, log: d.log.With("session_id", id)}
}

// Receive is the actor's one type switch.
func (s *session) Receive(ctx actor.Context) {
	defer func() {
		// Remember why we panic, for the restart report; protoactor
		// catches the panic again and restarts this actor.
		if r := recover(); r != nil {
			s.panicked = fmt.Sprint(r)
			panic(r)
		}
	}()
	if _, ok := ctx.Message().(sessionCmd); ok {
		// Every command reaches the actor through the manager's forward,
		// which remembers it until this report.
		ctx.Send(ctx.Parent(), cmdRead{pid: ctx.Self()})
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.start(ctx)
	case *actor.Stopping:
		s.teardown()
	case *actor.Restarting:
		// Report first: closing the client may take a while.
		ctx.Send(ctx.Parent(), sessionRestarted{id: s.id, reason: s.panicked})
		s.teardown()
	case dialing:
		s.onDialing(ctx, m)
	case dialed:
		s.onDialed(ctx, m)
	case clientEvent:
		if m.link == s.link {
			s.onEvent(ctx, m.ev)
		}
	case retryDue:
		s.onRetryDue(ctx, m)
	case leaseRefused:
		s.onLeaseRefused(ctx, m)
	case leaseLost:
		s.onLeaseLost(ctx)
	case qrReq:
		s.onQR(m)
	case pairPhoneCmd:
		s.onPairPhone(ctx, m)
	case pairPhoneDone:
		s.onPairPhoneDone(m)
	case logoutCmd:
		s.onLogout(ctx, m)
	case logoutDone:
		s.onLogoutDone(ctx, m)
	case startCmd:
		s.onStart(ctx, m)
	case restartCmd:
		s.onRestart(ctx)
	case sendCmd:
		s.onSend(ctx, m)
	case sendDone:
		s.onSendDone(m)
	case markReadCmd:
		s.onMarkRead(ctx, m)
	case markReadDone:
		s.onMarkReadDone(m)
	case inspectReq:
		answer(m.reply, sessions.Inspection{State: s.st.State, JID: deref(s.st.JID), QRCode: s.qr.Code, PairPhone: s.pairPhone, PairCode: s.pairCode}, nil)
	case panicCmd:
		answer(m.reply, struct{}{}, nil)
		panic("injected panic (test mode)")
	case goroutinePanicked:
		panic(fmt.Sprintf("session goroutine panicked: %v", m.value))
	}
}

// start begins the session's life: open the store, then connect or pair.
func (s *session) start(ctx actor.Context) {
	// Counters and history carry over when a session starts again, and
	// so does the account until the store says it has none; the state
	// stays until set checks the move.
	s.st = sessions.Status{SenderID: s.id, State: s.st.State, Reconnects: s.st.Reconnects, LastConnectedAt: s.st.LastConnectedAt,
		JID: s.st.JID, PushName: s.st.PushName}
	if s.restore {
		s.log.Info(fmt.Sprintf("🔄 Restoring session for %s from storage...", s.id))
	}
	s.set(ctx, sessions.StateRestoring, nil)
	s.dial(ctx)
}

// dial opens the store if the link has no client yet, then connects a
// paired device or, in pair mode, starts pairing an unpaired one. It holds
// one of the pacer's slots throughout and waits for its rate right before
// dialing, so restores and reconnects stay under both limits. With a Gate,
// it takes the session's lease before every dial, and does not dial
// without it (leaseRefused).
func (s *session) dial(ctx actor.Context) {
	if s.link == nil {
		s.link = newLink()
	}
	l, pid, d, id, hold := s.link, ctx.Self(), s.deps, s.id, s.lease
	pair := s.mode == modePair // pair mode also creates the store
	emit := func(ev whatsapp.Event) { d.send(pid, clientEvent{link: l, ev: ev}) }
	s.goSafe(l, pid, func() {
		release, err := d.pacer.Slot(l.ctx)
		if err != nil {
			return // the link was closed while waiting
		}
		defer release()
		c := l.get()
		if c == nil {
			c, err = d.opener.Open(l.ctx, id, pair, emit)
			if err != nil {
				d.send(pid, dialed{link: l, err: err})
				return
			}
			if !l.adopt(c) {
				return
			}
		}
		if !c.Paired() && !pair {
			d.send(pid, dialed{link: l})
			return
		}
		if hold != nil {
			if err := hold.acquire(l); err != nil {
				if l.ctx.Err() == nil {
					d.send(pid, leaseRefused{link: l, err: err})
				}
				return
			}
		}
		// Sent before the wait for the rate, so that nothing comes
		// between the token and the dial; and before any of the
		// client's events.
		d.send(pid, dialing{link: l})
		if err := d.pacer.Dial(l.ctx); err != nil {
			return // the link was closed while waiting
		}
		if c.Paired() {
			d.send(pid, dialed{link: l, paired: true, jid: c.JID(), err: c.Connect(l.ctx)})
		} else {
			d.send(pid, dialed{link: l, err: c.StartPairing(l.ctx)})
		}
	})
}

// goSafe runs f on link l in a goroutine whose panic comes back as a
// message rather than killing the process.
func (s *session) goSafe(l *link, pid *actor.PID, f func()) {
	send, work := s.deps.send, s.work
	work.Add(1)
	s.deps.goroutine(func() {
		defer work.Done()
		defer func() {
			if r := recover(); r != nil {
				send(pid, goroutinePanicked{value: r})
			}
		}()
		f()
	})
}

// onDialing: the store is open and the session dials WhatsApp as soon as
// the rate allows.
func (s *session) onDialing(ctx actor.Context, m dialing) {
	if m.link != s.link {
		return
	}
	switch {
	case s.st.State == sessions.StateRestoring:
		s.set(ctx, sessions.StateConnecting, nil)
	case s.st.Error != nil && s.st.Error.Code == sessions.CodeOwnedElsewhere:
		s.set(ctx, sessions.StateConnecting, nil) // the lease is ours now
	}
}

// onLeaseRefused: the Gate did not grant the lease (another node holds it,
// or the lease store did not answer); the session shows connecting with
// why, and asks again after the lease retry interval.
func (s *session) onLeaseRefused(ctx actor.Context, m leaseRefused) {
	if m.link != s.link {
		return
	}
	info := &sessions.ErrorInfo{Code: sessions.CodeOwnedElsewhere,
		Message: "another node holds this session (" + m.err.Error() + "): waiting to take it over"}
	if !errors.Is(m.err, sessions.ErrOwnedElsewhere) {
		info = &sessions.ErrorInfo{Code: sessions.CodeStoreUnavailable,
			Message: "could not take the session's lease (" + m.err.Error() + "): trying again"}
	} else if tell := s.deps.ownedElsewhere; tell != nil && m.err.Error() != s.toldHolder && tell(s.id, m.err) {
		s.toldHolder = m.err.Error()
	}
	s.awaitLease(ctx, info, retryAfter(m.err))
}

// retryAfter is when a refused lease can be asked for again, if err says
// (a lease whose holder stopped renewing runs out then, not before), else
// zero. Asking before that costs the database a query per waiting
// session per retry interval: thousands a second after a node dies.
func retryAfter(err error) time.Duration {
	var hint interface{ RetryAfter() time.Duration }
	if errors.As(err, &hint) {
		return hint.RetryAfter()
	}
	return 0
}

// onLeaseLost: this node no longer holds the session's lease (it could not
// renew it in time, or another node has it): the client disconnects at
// once, and the session waits to take the lease again.
func (s *session) onLeaseLost(ctx actor.Context) {
	if s.link == nil {
		return // nothing connected; a pending retry asks for the lease anyway
	}
	s.deps.metrics.SessionDisconnected(s.id, sessions.ReasonLeaseLost)
	s.closeLink()
	s.log.Warn("lease lost: disconnected")
	s.awaitLease(ctx, &sessions.ErrorInfo{Code: sessions.CodeOwnedElsewhere,
		Message: "this node lost the session's lease, so it disconnected: waiting to take the lease again"}, 0)
}

// awaitLease shows the session waiting for its lease (connecting, or
// reconnecting where the state table does not allow connecting) and arms
// the timer that asks again: after the lease retry interval, or just after
// the given delay when that is later (spread over a retry interval, so that the
// sessions of a dead node do not all ask at the same instant).
func (s *session) awaitLease(ctx actor.Context, info *sessions.ErrorInfo, after time.Duration) {
	state := sessions.StateConnecting
	if !allowed(s.st.State, state) {
		state = sessions.StateReconnecting
	}
	wait := scatter(s.deps.leaseRetry)
	if after > 0 {
		wait = max(wait, after+rand.N(s.deps.leaseRetry))
	}
	s.schedule(ctx, wait)
	s.awaitingLease = true
	s.set(ctx, state, info)
}

func (s *session) onDialed(ctx actor.Context, m dialed) {
	if m.link != s.link {
		return
	}
	if m.err != nil && s.link.get() == nil {
		// The store could not be opened: not retried, never deleted.
		s.closeLink()
		if errors.Is(m.err, store.ErrNoStore) {
			s.set(ctx, sessions.StateNeedsPairing, &sessions.ErrorInfo{Code: sessions.CodeStoreMissing,
				Message: "the session's directory holds no store, so its credentials are gone: create the session again to pair it"})
			return
		}
		code := sessions.CodeStoreUnavailable
		switch {
		case errors.Is(m.err, store.ErrCorrupt):
			code = sessions.CodeStoreCorrupt
		case errors.Is(m.err, store.ErrNotFound):
			code = sessions.CodeStoreMissing
		}
		s.set(ctx, sessions.StateFailed, &sessions.ErrorInfo{Code: code, Message: m.err.Error()})
		return
	}
	s.toldHolder = "" // the lease is this node's (or not needed) now
	if m.paired && m.jid != "" {
		// The account is known from the store before it logs in, and
		// stays shown while the session retries.
		s.st.JID = ptr(m.jid)
	} else if !m.paired {
		s.st.JID, s.st.PushName = nil, nil
	}
	// A dial that ends well changes nothing: the client's events (a
	// login, a QR code) move the state on.
	switch {
	case m.paired && m.err != nil:
		if s.st.State == sessions.StateConnecting {
			s.retry(ctx, sessions.CodeDialFailed, m.err.Error())
		}
	case m.paired:
	case s.mode == modePair && m.err != nil:
		// WhatsApp did not answer: a network failure, not a verdict on
		// the pairing. Retry with a fresh client, as a paired session
		// does; the session needs pairing only once WhatsApp has
		// answered and the codes ran out.
		s.closeLink()
		s.retry(ctx, sessions.CodeDialFailed, m.err.Error())
	case s.mode == modePair:
		// WhatsApp answered; the session shows pairing once the first
		// QR code is there (the QRCode event), so that a status saying
		// pairing always has a code to fetch.
	default:
		s.closeLink()
		s.set(ctx, sessions.StateNeedsPairing, &sessions.ErrorInfo{Code: sessions.CodeNotPaired, Message: "the store holds no paired device: create the session to pair it"})
	}
}

func (s *session) onEvent(ctx actor.Context, ev whatsapp.Event) {
	now := time.Now()
	switch e := ev.(type) {
	case whatsapp.Connected:
		s.connectedAt = now
		s.stopTimer()
		s.st.LastConnectedAt = &now
		s.st.JID = ptr(e.JID)
		if e.PushName != "" {
			s.st.PushName = ptr(e.PushName)
		}
		s.qr = sessions.QR{}
		s.set(ctx, sessions.StateConnected, nil)
	case whatsapp.Disconnected:
		if s.st.State == sessions.StateConnected || s.st.State == sessions.StateConnecting {
			s.disconnected(ctx, lostConnection, "", nil)
		}
	case whatsapp.LoggedOut:
		var info *sessions.ErrorInfo
		if e.DeleteFailed != "" {
			// WhatsApp refuses these keys now, so the next login fails
			// again and deletes them then; say what is left on the disk.
			s.log.Error("logged out: credentials not deleted", "err", e.DeleteFailed)
			info = &sessions.ErrorInfo{Code: sessions.CodeStoreWriteFailed, Message: fmt.Sprintf(
				"WhatsApp ended this login (%s), but its credentials could not be deleted (%s): free disk space, then pair or delete the session", e.Reason, e.DeleteFailed)}
		}
		s.disconnected(ctx, loggedOut, e.Reason, info)
	case whatsapp.StreamReplaced:
		s.disconnected(ctx, replaced, "", nil)
	case whatsapp.TemporaryBan:
		s.schedule(ctx, max(e.Expire, s.deps.backoff.Min))
		s.disconnected(ctx, banned, e.Reason, nil)
	case whatsapp.ClientOutdated:
		s.disconnected(ctx, outdated, "", nil)
	case whatsapp.ConnectFailure:
		s.disconnected(ctx, loginFailed, strconv.Itoa(e.Reason), nil)
	case whatsapp.StreamError:
		s.st.Error = &sessions.ErrorInfo{Code: sessions.CodeStreamError, Message: "stream error " + e.Code}
		s.publish(ctx)
	case whatsapp.QRCode:
		s.qr = sessions.QR{Code: e.Code, ExpiresAt: now.Add(e.Timeout)}
		if s.st.State != sessions.StatePairing {
			s.set(ctx, sessions.StatePairing, nil)
		}
	case whatsapp.PairSuccess:
		s.qr = sessions.QR{}
		s.st.JID = ptr(e.JID)
		s.set(ctx, sessions.StateConnecting, nil)
	case whatsapp.PairingEnded:
		switch e.Result {
		case "success":
		case "timeout":
			s.closeLink()
			s.set(ctx, sessions.StateNeedsPairing, &sessions.ErrorInfo{Code: sessions.CodeQRTimeout,
				Message: "no QR code was scanned in time: create the session again for new codes"})
		default:
			s.closeLink()
			msg := "pairing failed"
			if e.Err != nil {
				msg += ": " + e.Err.Error()
			}
			s.set(ctx, sessions.StateNeedsPairing, &sessions.ErrorInfo{Code: sessions.CodePairingFailed, Message: msg})
		}
	case whatsapp.StoreWriteFailed:
		// The session keeps running (whatsmeow carries on), but what it
		// could not save is lost: say so until writes succeed again.
		s.deps.metrics.SessionStoreWriteFailed(s.id)
		s.storeFailing = &sessions.ErrorInfo{Code: sessions.CodeStoreWriteFailed, Message: "the session's store refused a write (" + e.Err + "): free disk space or fix permissions"}
		s.st.Error = s.storeFailing
		s.log.Error("store write failed", "err", e.Err)
		s.publish(ctx)
	case whatsapp.StoreWriteRecovered:
		s.storeFailing = nil
		if s.st.Error != nil && s.st.Error.Code == sessions.CodeStoreWriteFailed {
			s.st.Error = nil
		}
		s.log.Info("store writes succeed again")
		s.publish(ctx)
	case whatsapp.PushNameChanged:
		if e.Name != "" {
			s.st.PushName = ptr(e.Name)
			s.publish(ctx)
		}
	case whatsapp.MessageReceived:
		s.deps.metrics.SessionMessage(s.id, sessions.DirectionIn)
	case whatsapp.KeepAliveTimeout:
		s.log.Warn("keepalive pings unanswered")
	case whatsapp.KeepAliveRestored:
		s.log.Info("keepalive restored")
	}
}

// retry schedules the next attempt after a transient failure, by the
// backoff, and shows when it will be.
func (s *session) retry(ctx actor.Context, code sessions.Code, msg string) {
	if !s.connectedAt.IsZero() && time.Since(s.connectedAt) >= s.deps.backoff.Reset {
		s.attempts = 0 // it was healthy long enough: start the backoff over
	}
	s.connectedAt = time.Time{}
	s.attempts++
	s.schedule(ctx, s.deps.backoff.Delay(s.attempts, nil))
	s.set(ctx, sessions.StateReconnecting, &sessions.ErrorInfo{Code: code, Message: msg})
}

// schedule arms the retry timer; the state set next shows nextRetryAt.
func (s *session) schedule(ctx actor.Context, d time.Duration) {
	s.stopTimer()
	s.seq++
	l, seq, pid, send := s.link, s.seq, ctx.Self(), s.deps.send
	s.timer = time.AfterFunc(d, func() { send(pid, retryDue{link: l, seq: seq}) })
	next := time.Now().Add(d)
	s.st.NextRetryAt = &next
}

func (s *session) onRetryDue(ctx actor.Context, m retryDue) {
	if m.link != s.link || m.seq != s.seq {
		return
	}
	if s.awaitingLease {
		s.timer, s.awaitingLease = nil, false
		s.dial(ctx)
		return
	}
	if s.st.State != sessions.StateReconnecting && s.st.State != sessions.StateBanned {
		return
	}
	s.timer = nil
	s.st.Reconnects++
	s.deps.metrics.SessionReconnected(s.id)
	s.set(ctx, sessions.StateConnecting, s.st.Error)
	s.dial(ctx)
}

func (s *session) onQR(m qrReq) {
	if s.st.State != sessions.StatePairing || s.qr.Code == "" {
		m.failer()(sessions.WrongState(s.st.State, "session %s is %s, not pairing: no QR code to show", s.id, s.st.State))
		return
	}
	answer(m.reply, s.qr, nil)
}

func (s *session) onPairPhone(ctx actor.Context, m pairPhoneCmd) {
	c := s.clientIf(sessions.StatePairing)
	if c == nil || s.qr.Code == "" {
		m.failer()(sessions.WrongState(s.st.State, "session %s is %s: a pairing code needs a session that is pairing (create it first)", s.id, s.st.State))
		return
	}
	l, pid, send := s.link, ctx.Self(), s.deps.send
	s.goSafe(l, pid, func() {
		code, err := c.PairPhone(l.ctx, m.phone)
		send(pid, pairPhoneDone{link: l, phone: m.phone, code: code, err: err, reply: m.reply})
	})
}

func (s *session) onPairPhoneDone(m pairPhoneDone) {
	if m.err != nil {
		answer(m.reply, "", fmt.Errorf("%w: request pairing code: %v", sessions.ErrWhatsApp, m.err))
		return
	}
	if m.link == s.link {
		s.pairPhone, s.pairCode = m.phone, m.code
	}
	answer(m.reply, m.code, nil)
}

func (s *session) onLogout(ctx actor.Context, m logoutCmd) {
	s.whileConnected(ctx, m.failer(), "logout needs a connected session, since WhatsApp must unlink the device (DELETE removes a session in any state)",
		func(c whatsapp.Client, l *link) any {
			return logoutDone{link: l, err: c.Logout(l.ctx), reply: m.reply}
		})
}

// whileConnected runs work on the connected session's client, off the
// mailbox, and sends the message work returns back to the actor; a session
// that is not connected fails with needs, the sentence saying why.
func (s *session) whileConnected(ctx actor.Context, fail func(error), needs string, work func(c whatsapp.Client, l *link) any) {
	c := s.clientIf(sessions.StateConnected)
	if c == nil {
		fail(sessions.WrongState(s.st.State, "session %s is %s: %s", s.id, s.st.State, needs))
		return
	}
	l, pid, send := s.link, ctx.Self(), s.deps.send
	s.goSafe(l, pid, func() { send(pid, work(c, l)) })
}

func (s *session) onLogoutDone(ctx actor.Context, m logoutDone) {
	var info *sessions.ErrorInfo // the verdict's own
	var err error
	switch {
	case errors.Is(m.err, whatsapp.ErrUnlinkedNotDeleted):
		// The device is gone on WhatsApp, so the session is logged out,
		// but its (now useless) credentials are still in the store: say
		// so, to the caller and in the status.
		info = &sessions.ErrorInfo{Code: sessions.CodeStoreWriteFailed, Message: m.err.Error() + ": free disk space, then pair or delete the session"}
		err = fmt.Errorf("%w: logout: %v", store.ErrUnavailable, m.err)
		s.log.Error("logout: credentials not deleted", "err", m.err)
	case errors.Is(m.err, whatsapp.ErrNotConnected):
		answer(m.reply, sessions.Status{}, sessions.WrongState(s.st.State, "session %s lost its connection: logout needs WhatsApp to unlink the device", s.id))
		return
	case m.err != nil:
		answer(m.reply, sessions.Status{}, fmt.Errorf("%w: logout: %v", sessions.ErrWhatsApp, m.err))
		return
	}
	if m.link == s.link {
		s.disconnected(ctx, operatorLogout, "", info)
	}
	answer(m.reply, s.st, err)
}

// onSend sends a message through a connected session's client, off the
// mailbox; sendDone answers.
func (s *session) onSend(ctx actor.Context, m sendCmd) {
	s.whileConnected(ctx, m.failer(), "sending needs a connected session", func(c whatsapp.Client, l *link) any {
		wctx, cancel := l.bound(m.ctx)
		defer cancel()
		sent, err := c.Send(wctx, m.out)
		return sendDone{link: l, sent: sent, err: err, reply: m.reply}
	})
}

func (s *session) onSendDone(m sendDone) {
	if m.err != nil {
		answer(m.reply, sessions.SentMessage{}, s.opErr(m.link, "sending", m.err))
		return
	}
	s.deps.metrics.SessionMessage(s.id, sessions.DirectionOut)
	answer(m.reply, m.sent, nil)
}

// onMarkRead sends a read receipt through a connected session's client,
// off the mailbox; markReadDone answers.
func (s *session) onMarkRead(ctx actor.Context, m markReadCmd) {
	s.whileConnected(ctx, m.failer(), "marking a message read needs a connected session", func(c whatsapp.Client, l *link) any {
		wctx, cancel := l.bound(m.ctx)
		defer cancel()
		return markReadDone{link: l, err: c.MarkRead(wctx, m.chat, m.ids), reply: m.reply}
	})
}

func (s *session) onMarkReadDone(m markReadDone) {
	answer(m.reply, struct{}{}, s.opErr(m.link, "marking a message read", m.err))
}

// opErr is the error of an operation (what) a client made on link l, in
// the sessions package's terms.
func (s *session) opErr(l *link, what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, whatsapp.ErrNotConnected) || l.ctx.Err() != nil || l != s.link:
		return sessions.WrongState(s.st.State, "session %s lost its connection while %s: try again once it is connected", s.id, what)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: %v", sessions.ErrTimeout, what, err)
	}
	return err
}

// onStart handles a create for a session that already has an actor: one
// that is waiting for the operator starts over in pair mode; a live one is
// left alone.
func (s *session) onStart(ctx actor.Context, m startCmd) {
	if waitsForOperator(s.st.State) {
		s.mode, s.restore = modePair, false
		s.closeLink()
		s.start(ctx)
		answer(m.reply, sessions.CreateResult{Status: s.st, Created: true}, nil)
		return
	}
	answer(m.reply, sessions.CreateResult{Status: s.st}, nil)
}

// onRestart handles a restore for a session that already has an actor.
func (s *session) onRestart(ctx actor.Context) {
	if waitsForOperator(s.st.State) {
		s.mode, s.restore = modeRestore, true
		s.closeLink()
		s.start(ctx)
	}
}

// clientIf returns the client when the session is in state and has one.
func (s *session) clientIf(state sessions.State) whatsapp.Client {
	if s.st.State != state || s.link == nil {
		return nil
	}
	return s.link.get()
}

// set moves to state and reports the new snapshot to the manager. A move
// the transitions table does not allow is a bug: it is refused and logged,
// and the session stays where it is.
func (s *session) set(ctx actor.Context, state sessions.State, e *sessions.ErrorInfo) {
	if s.enter(state, e) {
		s.publish(ctx)
	}
}

// enter is set without the report: it moves the snapshot to state, and
// reports whether the move was allowed.
func (s *session) enter(state sessions.State, e *sessions.ErrorInfo) bool {
	prev := s.st.State
	if !allowed(prev, state) {
		s.deps.refused.Add(1)
		s.log.Error("session state: move refused", "from", prev, "to", state)
		return false
	}
	if prev != state {
		s.st.Since = time.Now()
	}
	s.st.State = state
	if e == nil && s.storeFailing != nil && s.link != nil {
		e = s.storeFailing // a state change does not fix the disk
	}
	s.st.Error = e
	s.st.UserAction = state.UserAction()
	s.st.Connected = state == sessions.StateConnected
	s.st.LoggedIn = state == sessions.StateConnected
	if state != sessions.StateReconnecting && state != sessions.StateBanned {
		s.st.NextRetryAt = nil
	}
	if state != sessions.StatePairing {
		s.qr = sessions.QR{}
	}
	if prev != state {
		attrs := []any{"from", prev, "to", state}
		if e != nil {
			attrs = append(attrs, "code", e.Code, "reason", e.Message)
		}
		if s.st.NextRetryAt != nil {
			attrs = append(attrs, "next_retry_in", time.Until(*s.st.NextRetryAt).Round(time.Millisecond))
		}
		s.log.Info("session state", attrs...)
	}
	return true
}

func (s *session) publish(ctx actor.Context) {
	ctx.Send(ctx.Parent(), statusUpdate{pid: ctx.Self(), status: s.st})
}

func (s *session) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.seq++
	s.awaitingLease = false
}

// closeLink disconnects the client and closes the store, then releases
// the session's lease if the link holds it; results still on their way
// from the old link are ignored.
func (s *session) closeLink() {
	s.stopTimer()
	if s.link != nil {
		l := s.link
		if err := l.close(); err != nil {
			s.log.Warn("close store", "err", err)
		}
		s.link = nil
		s.storeFailing = nil // the next opening watches its own writes
		s.releaseLease(l)
	}
}

// releaseLease frees the lease l holds, off the mailbox. It is counted in
// the actor's work, so a stop or hand-over is answered only once the lease
// is free.
func (s *session) releaseLease(l *link) {
	hold, work, log := s.lease, s.work, s.log
	if hold == nil {
		return
	}
	work.Add(1)
	s.deps.goroutine(func() {
		defer work.Done()
		defer func() {
			if r := recover(); r != nil {
				log.Error("release lease: panic", "panic", r)
			}
		}()
		if err := hold.release(l); err != nil {
			log.Warn("lease not released", "err", err)
		}
	})
}

// teardown runs when the actor stops or restarts: nothing it owned may
// outlive it.
func (s *session) teardown() {
	s.closeLink()
}

func ptr[T any](v T) *T { return &v }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
