package sessions

import "context"

// Service is what the API needs of the sessions; package actors implements
// it. Every method is bounded by ctx and returns this package's errors.
type Service interface {
	// Restore starts every stored session that is not running, or only
	// ids when given, in the background.
	Restore(ctx context.Context, ids []string) error
	// Status is one session's latest snapshot.
	Status(ctx context.Context, id string) (Status, error)
	// Fleet is every session's snapshot, with counts.
	Fleet(ctx context.Context) (Fleet, error)
	// Create creates (or starts) a session: a new one goes to pairing.
	Create(ctx context.Context, id string) (CreateResult, error)
	// Stop disconnects a session and keeps its credentials.
	Stop(ctx context.Context, id string) (Status, error)
	// Delete stops a session and removes its data.
	Delete(ctx context.Context, id string) error
	// Logout unlinks a session on WhatsApp and deletes its credentials.
	Logout(ctx context.Context, id string) (Status, error)
	// QR is the code a pairing session shows now.
	QR(ctx context.Context, id string) (QR, error)
	// PairPhone asks WhatsApp for a pairing code for phone.
	PairPhone(ctx context.Context, id, phone string) (string, error)
	// Ping checks that the service answers.
	Ping(ctx context.Context) error
}

// Inspection is what test mode needs to act as the phone: never served by
// the API in production.
type Inspection struct {
	State     State
	JID       string
	QRCode    string
	PairPhone string
	PairCode  string
}

// TestDriver acts as the phone or the network for a session (test mode
// only): action is scan, enter-code, unlink, ban, drop, replace, outdated,
// receive, read, sent or panic. It returns this package's errors.
type TestDriver interface {
	Act(ctx context.Context, id, action string, params TestParams) (any, error)
}

// TestParams are a test action's optional parameters.
type TestParams struct {
	Seconds int `json:"seconds,omitempty"` // ban: how long
	// receive: the contact's phone number, the text, and optionally the
	// ID of the message it replies to.
	From    string `json:"from,omitempty"`
	Text    string `json:"text,omitempty"`
	ReplyTo string `json:"replyTo,omitempty"`
	ID      string `json:"id,omitempty"` // read: the message the contact reads
}

// Info is what the service says about itself to an API client: whether it
// runs in test mode (a fake WhatsApp server, the test routes served).
type Info struct {
	TestMode bool `json:"testMode"`
}
