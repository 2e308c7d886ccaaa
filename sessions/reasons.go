package sessions

// Reason is why a session lost its connection, as the metrics count it.
type Reason string

// The disconnect reasons.
const (
	ReasonNetwork     Reason = "network"
	ReasonLoggedOut   Reason = "logged_out"
	ReasonReplaced    Reason = "replaced"
	ReasonBanned      Reason = "banned"
	ReasonOutdated    Reason = "outdated"
	ReasonServerError Reason = "server_error"
	ReasonStopped     Reason = "stopped"
	// ReasonLeaseLost: the node could not renew the session's lease, so it
	// disconnected the session before another node could take it.
	ReasonLeaseLost Reason = "lease_lost"
	// ReasonOther stands for any value outside this list, which keeps the
	// metrics' series bounded.
	ReasonOther Reason = "other"
)

// Reasons lists every disconnect reason.
var Reasons = []Reason{
	ReasonNetwork, ReasonLoggedOut, ReasonReplaced, ReasonBanned,
	ReasonOutdated, ReasonServerError, ReasonStopped, ReasonLeaseLost, ReasonOther,
}

// RestoreResult is how one session's restore from storage ended.
type RestoreResult string

// The restore results, as RestoreProgress counts them.
const (
	ResultRestored     RestoreResult = "restored"
	ResultNeedsPairing RestoreResult = "needs_pairing"
	ResultFailed       RestoreResult = "failed"
)

// RestoreResults lists every restore result.
var RestoreResults = []RestoreResult{ResultRestored, ResultNeedsPairing, ResultFailed}

// Direction is which way a message went.
type Direction string

// The message directions.
const (
	DirectionIn  Direction = "in"
	DirectionOut Direction = "out"
)
