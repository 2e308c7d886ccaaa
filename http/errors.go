package http

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
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

// mapError is the one place errors become statuses.
func mapError(err error) (status int, code, msg string) {
	var e *Error
	var se *actors.StateError
	switch {
	case errors.As(err, &e):
		return e.Status, e.Code, e.Message
	case errors.Is(err, store.ErrInvalidID):
		return http.StatusBadRequest, "invalid_id", err.Error()
	case errors.Is(err, actors.ErrSessionNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found", err.Error()
	case errors.As(err, &se):
		return http.StatusConflict, "wrong_state", se.Message
	case errors.Is(err, actors.ErrWrongState):
		return http.StatusConflict, "wrong_state", err.Error()
	case errors.Is(err, actors.ErrTimeout):
		return http.StatusGatewayTimeout, "timeout", "the session did not answer in time; try again"
	case errors.Is(err, actors.ErrWhatsApp):
		return http.StatusBadGateway, "whatsapp_error", err.Error()
	case errors.Is(err, actors.ErrShuttingDown):
		return http.StatusServiceUnavailable, "shutting_down", err.Error()
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrCorrupt):
		return http.StatusInternalServerError, "store_error", err.Error()
	default:
		return http.StatusInternalServerError, "internal", "internal error"
	}
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
