package fakeserver

import (
	"context"
	"net"
	"net/http"
	"time"
)

// HTTPClient returns an *http.Client for whatsmeow's
// Client.SetWebsocketHTTPClient and SetPreLoginHTTPClient that takes every
// dial to addr over plain TCP. whatsmeow's websocket URL is fixed to
// wss://web.whatsapp.com, so the TLS dial hook returns the plain
// connection: there is no TLS, and no proxy (whatsmeow's default client
// would read HTTPS_PROXY).
func HTTPClient(addr string) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		DialTLSContext:        dial,
		ForceAttemptHTTP2:     false,
		ResponseHeaderTimeout: 10 * time.Second,
		// Websocket connections leave the pool when upgraded; nothing is
		// worth keeping idle.
		MaxIdleConns: 1,
	}}
}
