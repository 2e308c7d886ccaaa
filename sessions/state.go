// Package sessions is the domain of whatsapp-sessions: what a session is
// (its states, status and errors), what it needs from an operator, and the
// Service the API consumes. It holds no implementation: package actors runs
// the sessions, http serves the API, metrics measures them, and each of
// them imports this package rather than one another.
package sessions

import "time"

// State is where a session is in its life; DESIGN.md's table lists how each
// is left.
type State string

// The session states.
const (
	StateRestoring    State = "restoring"
	StateConnecting   State = "connecting"
	StatePairing      State = "pairing"
	StateConnected    State = "connected"
	StateReconnecting State = "reconnecting"
	StateNeedsPairing State = "needs_pairing"
	StateBanned       State = "banned"
	StateConflict     State = "conflict"
	StateFailed       State = "failed"
	StateStopped      State = "stopped"
)

// States lists every state, in DESIGN.md's order. It is the one list: the
// metrics and the OpenAPI document follow it.
var States = []State{
	StateRestoring, StateConnecting, StatePairing, StateConnected, StateReconnecting,
	StateNeedsPairing, StateBanned, StateConflict, StateFailed, StateStopped,
}

// UserAction tells an operator what, if anything, a session needs from them.
type UserAction string

// The user actions.
const (
	ActionNone    UserAction = "none"
	ActionScanQR  UserAction = "scan_qr"
	ActionRestore UserAction = "restore"
	ActionWait    UserAction = "wait"
)

// UserActions lists every user action.
var UserActions = []UserAction{ActionNone, ActionScanQR, ActionRestore, ActionWait}

// UserAction is what a session in state s needs from its operator: it
// follows from the state alone.
func (s State) UserAction() UserAction {
	switch s {
	case StatePairing, StateNeedsPairing:
		return ActionScanQR
	case StateConflict, StateFailed:
		return ActionRestore
	case StateConnected, StateStopped:
		return ActionNone
	default: // restoring, connecting, reconnecting, banned
		return ActionWait
	}
}

// ErrorInfo is why a session is not connected.
type ErrorInfo struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Status is one session's snapshot, as the API shows it. It never holds
// key material, QR or pairing codes.
type Status struct {
	SenderID        string     `json:"senderId"`
	State           State      `json:"state"`
	Connected       bool       `json:"connected"`
	LoggedIn        bool       `json:"loggedIn"`
	JID             *string    `json:"jid"`
	PushName        *string    `json:"pushName"`
	Since           time.Time  `json:"since"`
	LastConnectedAt *time.Time `json:"lastConnectedAt"`
	Restarts        int        `json:"restarts"`
	Reconnects      int        `json:"reconnects"`
	NextRetryAt     *time.Time `json:"nextRetryAt"`
	Error           *ErrorInfo `json:"error"`
	UserAction      UserAction `json:"userAction"`
	// Node is the NODE_NAME of the node running the session, in a
	// cluster (CLUSTER set); absent on a single node.
	Node string `json:"node,omitempty"`
}

// Fleet is every session's status with counts by state and the progress of
// the last restore.
type Fleet struct {
	Sessions []Status        `json:"sessions"`
	Counts   map[State]int   `json:"counts"`
	Restore  RestoreProgress `json:"restore"`
}

// RestoreProgress is how the last restore went. A session that keeps
// retrying stays pending; Finished is set once none is.
type RestoreProgress struct {
	Started      *time.Time `json:"started"`
	Finished     *time.Time `json:"finished"`
	Found        int        `json:"found"`
	Restored     int        `json:"restored"`
	NeedsPairing int        `json:"needsPairing"`
	Failed       int        `json:"failed"`
	Pending      int        `json:"pending"`
}

// QR is the code a phone scans to pair, and when it expires.
type QR struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CreateResult is the answer to a create: the status, and whether the call
// changed anything.
type CreateResult struct {
	Status  Status
	Created bool
}
