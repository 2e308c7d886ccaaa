package http

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	qrcode "github.com/skip2/go-qrcode"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/store"
)

// The source document's exact texts.
const (
	restoreMessage = "Session restoration initiated successfully"
	restoreNote    = "Sessions are being restored in the background. Check individual session statuses for progress."
)

type handlers struct {
	sessions  sessions.Service
	messenger sessions.Messenger
	log       *slog.Logger
	test      sessions.TestDriver
	ready     func() bool
	// deliveries serves the webhook deliveries' routes (deliveries.go).
	deliveries sessions.Deliveries
	// events serves the live event stream (events.go), heartbeat apart.
	events    EventStream
	heartbeat time.Duration
}

// handlerFunc is a handler that returns its error for wrap to write.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (h *handlers) wrap(f handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			writeError(w, r, h.log, err)
		}
	})
}

// senderID is the route's id, validated before it goes anywhere.
func senderID(r *http.Request) (string, error) {
	id := mux.Vars(r)["senderId"]
	if err := store.ValidateID(id); err != nil {
		return "", err
	}
	return id, nil
}

// decode reads an optional JSON body into v, a pointer to a struct:
// capped, sent as application/json, one object only, every key one of v's
// fields exactly and only once. An empty body leaves v as it is.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeMax(w, r, v, maxBody)
}

// decodeMax is decode with a cap of limit bytes.
func decodeMax(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large",
				Message: fmt.Sprintf("request body is larger than %d bytes", limit)}
		}
		return badRequest("could not read the request body")
	}
	if len(body) == 0 {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "send the request body as JSON with the header Content-Type: application/json"}
	}
	if len(bytes.Trim(body, jsonSpace)) == 0 {
		return nil
	}
	if trimmed := bytes.TrimLeft(body, jsonSpace); trimmed[0] != '{' {
		return badRequest("invalid JSON body: it must be an object")
	}
	if err := checkKeys(body, jsonFields(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: " + err.Error())
	}
	if rest := bytes.Trim(body[dec.InputOffset():], jsonSpace); len(rest) > 0 {
		return badRequest("invalid JSON body: unexpected data after the object")
	}
	return nil
}

// checkKeys refuses what encoding/json would let through loosely: it
// matches keys without regard to case and keeps the last of duplicates, so
// {"senderIds":["a"],"SENDERIDS":["../x"]} would read as one list. Every
// key of the object must be one of fields, exactly, once. A syntax error is
// left for the decoder to report.
func checkKeys(body []byte, fields []string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if seen[key] {
			return badRequest(fmt.Sprintf("invalid JSON body: key %q appears more than once", key))
		}
		seen[key] = true
		if !slices.Contains(fields, key) {
			for _, f := range fields {
				if strings.EqualFold(f, key) {
					return badRequest(fmt.Sprintf("invalid JSON body: unknown key %q: keys are case-sensitive, use %q", key, f))
				}
			}
			return badRequest(fmt.Sprintf("invalid JSON body: unknown key %q: use %s", key, quoteAll(fields)))
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// jsonFields lists the JSON names of the fields of the struct v points to.
func jsonFields(v any) []string {
	t := reflect.TypeOf(v).Elem()
	var names []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, " or ")
}

// jsonSpace is the white space JSON allows between tokens.
const jsonSpace = " \t\r\n"

func (h *handlers) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (h *handlers) readyz(w http.ResponseWriter, r *http.Request) error {
	if !h.ready() {
		return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: "start-up restore not dispatched yet"}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := h.sessions.Ping(ctx); err != nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready", Message: "session manager does not answer: " + err.Error()}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// restoreRequest is the optional body of a restore. senderIds stays raw
// so that null is told apart from absent: null must not mean "everything".
type restoreRequest struct {
	SenderIDs json.RawMessage `json:"senderIds"`
}

func (h *handlers) restore(w http.ResponseWriter, r *http.Request) error {
	var req restoreRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var ids []string
	if req.SenderIDs != nil {
		if err := json.Unmarshal(req.SenderIDs, &ids); err != nil || ids == nil {
			return badRequest("senderIds must be a list of senderIds: omit it to restore every stored session")
		}
		if len(ids) == 0 {
			return badRequest("senderIds is empty: omit it to restore every stored session")
		}
	}
	for _, id := range ids {
		if err := store.ValidateID(id); err != nil {
			return err
		}
	}
	// A senderId named twice is restored once (and named once in a 404).
	ids = dedupe(ids)
	if err := h.sessions.Restore(r.Context(), ids); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"message": restoreMessage, "note": restoreNote})
	return nil
}

// dedupe drops repeated ids, keeping the first of each in order.
func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// forSession names id in a not-found error, so that the 404 says which
// session is unknown; an error with its own sentence keeps it.
func forSession(id string, err error) error {
	var own *sessions.Error
	if errors.As(err, &own) {
		return err
	}
	if errors.Is(err, sessions.ErrNotFound) || errors.Is(err, store.ErrNotFound) {
		return sessions.Errorf(sessions.ErrNotFound, "session not found: %s", id)
	}
	return err
}

// info tells a client (the console) what this service is: in test mode
// it offers the test routes.
func (h *handlers) info(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, sessions.Info{TestMode: h.test != nil})
	return nil
}

func (h *handlers) fleet(w http.ResponseWriter, r *http.Request) error {
	f, err := h.sessions.Fleet(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, f)
	return nil
}

// statusOf is a route that calls call on the session it names and answers
// with the session's status: status, stop and logout.
func (h *handlers) statusOf(call func(sessions.Service, context.Context, string) (sessions.Status, error)) handlerFunc {
	return onSession(func(w http.ResponseWriter, r *http.Request, id string) error {
		st, err := call(h.sessions, r.Context(), id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, st)
		return nil
	})
}

// onSession is a route on the session its path names: f gets the checked
// senderId, and a not-found error f returns names that session.
func onSession(f func(w http.ResponseWriter, r *http.Request, id string) error) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := senderID(r)
		if err != nil {
			return err
		}
		return forSession(id, f(w, r, id))
	}
}

// create answers 202 when it started the session, 200 when the session
// already ran and nothing changed.
func (h *handlers) create(w http.ResponseWriter, r *http.Request, id string) error {
	res, err := h.sessions.Create(r.Context(), id)
	if err != nil {
		return err
	}
	code := http.StatusAccepted
	if !res.Created {
		code = http.StatusOK
	}
	writeJSON(w, code, res.Status)
	return nil
}

func (h *handlers) delete(w http.ResponseWriter, r *http.Request, id string) error {
	if err := h.sessions.Delete(r.Context(), id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session deleted", "senderId": id})
	return nil
}

// qr serves the current code as JSON, or as a PNG a phone can scan
// (?format=png or Accept: image/png).
func (h *handlers) qr(w http.ResponseWriter, r *http.Request, id string) error {
	code, err := h.sessions.QR(r.Context(), id)
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	if format == "png" || (format == "" && strings.Contains(r.Header.Get("Accept"), "image/png")) {
		png, err := qrcode.Encode(code.Code, qrcode.Medium, 320)
		if err != nil {
			return fmt.Errorf("encode QR PNG: %w", err)
		}
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(png)
		return nil
	}
	if format != "" && format != "json" {
		return badRequest("format must be json or png")
	}
	writeJSON(w, http.StatusOK, code)
	return nil
}

// phoneNumber is an international number: digits only once spaces, dashes,
// dots and brackets are gone, 7 to 15 of them, not starting with 0.
var phoneNumber = regexp.MustCompile(`^\+?[1-9][0-9]{6,14}$`)

type pairPhoneRequest struct {
	Phone string `json:"phone"`
}

func (h *handlers) pairPhone(w http.ResponseWriter, r *http.Request, id string) error {
	var req pairPhoneRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	phone := strings.NewReplacer(" ", "", "-", "", ".", "", "(", "", ")", "").Replace(req.Phone)
	if !phoneNumber.MatchString(phone) {
		return badRequest(`phone must be an international number such as "+15551234567" (country code first, 7 to 15 digits)`)
	}
	code, err := h.sessions.PairPhone(r.Context(), id, strings.TrimPrefix(phone, "+"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"code": code})
	return nil
}

// testSent is GET .../test/session/{id}/sent: what the session sent that
// fake contacts decrypted.
func (h *handlers) testSent(w http.ResponseWriter, r *http.Request, id string) error {
	out, err := h.test.Act(r.Context(), id, "sent", sessions.TestParams{})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handlers) testAction(w http.ResponseWriter, r *http.Request, id string) error {
	var p sessions.TestParams
	if err := decode(w, r, &p); err != nil {
		return err
	}
	out, err := h.test.Act(r.Context(), id, mux.Vars(r)["action"], p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
