package sessions

import (
	"errors"
	"fmt"
)

// Code says why a session is not connected, in its status's error.
type Code string

// The codes a status's error can carry.
const (
	CodeStoreCorrupt     Code = "store_corrupt"
	CodeStoreUnavailable Code = "store_unavailable"
	CodeStoreMissing     Code = "store_missing"
	CodeStoreWriteFailed Code = "store_write_failed"
	CodeNotPaired        Code = "not_paired"
	CodeDialFailed       Code = "dial_failed"
	CodeDisconnected     Code = "disconnected"
	CodeLoggedOut        Code = "logged_out"
	CodeStreamReplaced   Code = "stream_replaced"
	CodeTemporaryBan     Code = "temporary_ban"
	CodeClientOutdated   Code = "client_outdated"
	CodeConnectFailure   Code = "connect_failure"
	CodeStreamError      Code = "stream_error"
	CodeQRTimeout        Code = "qr_timeout"
	CodePairingFailed    Code = "pairing_failed"
	CodePanic            Code = "panic"
	CodeRestartBudget    Code = "restart_budget_spent"
	CodeOwnedElsewhere   Code = "owned_elsewhere"
)

// Errors a Service returns; the API maps each to a status in one table.
var (
	// ErrNotFound: no such session (or test action).
	ErrNotFound = errors.New("session not found")
	// ErrInvalid: the request itself is malformed.
	ErrInvalid = errors.New("invalid request")
	// ErrWrongState: the session's state does not allow the request.
	ErrWrongState = errors.New("wrong state")
	// ErrTimeout: a session did not answer in time.
	ErrTimeout = errors.New("timed out waiting for the session")
	// ErrShuttingDown: the service is stopping.
	ErrShuttingDown = errors.New("service is shutting down")
	// ErrWhatsApp: WhatsApp refused or did not answer a request.
	ErrWhatsApp = errors.New("WhatsApp did not accept the request")
	// ErrOwnedElsewhere: another node holds the session's lease, so this
	// node may not connect it.
	ErrOwnedElsewhere = errors.New("session is connected by another node")
)

// Error is one of the sentinels above with a sentence for the user, shown
// instead of the sentinel's own words; State is set when the session's
// state was the reason (Kind ErrWrongState).
type Error struct {
	Kind    error
	State   State
	Message string
}

// Errorf is an *Error of kind, its message formatted.
func Errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// WrongState is an *Error of kind ErrWrongState for a session in state s.
func WrongState(s State, format string, args ...any) error {
	return &Error{Kind: ErrWrongState, State: s, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Message }

// Unwrap makes errors.Is(err, e.Kind) true.
func (e *Error) Unwrap() error { return e.Kind }

// Codes lists every code.
var Codes = []Code{
	CodeStoreCorrupt, CodeStoreUnavailable, CodeStoreMissing, CodeStoreWriteFailed, CodeNotPaired,
	CodeDialFailed, CodeDisconnected, CodeLoggedOut, CodeStreamReplaced, CodeTemporaryBan,
	CodeClientOutdated, CodeConnectFailure, CodeStreamError, CodeQRTimeout, CodePairingFailed,
	CodePanic, CodeRestartBudget, CodeOwnedElsewhere,
}
