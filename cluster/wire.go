package cluster

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Messages between nodes are protobuf BytesValues (protoactor's remote
// serialises protobuf) carrying one JSON request or reply: the API's own
// JSON types travel as they are, and a new operation needs no .proto.

// The operations a request names. Per-session ones go to the session's
// grain; node ones to a node actor.
const (
	opStatus    = "status"
	opCreate    = "create"
	opStop      = "stop"
	opDelete    = "delete"
	opLogout    = "logout"
	opQR        = "qr"
	opPairPhone = "pair-phone"
	opSend      = "send"
	opMarkRead  = "mark-read"
	opAct       = "act"

	opActivate = "activate" // node: the grain for ID, activated there
	opFleet    = "fleet"    // node: its local fleet
	opRestore  = "restore"  // node: restore IDs here
	opAdopt    = "adopt"    // node: adopt IDs here
	opPing     = "ping"     // node: answers
)

// request is one call. Req correlates the reply on the caller's node;
// TimeoutMs is what is left of the caller's deadline, the callee's bound.
type request struct {
	Req       uint64          `json:"req"`
	Op        string          `json:"op"`
	ID        string          `json:"id,omitempty"`
	IDs       []string        `json:"ids,omitempty"`
	Args      json.RawMessage `json:"args,omitempty"`
	TimeoutMs int64           `json:"timeoutMs"`
}

// reply answers a request: its result, or its error.
type reply struct {
	Req    uint64          `json:"req"`
	Node   string          `json:"node"`
	Result json.RawMessage `json:"result,omitempty"`
	Err    *wireError      `json:"error,omitempty"`
}

// wireError is an error across nodes: the sentinel it wraps (by code), the
// state for a wrong-state error, and the sentence for the user.
type wireError struct {
	Code    string         `json:"code"`
	State   sessions.State `json:"state,omitempty"`
	Message string         `json:"message"`
}

// sendArgs carries what a SendRequest and a ReadRequest keep out of their
// JSON (the Idempotency-Key, the message id).
type sendArgs struct {
	Req sessions.SendRequest `json:"req"`
	Key string               `json:"key,omitempty"`
}

type readArgs struct {
	Req sessions.ReadRequest `json:"req"`
	ID  string               `json:"id"`
}

type actArgs struct {
	Action string              `json:"action"`
	Params sessions.TestParams `json:"params"`
}

// grainPID is an activated grain's address.
type grainPID struct {
	Address string `json:"address"`
	ID      string `json:"id"`
}

// errorKinds names every error a Service returns that the API maps to a
// status of its own, so that it comes back as itself on the caller's side.
var errorKinds = []struct {
	code string
	err  error
}{
	{"not_found", sessions.ErrNotFound},
	{"invalid", sessions.ErrInvalid},
	{"wrong_state", sessions.ErrWrongState},
	{"timeout", sessions.ErrTimeout},
	{"shutting_down", sessions.ErrShuttingDown},
	{"whatsapp", sessions.ErrWhatsApp},
	{"no_recipient", sessions.ErrNoRecipient},
	{"key_reused", sessions.ErrKeyReused},
	{"key_in_progress", sessions.ErrKeyInProgress},
	{"store_invalid_id", store.ErrInvalidID},
	{"store_not_found", store.ErrNotFound},
	{"store_unavailable", store.ErrUnavailable},
	{"store_corrupt", store.ErrCorrupt},
}

// encodeError is err for the wire. An error of no known kind keeps its
// words on this node's log and crosses as "internal".
func encodeError(err error) *wireError {
	if err == nil {
		return nil
	}
	we := &wireError{Code: "internal", Message: err.Error()}
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			we.Code = k.code
			break
		}
	}
	var de *sessions.Error
	if errors.As(err, &de) {
		we.State = de.State
	}
	return we
}

// decodeError is a wire error as the caller's error: a *sessions.Error of
// the same kind (so errors.Is and the API's table work as on one node), or
// an internal error naming the node.
func decodeError(node string, we *wireError) error {
	if we == nil {
		return nil
	}
	for _, k := range errorKinds {
		if k.code == we.Code {
			return &sessions.Error{Kind: k.err, State: we.State, Message: we.Message}
		}
	}
	return fmt.Errorf("node %s: %s", node, we.Message)
}

func pack(v any) *wrapperspb.BytesValue {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cluster: encode %T: %v", v, err)) // our own types always encode
	}
	return wrapperspb.Bytes(b)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cluster: encode %T: %v", v, err))
	}
	return b
}
