package fakeserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Remote is a Control over HTTP, talking to the ControlHandler of a fake
// server in another process (cmd/fakewa). Errors the server reports come
// back as the package's sentinel errors (ErrUnknownQR, ...).
type Remote struct {
	base string
	hc   *http.Client
}

// NewRemote returns a Remote for the control API at controlURL (for
// example "http://127.0.0.1:9401"). A nil hc means http.DefaultClient;
// calls are bounded by their contexts.
func NewRemote(controlURL string, hc *http.Client) *Remote {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Remote{base: strings.TrimRight(controlURL, "/"), hc: hc}
}

// ScanQR implements Control.
func (r *Remote) ScanQR(ctx context.Context, qr string) (string, error) {
	return r.jid(ctx, "/scan", qrRequest{QR: qr})
}

// EnterPairingCode implements Control.
func (r *Remote) EnterPairingCode(ctx context.Context, phone, code string) (string, error) {
	return r.jid(ctx, "/pair-code", pairCodeRequest{Phone: phone, Code: code})
}

// ExpireQR implements Control.
func (r *Remote) ExpireQR(ctx context.Context, qr string) error {
	return r.do(ctx, http.MethodPost, "/expire-qr", qrRequest{QR: qr}, nil)
}

// SetLoginFailure implements Control. Expire travels in whole seconds.
func (r *Remote) SetLoginFailure(ctx context.Context, user string, f LoginFailure) error {
	req := loginFailureRequest{Reason: f.Reason, BanCode: f.BanCode, ExpireSeconds: int(f.Expire.Seconds())}
	return r.do(ctx, http.MethodPut, devicePath(user, "login-failure"), req, nil)
}

// SendStreamError implements Control.
func (r *Remote) SendStreamError(ctx context.Context, user string, kind StreamErrorKind) error {
	return r.do(ctx, http.MethodPost, devicePath(user, "stream-error"), streamErrorRequest{Kind: kind}, nil)
}

// Unlink implements Control.
func (r *Remote) Unlink(ctx context.Context, user string, device uint16) error {
	return r.do(ctx, http.MethodPost, devicePath(user, "unlink"), unlinkRequest{Device: device}, nil)
}

// Drop implements Control.
func (r *Remote) Drop(ctx context.Context, user string) (int, error) {
	return r.count(ctx, http.MethodPost, devicePath(user, "drop"))
}

// DropAll implements Control.
func (r *Remote) DropAll(ctx context.Context) (int, error) {
	return r.count(ctx, http.MethodPost, "/drop-all")
}

// SetIgnoreKeepalives implements Control.
func (r *Remote) SetIgnoreKeepalives(ctx context.Context, user string, ignore bool) error {
	return r.do(ctx, http.MethodPut, devicePath(user, "keepalives"), keepalivesRequest{Ignore: ignore}, nil)
}

// Connections implements Control.
func (r *Remote) Connections(ctx context.Context, user string) (int, error) {
	return r.count(ctx, http.MethodGet, devicePath(user, "connections"))
}

// Stats implements Control.
func (r *Remote) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := r.do(ctx, http.MethodGet, "/stats", nil, &st)
	return st, err
}

// ConnectionRecord implements Control.
func (r *Remote) ConnectionRecord(ctx context.Context) ([]DeviceConnections, error) {
	var resp connectionRecordResponse
	err := r.do(ctx, http.MethodGet, "/connection-record", nil, &resp)
	return resp.Devices, err
}

// ContactSend implements Control.
func (r *Remote) ContactSend(ctx context.Context, user, from, text, replyTo string) (string, error) {
	var resp idBody
	err := r.do(ctx, http.MethodPost, devicePath(user, "receive"), contactSendRequest{From: from, Text: text, ReplyTo: replyTo}, &resp)
	return resp.ID, err
}

// ContactPrepare implements Control.
func (r *Remote) ContactPrepare(ctx context.Context, user, from string) error {
	return r.do(ctx, http.MethodPost, devicePath(user, "prepare"), contactPrepareRequest{From: from}, nil)
}

// ContactRead implements Control.
func (r *Remote) ContactRead(ctx context.Context, user, id string) error {
	return r.do(ctx, http.MethodPost, devicePath(user, "read"), idBody{ID: id}, nil)
}

// Sent implements Control.
func (r *Remote) Sent(ctx context.Context, user string) ([]SentMessage, error) {
	var resp sentResponse
	err := r.do(ctx, http.MethodGet, devicePath(user, "sent"), nil, &resp)
	return resp.Messages, err
}

// Received implements Control.
func (r *Remote) Received(ctx context.Context, user string) ([]ReceivedMessage, error) {
	var resp receivedResponse
	err := r.do(ctx, http.MethodGet, devicePath(user, "received"), nil, &resp)
	return resp.Messages, err
}

// jid posts body to a route that answers with a JID.
func (r *Remote) jid(ctx context.Context, path string, body any) (string, error) {
	var resp jidResponse
	err := r.do(ctx, http.MethodPost, path, body, &resp)
	return resp.JID, err
}

// count calls a route that answers with a count.
func (r *Remote) count(ctx context.Context, method, path string) (int, error) {
	var resp countResponse
	err := r.do(ctx, method, path, nil, &resp)
	return resp.Count, err
}

func devicePath(user, action string) string {
	return "/devices/" + url.PathEscape(user) + "/" + action
}

// do sends body as JSON and decodes a 2xx answer into out (if not nil) or
// an error answer into the matching sentinel error.
func (r *Remote) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("fake server control %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return fmt.Errorf("fake server control %s: %w", path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return fmt.Errorf("fake server control %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxControlAnswer))
	if err != nil {
		return fmt.Errorf("fake server control %s: read answer: %w", path, err)
	}
	if resp.StatusCode >= 300 {
		return remoteError(path, resp.StatusCode, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("fake server control %s: decode answer: %w", path, err)
	}
	return nil
}

// remoteError turns an error answer back into the error the server's
// Control method returned.
func remoteError(path string, status int, data []byte) error {
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Error.Code == "" {
		return fmt.Errorf("fake server control %s: HTTP %d", path, status)
	}
	for _, e := range errorCodes {
		if e.code == body.Error.Code {
			return fmt.Errorf("fake server control %s: %w (%s)", path, e.err, body.Error.Message)
		}
	}
	return fmt.Errorf("fake server control %s: HTTP %d: %s: %s", path, status, body.Error.Code, body.Error.Message)
}
