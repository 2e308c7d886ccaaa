package http

import (
	"cmp"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// Error is a client error with its own status, code and sentence.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

func badRequest(msg string) error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: msg}
}

// errorBody is the JSON every error response carries.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// errorStatuses is the one table from an error to its status and code,
// tried in order: the first row whose error the error wraps wins. msg, when
// set, replaces the error's words.
var errorStatuses = []struct {
	err    error
	status int
	code   string
	msg    string
}{
	{err: store.ErrInvalidID, status: http.StatusBadRequest, code: "invalid_id"},
	{err: sessions.ErrInvalid, status: http.StatusBadRequest, code: "bad_request"},
	{err: sessions.ErrNoRecipient, status: http.StatusNotFound, code: "recipient_not_found", msg: "the recipient is not on WhatsApp"},
	{err: sessions.ErrKeyReused, status: http.StatusUnprocessableEntity, code: "idempotency_key_reused",
		msg: "this Idempotency-Key was used with a different request: use a new key for a new request"},
	{err: sessions.ErrKeyInProgress, status: http.StatusConflict, code: "idempotency_in_progress",
		msg: "a request with this Idempotency-Key is still being sent: retry once it has answered"},
	{err: sessions.ErrNotFound, status: http.StatusNotFound, code: "not_found"},
	{err: store.ErrNotFound, status: http.StatusNotFound, code: "not_found"},
	{err: sessions.ErrWrongState, status: http.StatusConflict, code: "wrong_state"},
	{err: sessions.ErrTimeout, status: http.StatusGatewayTimeout, code: "timeout", msg: "the session did not answer in time; try again"},
	{err: sessions.ErrWhatsApp, status: http.StatusBadGateway, code: "whatsapp_error"},
	{err: sessions.ErrOwnedElsewhere, status: http.StatusServiceUnavailable, code: "owned_elsewhere",
		msg: "another node holds this session; try again"},
	{err: sessions.ErrShuttingDown, status: http.StatusServiceUnavailable, code: "shutting_down"},
	{err: store.ErrUnavailable, status: http.StatusInternalServerError, code: "store_error"},
	{err: store.ErrCorrupt, status: http.StatusInternalServerError, code: "store_error"},
}

// mapError is the one place errors become statuses: an *Error carries its
// own, any other error goes through errorStatuses, and one it does not list
// is an internal error whose words stay in the log.
func mapError(err error) (status int, code, msg string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Status, e.Code, e.Message
	}
	for _, row := range errorStatuses {
		if errors.Is(err, row.err) {
			return row.status, row.code, cmp.Or(row.msg, userMessage(err))
		}
	}
	return http.StatusInternalServerError, "internal", "internal error"
}

// userMessage is the sentence a domain error carries for the user, or else
// the error's own words.
func userMessage(err error) string {
	if de, ok := errors.AsType[*sessions.Error](err); ok {
		return de.Message
	}
	return err.Error()
}

// writeError writes err as JSON; only server errors are logged, since a
// client's mistake is not the operator's problem.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, code, msg := mapError(err)
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "route", routeTemplate(r), "status", status, "err", err)
	}
	var body errorBody
	body.Error.Code, body.Error.Message = code, msg
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="whatsapp-sessions"`)
		// A client without the key gets no keep-alive connection to hold.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, status, body)
}

// writeJSON writes v as the JSON body. < > & are written as they are, not
// as \u003c escapes: the body is JSON, never HTML.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
