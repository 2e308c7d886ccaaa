// Package client is a typed Go client for the whatsapp-sessions REST API
// (http/openapi.json): every route, with contexts and the API key. An
// error the API answers is an *Error carrying its HTTP status and the
// API's error code; errors.Is matches it against the sessions package's
// sentinels (sessions.ErrNotFound, sessions.ErrWrongState, ...).
//
//	c := client.New("http://127.0.0.1:8080", os.Getenv("API_KEY"))
//	st, err := c.Status(ctx, "alice")
//	if errors.Is(err, sessions.ErrNotFound) { ... }
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// Client calls one service. It is safe for concurrent use.
type Client struct {
	base string
	key  string
	hc   *http.Client
}

// New is a client of the service at baseURL ("http://host:port") that
// sends apiKey as a bearer token, over an HTTP client like
// http.DefaultClient whose idle connections close after IdleConnTimeout.
func New(baseURL, apiKey string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), key: apiKey, hc: defaultHTTPClient}
}

// IdleConnTimeout is how long New's HTTP client keeps an idle keep-alive
// connection: less than the service's 30 s (http.IdleTimeout), so that the
// client closes it first. With a longer one (Go's default transport keeps
// them 90 s) a request sent on a connection just as the service closes it
// fails with EOF, and a POST without an Idempotency-Key is not retried.
const IdleConnTimeout = 20 * time.Second

// defaultHTTPClient is http.DefaultClient with IdleConnTimeout.
var defaultHTTPClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.IdleConnTimeout = IdleConnTimeout
	return &http.Client{Transport: t}
}()

// WithHTTPClient is a copy of c that sends its requests through hc (for
// timeouts, connection pools, transports).
func (c *Client) WithHTTPClient(hc *http.Client) *Client {
	cp := *c
	cp.hc = hc
	return &cp
}

// BaseURL is the service's address as given to New.
func (c *Client) BaseURL() string { return c.base }

// Error is an error the API answered: its HTTP status and its error code
// and message ({"error": {"code", "message"}}).
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// codeErrors maps the API's error codes to the sentinels they come from.
var codeErrors = map[string]error{
	"not_found":      sessions.ErrNotFound,
	"bad_request":    sessions.ErrInvalid,
	"invalid_id":     sessions.ErrInvalid,
	"wrong_state":    sessions.ErrWrongState,
	"timeout":        sessions.ErrTimeout,
	"whatsapp_error": sessions.ErrWhatsApp,
	"shutting_down":  sessions.ErrShuttingDown,

	"recipient_not_found":     sessions.ErrNoRecipient,
	"idempotency_key_reused":  sessions.ErrKeyReused,
	"idempotency_in_progress": sessions.ErrKeyInProgress,
}

// Is makes errors.Is(err, sessions.ErrNotFound) (and the other sentinels)
// true for the code the API maps that sentinel to.
func (e *Error) Is(target error) bool {
	s, ok := codeErrors[e.Code]
	return ok && s == target
}

// Response is a raw answer, for callers probing the API beyond its typed
// methods.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends one request with the API key (and Content-Type:
// application/json when body is not empty) plus header, and returns the
// answer whatever its status. Only a transport failure is an error.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, header http.Header) (*Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if len(body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// call sends in (JSON, if not nil), expects a 2xx, and decodes the answer
// into out (if not nil). It returns the status.
func (c *Client) call(ctx context.Context, method, path string, in, out any) (int, error) {
	return c.callWith(ctx, method, path, in, out, nil)
}

// callWith is call with header added to the request.
func (c *Client) callWith(ctx context.Context, method, path string, in, out any, header http.Header) (int, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return 0, err
		}
	}
	resp, err := c.Do(ctx, method, path, body, header)
	if err != nil {
		return 0, err
	}
	if resp.Status/100 != 2 {
		return resp.Status, apiError(resp)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp.Status, fmt.Errorf("%s %s: decode the answer: %w", method, path, err)
		}
	}
	return resp.Status, nil
}

// apiError is the *Error an answer carries, or one made from its status.
func apiError(resp *Response) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e := &Error{Status: resp.Status}
	if json.Unmarshal(resp.Body, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, body.Error.Message
	} else {
		e.Code, e.Message = "http_"+fmt.Sprint(resp.Status), http.StatusText(resp.Status)
	}
	return e
}

func sessionPath(id string, rest ...string) string {
	return "/api/whatsapp/session/" + strings.Join(append([]string{url.PathEscape(id)}, rest...), "/")
}

// Health is GET /healthz: nil once the process answers.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.call(ctx, http.MethodGet, "/healthz", nil, nil)
	return err
}

// Ready is GET /readyz: true once the service takes requests (false while
// it starts or stops).
func (c *Client) Ready(ctx context.Context) (bool, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/readyz", nil, nil)
	switch {
	case err != nil:
		return false, err
	case resp.Status == http.StatusOK:
		return true, nil
	case resp.Status == http.StatusServiceUnavailable:
		return false, nil
	}
	return false, apiError(resp)
}

// OpenAPI is GET /openapi.json: the API's description.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	var raw json.RawMessage
	_, err := c.call(ctx, http.MethodGet, "/openapi.json", nil, &raw)
	return raw, err
}

// Metrics is GET /metrics, parsed: the metric families by name. c's base
// URL must be the API's (with the key) or METRICS_ADDR's.
func (c *Client) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/metrics", nil, http.Header{"Accept": {"text/plain"}})
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		return nil, apiError(resp)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(resp.Body))
}

// Restore is POST /api/whatsapp/sessions/restore: it starts every stored
// session that is not running, or only ids when given, in the background.
func (c *Client) Restore(ctx context.Context, ids ...string) error {
	var in any
	if len(ids) > 0 {
		in = map[string][]string{"senderIds": ids}
	}
	_, err := c.call(ctx, http.MethodPost, "/api/whatsapp/sessions/restore", in, nil)
	return err
}

// Fleet is GET /api/whatsapp/sessions/status: every session's status, with
// counts and the restore's progress.
func (c *Client) Fleet(ctx context.Context) (sessions.Fleet, error) {
	var f sessions.Fleet
	_, err := c.call(ctx, http.MethodGet, "/api/whatsapp/sessions/status", nil, &f)
	return f, err
}

// Info is GET /api/whatsapp/info: what the service is (test mode or not).
func (c *Client) Info(ctx context.Context) (sessions.Info, error) {
	var info sessions.Info
	_, err := c.call(ctx, http.MethodGet, "/api/whatsapp/info", nil, &info)
	return info, err
}

// Create is POST /api/whatsapp/session/{id}: it creates (or starts) a
// session; created is false when the session was already running.
func (c *Client) Create(ctx context.Context, id string) (st sessions.Status, created bool, err error) {
	code, err := c.call(ctx, http.MethodPost, sessionPath(id), nil, &st)
	return st, code == http.StatusAccepted, err
}

// Delete is DELETE /api/whatsapp/session/{id}: it stops the session and
// removes its data.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.call(ctx, http.MethodDelete, sessionPath(id), nil, nil)
	return err
}

// Status is GET /api/whatsapp/session/{id}/status.
func (c *Client) Status(ctx context.Context, id string) (sessions.Status, error) {
	return c.status(ctx, http.MethodGet, sessionPath(id, "status"))
}

// QR is GET /api/whatsapp/session/{id}/qr: the code a pairing session
// shows now.
func (c *Client) QR(ctx context.Context, id string) (sessions.QR, error) {
	var qr sessions.QR
	_, err := c.call(ctx, http.MethodGet, sessionPath(id, "qr"), nil, &qr)
	return qr, err
}

// PairPhone is POST /api/whatsapp/session/{id}/pair-phone: it asks
// WhatsApp for a code to enter on the phone with that number.
func (c *Client) PairPhone(ctx context.Context, id, phone string) (string, error) {
	var out struct {
		Code string `json:"code"`
	}
	_, err := c.call(ctx, http.MethodPost, sessionPath(id, "pair-phone"), map[string]string{"phone": phone}, &out)
	return out.Code, err
}

// Stop is POST /api/whatsapp/session/{id}/stop: it disconnects the session
// and keeps its credentials.
func (c *Client) Stop(ctx context.Context, id string) (sessions.Status, error) {
	return c.status(ctx, http.MethodPost, sessionPath(id, "stop"))
}

// Logout is POST /api/whatsapp/session/{id}/logout: it unlinks the device
// on WhatsApp and deletes its credentials.
func (c *Client) Logout(ctx context.Context, id string) (sessions.Status, error) {
	return c.status(ctx, http.MethodPost, sessionPath(id, "logout"))
}

// Send is POST /api/whatsapp/session/{id}/messages: it sends a text
// message from the session and returns once WhatsApp's server
// acknowledged it. req.IdempotencyKey, when set, is sent as the
// Idempotency-Key header: a retry with the same key and request returns
// the first answer instead of sending again.
func (c *Client) Send(ctx context.Context, id string, req sessions.SendRequest) (sessions.SentMessage, error) {
	var h http.Header
	if req.IdempotencyKey != "" {
		h = http.Header{"Idempotency-Key": {req.IdempotencyKey}}
	}
	var sent sessions.SentMessage
	_, err := c.callWith(ctx, http.MethodPost, sessionPath(id, "messages"), req, &sent, h)
	return sent, err
}

// MarkRead is POST /api/whatsapp/session/{id}/messages/{req.ID}/read: it
// tells the sender of a message received in req.Chat that it was read.
func (c *Client) MarkRead(ctx context.Context, id string, req sessions.ReadRequest) error {
	_, err := c.call(ctx, http.MethodPost, sessionPath(id, "messages", url.PathEscape(req.ID), "read"), req, nil)
	return err
}

// status is a call whose answer is a session's status.
func (c *Client) status(ctx context.Context, method, path string) (sessions.Status, error) {
	var st sessions.Status
	_, err := c.call(ctx, method, path, nil, &st)
	return st, err
}

// TestResult is a test action's answer.
type TestResult struct {
	Action string `json:"action"`
	Done   string `json:"done"`
	ID     string `json:"id,omitempty"` // receive: the message's ID
}

// Test is POST /api/whatsapp/test/session/{id}/{action} (test mode only):
// the fake WhatsApp's phone or network acts on the session (scan,
// enter-code, unlink, ban, drop, replace, outdated, receive, read, panic).
// A ban takes p.Seconds; receive p.From, p.Text and p.ReplyTo; read p.ID.
func (c *Client) Test(ctx context.Context, id, action string, p sessions.TestParams) (TestResult, error) {
	var in any
	if p != (sessions.TestParams{}) {
		in = p
	}
	var out TestResult
	_, err := c.call(ctx, http.MethodPost, "/api/whatsapp/test/session/"+url.PathEscape(id)+"/"+url.PathEscape(action), in, &out)
	return out, err
}

// Deliveries is GET /api/whatsapp/webhooks/deliveries: up to limit (0:
// the API's default) webhook deliveries in state, oldest first, after the
// delivery id after ("" for the first page); next is the after of the next
// page, "" on the last one.
func (c *Client) Deliveries(ctx context.Context, state sessions.DeliveryState, after string, limit int) (ds []sessions.Delivery, next string, err error) {
	q := url.Values{"state": {string(state)}}
	if after != "" {
		q.Set("after", after)
	}
	if limit != 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var page struct {
		Deliveries []sessions.Delivery `json:"deliveries"`
		Next       *string             `json:"next"`
	}
	if _, err := c.call(ctx, http.MethodGet, "/api/whatsapp/webhooks/deliveries?"+q.Encode(), nil, &page); err != nil {
		return nil, "", err
	}
	if page.Next != nil {
		next = *page.Next
	}
	return page.Deliveries, next, nil
}

// RetryDelivery is POST /api/whatsapp/webhooks/deliveries/{id}/retry: the
// delivery is sent again now (a dead one becomes pending).
func (c *Client) RetryDelivery(ctx context.Context, id string) (sessions.Delivery, error) {
	var d sessions.Delivery
	_, err := c.call(ctx, http.MethodPost, "/api/whatsapp/webhooks/deliveries/"+url.PathEscape(id)+"/retry", nil, &d)
	return d, err
}

// RetryDeadDeliveries is POST /api/whatsapp/webhooks/deliveries/retry:
// every dead delivery is sent again; it says how many.
func (c *Client) RetryDeadDeliveries(ctx context.Context) (int, error) {
	var out struct {
		Retried int `json:"retried"`
	}
	_, err := c.call(ctx, http.MethodPost, "/api/whatsapp/webhooks/deliveries/retry", nil, &out)
	return out.Retried, err
}

// TestSentMessage is a message a session sent, as the fake contact that
// decrypted it saw it.
type TestSentMessage struct {
	ID        string    `json:"id"`
	To        string    `json:"to"` // the contact's phone number
	Text      string    `json:"text"`
	ReplyTo   string    `json:"replyTo,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	PhoneCopy bool      `json:"phoneCopy"` // the account's phone decrypted its copy
	Delivered bool      `json:"delivered"` // the contact sent a delivery receipt
	Read      bool      `json:"read"`      // the contact sent a read receipt
}

// TestSent is GET /api/whatsapp/test/session/{id}/sent (test mode only):
// what the session sent that fake contacts decrypted, in order.
func (c *Client) TestSent(ctx context.Context, id string) ([]TestSentMessage, error) {
	var out struct {
		Messages []TestSentMessage `json:"messages"`
	}
	_, err := c.call(ctx, http.MethodGet, "/api/whatsapp/test/session/"+url.PathEscape(id)+"/sent", nil, &out)
	return out.Messages, err
}

// TestReceive is Test with action receive: the fake contact with phone
// number from sends the session text (a reply to replyTo if not empty).
// It returns the message's ID.
func (c *Client) TestReceive(ctx context.Context, id, from, text, replyTo string) (string, error) {
	res, err := c.Test(ctx, id, "receive", sessions.TestParams{From: from, Text: text, ReplyTo: replyTo})
	return res.ID, err
}

// TestRead is Test with action read: the contact that received message
// msgID from the session sends a read receipt.
func (c *Client) TestRead(ctx context.Context, id, msgID string) error {
	_, err := c.Test(ctx, id, "read", sessions.TestParams{ID: msgID})
	return err
}

// Sample is the value of the one sample of family name whose labels
// include labels (name=value pairs), from families as Metrics returns them;
// ok is false when there is none.
func Sample(families map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	mf := families[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}
