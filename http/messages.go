package http

import (
	"net/http"
	"net/url"

	"github.com/gorilla/mux"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// maxMessageBody caps a send's body: the longest text (sessions.MaxTextLength
// characters), each written as JSON's longest escape, fits.
const maxMessageBody = 1 << 20

// idempotencyHeader names the header that makes a send idempotent.
const idempotencyHeader = "Idempotency-Key"

// send is POST /api/whatsapp/session/{senderId}/messages: it answers once
// WhatsApp's server acknowledged the message.
func (h *handlers) send(w http.ResponseWriter, r *http.Request, id string) error {
	var req sessions.SendRequest
	if err := decodeMax(w, r, &req, maxMessageBody); err != nil {
		return err
	}
	if req.To == "" && req.Text == "" {
		return badRequest(`send a JSON body such as {"to": "+15551234567", "text": "hello"}`)
	}
	keys := r.Header.Values(idempotencyHeader)
	switch {
	case len(keys) > 1:
		return badRequest("send one Idempotency-Key header, not several")
	case len(keys) == 1 && keys[0] == "":
		return badRequest("the Idempotency-Key header is empty: leave it out, or send 1 to 255 printable ASCII characters")
	case len(keys) == 1:
		req.IdempotencyKey = keys[0]
	}
	sent, err := h.messenger.Send(r.Context(), id, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sent)
	return nil
}

// readAnswer is what marking a message read answers.
type readAnswer struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// markRead is POST /api/whatsapp/session/{senderId}/messages/{id}/read.
func (h *handlers) markRead(w http.ResponseWriter, r *http.Request, id string) error {
	var req sessions.ReadRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	msgID, err := url.PathUnescape(mux.Vars(r)["id"])
	if err != nil {
		return badRequest("the message id in the path is not a valid escaped path segment")
	}
	req.ID = msgID
	if req.Chat == "" {
		return badRequest(`send a JSON body with the message's chat, such as {"chat": "15551234567@s.whatsapp.net"}`)
	}
	if err := h.messenger.MarkRead(r.Context(), id, req); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, readAnswer{ID: msgID, Status: "read"})
	return nil
}
