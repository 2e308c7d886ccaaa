package fakeserver

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// HTTPClient returns an *http.Client for whatsmeow's
// Client.SetWebsocketHTTPClient and SetPreLoginHTTPClient that reaches the
// fake server at addr the way production reaches WhatsApp: whatsmeow's
// wss://web.whatsapp.com URL, a TCP dial (to addr instead of what DNS
// says), then TLS that checks the server's certificate for ServerName
// against caPEM's CA alone (Server.CACertPEM): never the system roots,
// never without verification. There is no proxy (whatsmeow's default
// client would read HTTPS_PROXY).
//
// The clients share one TLS session cache, so a reconnect or a restore of
// many sessions resumes TLS sessions instead of verifying the certificate
// chain on every handshake, as a browser does.
func HTTPClient(addr string, caPEM []byte) (*http.Client, error) {
	pool, err := CertPool(caPEM)
	if err != nil {
		return nil, err
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{
			RootCAs:            pool,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(8),
		},
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     false,
		ResponseHeaderTimeout: 10 * time.Second,
		// Websocket connections leave the pool when upgraded; nothing is
		// worth keeping idle.
		MaxIdleConns: 1,
	}}, nil
}
