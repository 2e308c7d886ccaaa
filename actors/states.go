package actors

import (
	"fmt"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// The session state machine's rules, in one place: which moves a session
// actor may make (transitions), what each of WhatsApp's verdicts does to a
// session (verdicts), and which states wait for the operator.

// transitions is the README's table of session states: for each state, the
// states a session actor may move it to. "" is a new actor, before its
// first state. A move to the same state (a new error, say) is always
// allowed. The moves the manager makes are not the actor's, and not in
// here: an operator stop (any state to stopped), a restart after a panic
// (any state to restoring) and a spent restart budget (any state to
// failed).
var transitions = map[sessions.State][]sessions.State{
	"": {sessions.StateRestoring},
	// Opening the store; connecting once it dials.
	sessions.StateRestoring: {sessions.StateConnecting, sessions.StateNeedsPairing, sessions.StateFailed},
	sessions.StateConnecting: {sessions.StateConnected, sessions.StatePairing, sessions.StateReconnecting,
		sessions.StateNeedsPairing, sessions.StateBanned, sessions.StateConflict, sessions.StateFailed},
	sessions.StatePairing: {sessions.StateConnecting, sessions.StateReconnecting,
		sessions.StateNeedsPairing, sessions.StateBanned, sessions.StateConflict, sessions.StateFailed},
	sessions.StateConnected: {sessions.StateReconnecting,
		sessions.StateNeedsPairing, sessions.StateBanned, sessions.StateConflict, sessions.StateFailed},
	// Retried at nextRetryAt; WhatsApp's verdict on the last attempt may
	// still arrive meanwhile.
	sessions.StateReconnecting: {sessions.StateConnecting,
		sessions.StateNeedsPairing, sessions.StateBanned, sessions.StateConflict, sessions.StateFailed},
	// Retried when the ban expires.
	sessions.StateBanned: {sessions.StateConnecting,
		sessions.StateNeedsPairing, sessions.StateConflict, sessions.StateFailed},
	// The operator's create or restore starts these over.
	sessions.StateNeedsPairing: {sessions.StateRestoring},
	sessions.StateConflict:     {sessions.StateRestoring},
	sessions.StateFailed:       {sessions.StateRestoring},
}

// allowed reports whether transitions allows a session actor to move from
// one state to another.
func allowed(from, to sessions.State) bool {
	if from == to {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// waitsForOperator reports whether a session in state s stays there until
// the operator creates or restores it again.
func waitsForOperator(s sessions.State) bool {
	switch s {
	case sessions.StateNeedsPairing, sessions.StateFailed, sessions.StateConflict:
		return true
	}
	return false
}

// disconnect names a way a session loses its connection.
type disconnect int

const (
	lostConnection disconnect = iota // the socket closed
	loginFailed                      // a login failure WhatsApp does not explain
	loggedOut                        // WhatsApp ended the login (device removed, 401, 403)
	operatorLogout                   // the operator logged the session out
	replaced                         // another client uses these keys
	banned                           // a temporary ban
	outdated                         // WhatsApp refuses this client version
)

// verdict is what a disconnect does to a session: its next state, the
// error its status shows, and the reason the metrics count. A message with
// %s takes the event's detail.
type verdict struct {
	state   sessions.State
	code    sessions.Code
	message string
	reason  sessions.Reason
}

// verdicts is the one table of disconnects. A reconnecting verdict is
// retried by the backoff, a banned one when the ban expires; the others
// close the client and wait for the operator, and a needs_pairing one
// forgets the account, whose credentials are gone.
var verdicts = map[disconnect]verdict{
	lostConnection: {sessions.StateReconnecting, sessions.CodeDisconnected,
		"connection to WhatsApp lost", sessions.ReasonNetwork},
	loginFailed: {sessions.StateReconnecting, sessions.CodeConnectFailure,
		"login failed with reason %s", sessions.ReasonServerError},
	loggedOut: {sessions.StateNeedsPairing, sessions.CodeLoggedOut,
		"WhatsApp ended this login (%s): create the session again to pair it", sessions.ReasonLoggedOut},
	operatorLogout: {sessions.StateNeedsPairing, sessions.CodeLoggedOut,
		"logged out by the operator: create the session again to pair it", sessions.ReasonLoggedOut},
	replaced: {sessions.StateConflict, sessions.CodeStreamReplaced,
		"another client logged in with this session's keys: stop it, then restore this session", sessions.ReasonReplaced},
	banned: {sessions.StateBanned, sessions.CodeTemporaryBan,
		"temporarily banned by WhatsApp (%s); retrying when the ban expires", sessions.ReasonBanned},
	outdated: {sessions.StateFailed, sessions.CodeClientOutdated,
		"WhatsApp refuses this client version: upgrade the service, then restore", sessions.ReasonOutdated},
}

// info is v's error, with detail in its message.
func (v verdict) info(detail string) *sessions.ErrorInfo {
	msg := v.message
	if strings.Contains(msg, "%s") {
		msg = fmt.Sprintf(msg, detail)
	}
	return &sessions.ErrorInfo{Code: v.code, Message: msg}
}

// disconnected applies d's verdict: it counts the disconnect, then retries,
// or (for a ban) waits for the retry the caller armed, or closes the client
// for good. info, when not nil, is shown instead of the verdict's error.
func (s *session) disconnected(ctx actor.Context, d disconnect, detail string, info *sessions.ErrorInfo) {
	v := verdicts[d]
	if info == nil {
		info = v.info(detail)
	}
	s.deps.metrics.SessionDisconnected(s.id, v.reason)
	switch v.state {
	case sessions.StateReconnecting:
		s.retry(ctx, info.Code, info.Message)
		return
	case sessions.StateBanned:
		// The client stays: the caller armed the retry for when the ban
		// expires.
	default:
		s.closeLink()
	}
	if v.state == sessions.StateNeedsPairing {
		s.st.JID, s.st.PushName = nil, nil
	}
	s.set(ctx, v.state, info)
}
