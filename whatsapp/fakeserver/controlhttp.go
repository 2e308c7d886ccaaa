package fakeserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// maxControlBody caps control request bodies (a text may be 65,536
// characters); maxControlAnswer caps the answers Remote reads.
const (
	maxControlBody   = 1 << 20
	maxControlAnswer = 64 << 20
)

// The control API's request and response bodies, shared with Remote.
type (
	qrRequest struct {
		QR string `json:"qr"`
	}
	pairCodeRequest struct {
		Phone string `json:"phone"`
		Code  string `json:"code"`
	}
	jidResponse struct {
		JID string `json:"jid"`
	}
	streamErrorRequest struct {
		Kind StreamErrorKind `json:"kind"`
	}
	unlinkRequest struct {
		Device uint16 `json:"device"`
	}
	keepalivesRequest struct {
		Ignore bool `json:"ignore"`
	}
	countResponse struct {
		Count int `json:"count"`
	}
	loginFailureRequest struct {
		Reason        int `json:"reason"`
		BanCode       int `json:"banCode"`
		ExpireSeconds int `json:"expireSeconds"`
	}
	contactSendRequest struct {
		From    string `json:"from"`
		Text    string `json:"text"`
		ReplyTo string `json:"replyTo,omitempty"`
	}
	contactPrepareRequest struct {
		From string `json:"from"`
	}
	idBody struct {
		ID string `json:"id"`
	}
	sentResponse struct {
		Messages []SentMessage `json:"messages"`
	}
	receivedResponse struct {
		Messages []ReceivedMessage `json:"messages"`
	}
	connectionRecordResponse struct {
		Devices []DeviceConnections `json:"devices"`
	}
	errorBody struct {
		Error errorDetail `json:"error"`
	}
	errorDetail struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
)

// errorCodes maps Control errors to the control API's error codes and HTTP
// statuses; Remote maps the codes back.
var errorCodes = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalidArgument, "invalid_argument", http.StatusBadRequest},
	{ErrUnknownQR, "unknown_qr", http.StatusNotFound},
	{ErrNoPendingPairing, "no_pending_pairing", http.StatusNotFound},
	{ErrWrongCode, "wrong_code", http.StatusUnprocessableEntity},
	{ErrPairingInProgress, "pairing_in_progress", http.StatusConflict},
	{ErrPairingFailed, "pairing_failed", http.StatusBadGateway},
	{ErrNotOnWhatsApp, "not_on_whatsapp", http.StatusNotFound},
	{ErrNoDevice, "no_device", http.StatusNotFound},
	{ErrUnknownMessage, "unknown_message", http.StatusNotFound},
	{context.DeadlineExceeded, "timeout", http.StatusGatewayTimeout},
	{context.Canceled, "canceled", http.StatusServiceUnavailable},
}

// ControlHandler is the HTTP control API (JSON) over the server's Control
// methods, used by cmd/fakewa and Remote:
//
//	POST /scan {"qr"}                              -> {"jid"}
//	POST /pair-code {"phone","code"}               -> {"jid"}
//	POST /expire-qr {"qr"}                         -> 204
//	PUT  /devices/{user}/login-failure {"reason","banCode","expireSeconds"} -> 204
//	POST /devices/{user}/stream-error {"kind"}     -> 204
//	POST /devices/{user}/unlink {"device"}         -> 204
//	POST /devices/{user}/drop                      -> {"count"}
//	POST /drop-all                                 -> {"count"}
//	PUT  /devices/{user}/keepalives {"ignore"}     -> 204
//	GET  /devices/{user}/connections               -> {"count"}
//	GET  /stats                                    -> Stats
//	GET  /connection-record                        -> {"devices": [DeviceConnections]}
//	POST /devices/{user}/receive {"from","text","replyTo"} -> {"id"}
//	POST /devices/{user}/prepare {"from"}          -> 204
//	POST /devices/{user}/read {"id"}               -> 204
//	GET  /devices/{user}/sent                      -> {"messages": [SentMessage]}
//	GET  /devices/{user}/received                  -> {"messages": [ReceivedMessage]}
//
// Errors are {"error": {"code", "message"}} with a matching status.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	handle("POST /scan", withBody(func(w http.ResponseWriter, r *http.Request, req qrRequest) error {
		jid, err := s.ScanQR(r.Context(), req.QR)
		return answer(w, jidResponse{JID: jid}, err)
	}))
	handle("POST /pair-code", withBody(func(w http.ResponseWriter, r *http.Request, req pairCodeRequest) error {
		jid, err := s.EnterPairingCode(r.Context(), req.Phone, req.Code)
		return answer(w, jidResponse{JID: jid}, err)
	}))
	handle("POST /expire-qr", withBody(func(w http.ResponseWriter, r *http.Request, req qrRequest) error {
		return noContent(w, s.ExpireQR(r.Context(), req.QR))
	}))
	handle("PUT /devices/{user}/login-failure", withBody(func(w http.ResponseWriter, r *http.Request, req loginFailureRequest) error {
		f := LoginFailure{Reason: req.Reason, BanCode: req.BanCode, Expire: time.Duration(req.ExpireSeconds) * time.Second}
		return noContent(w, s.SetLoginFailure(r.Context(), r.PathValue("user"), f))
	}))
	handle("POST /devices/{user}/stream-error", withBody(func(w http.ResponseWriter, r *http.Request, req streamErrorRequest) error {
		return noContent(w, s.SendStreamError(r.Context(), r.PathValue("user"), req.Kind))
	}))
	handle("POST /devices/{user}/unlink", withBody(func(w http.ResponseWriter, r *http.Request, req unlinkRequest) error {
		return noContent(w, s.Unlink(r.Context(), r.PathValue("user"), req.Device))
	}))
	handle("POST /devices/{user}/drop", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.Drop(r.Context(), r.PathValue("user"))
		return answer(w, countResponse{Count: n}, err)
	})
	handle("POST /drop-all", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.DropAll(r.Context())
		return answer(w, countResponse{Count: n}, err)
	})
	handle("PUT /devices/{user}/keepalives", withBody(func(w http.ResponseWriter, r *http.Request, req keepalivesRequest) error {
		return noContent(w, s.SetIgnoreKeepalives(r.Context(), r.PathValue("user"), req.Ignore))
	}))
	handle("GET /devices/{user}/connections", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.Connections(r.Context(), r.PathValue("user"))
		return answer(w, countResponse{Count: n}, err)
	})
	handle("GET /stats", func(w http.ResponseWriter, r *http.Request) error {
		st, err := s.Stats(r.Context())
		return answer(w, st, err)
	})
	handle("GET /connection-record", func(w http.ResponseWriter, r *http.Request) error {
		devices, err := s.ConnectionRecord(r.Context())
		return answer(w, connectionRecordResponse{Devices: devices}, err)
	})
	handle("POST /devices/{user}/receive", withBody(func(w http.ResponseWriter, r *http.Request, req contactSendRequest) error {
		id, err := s.ContactSend(r.Context(), r.PathValue("user"), req.From, req.Text, req.ReplyTo)
		return answer(w, idBody{ID: id}, err)
	}))
	handle("POST /devices/{user}/prepare", withBody(func(w http.ResponseWriter, r *http.Request, req contactPrepareRequest) error {
		return noContent(w, s.ContactPrepare(r.Context(), r.PathValue("user"), req.From))
	}))
	handle("POST /devices/{user}/read", withBody(func(w http.ResponseWriter, r *http.Request, req idBody) error {
		return noContent(w, s.ContactRead(r.Context(), r.PathValue("user"), req.ID))
	}))
	handle("GET /devices/{user}/sent", func(w http.ResponseWriter, r *http.Request) error {
		msgs, err := s.Sent(r.Context(), r.PathValue("user"))
		return answer(w, sentResponse{Messages: msgs}, err)
	})
	handle("GET /devices/{user}/received", func(w http.ResponseWriter, r *http.Request) error {
		msgs, err := s.Received(r.Context(), r.PathValue("user"))
		return answer(w, receivedResponse{Messages: msgs}, err)
	})
	handle("/", func(http.ResponseWriter, *http.Request) error {
		return errNotFound
	})
	return mux
}

// errNotFound is an unknown control route.
var errNotFound = errors.New("no such control route")

// withBody adapts a handler of a request whose JSON body decodes into a T.
func withBody[T any](h func(w http.ResponseWriter, r *http.Request, req T) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req T
		r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			return fmt.Errorf("%w: request body: %w", ErrInvalidArgument, err)
		}
		return h(w, r, req)
	}
}

// noContent answers 204, or returns the call's error.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// answer writes v as a 200 JSON answer, or returns the call's error.
func answer(w http.ResponseWriter, v any, err error) error {
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// writeError writes err as the control API's JSON error and logs server
// faults.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code, status := "internal", http.StatusInternalServerError
	if errors.Is(err, errNotFound) {
		code, status = "not_found", http.StatusNotFound
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			code, status = e.code, e.status
			break
		}
	}
	if status >= 500 {
		s.log.Warn("control request failed", "route", r.Pattern, "status", status, "err", err)
	}
	_ = writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: err.Error()}})
}
