package fakeserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The server answers TLS for web.whatsapp.com with a certificate that only
// its own CA vouches for: a client trusting other roots, or checking
// another name, fails the handshake; one trusting the CA gets through.
func TestTLSTrustsOnlyTheServersCA(t *testing.T) {
	srv := startServer(t)
	pool, err := fakeserver.CertPool(srv.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	other := startServer(t) // another CA, as a second test run would make
	otherPool, err := fakeserver.CertPool(other.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	system, err := x509.SystemCertPool()
	if err != nil {
		system = x509.NewCertPool()
	}

	for _, tc := range []struct {
		name       string
		conf       *tls.Config
		wantErrish string
	}{
		{"the server's CA", &tls.Config{RootCAs: pool, ServerName: fakeserver.ServerName}, ""},
		{"system roots", &tls.Config{RootCAs: system, ServerName: fakeserver.ServerName}, "certificate"},
		{"another server's CA", &tls.Config{RootCAs: otherPool, ServerName: fakeserver.ServerName}, "certificate"},
		{"another name", &tls.Config{RootCAs: pool, ServerName: "g.whatsapp.net"}, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tc.conf}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", srv.Addr())
			if tc.wantErrish == "" {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				state := c.(*tls.Conn).ConnectionState()
				c.Close()
				if len(state.PeerCertificates) == 0 || state.PeerCertificates[0].Subject.CommonName != "web.whatsapp.com" {
					t.Errorf("peer certificate %+v, want one for web.whatsapp.com", state.PeerCertificates)
				}
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded, want a certificate error")
			}
			var verr *tls.CertificateVerificationError
			if !errors.As(err, &verr) || !strings.Contains(err.Error(), tc.wantErrish) {
				t.Errorf("dial error %v (%T), want a certificate verification error", err, err)
			}
		})
	}
}

// A whatsmeow client given HTTPClient logs in over TLS: the server counts
// the handshake, and a second connection resumes the TLS session.
func TestClientLogsInOverTLS(t *testing.T) {
	const user = "15550000091"
	srv := startServer(t)
	container, _ := seed(t, user)
	tc := newClient(t, srv, firstDevice(t, container))
	for range 2 {
		connect(t, tc)
		waitEvent[*events.Connected](t, tc, nil)
		tc.Disconnect()
		waitConnections(t, srv, user, 0)
	}
	st, err := srv.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TLSHandshakes != 2 || st.TLSResumed != 1 {
		t.Errorf("Stats = %+v; want 2 TLS handshakes, the second resumed", st)
	}
}

// HTTPClient refuses a CA file that holds no CA certificate, and a client
// without the CA cannot reach the server over HTTP either.
func TestHTTPClientNeedsTheCA(t *testing.T) {
	srv := startServer(t)
	for _, bad := range []string{"", "not pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"} {
		if _, err := fakeserver.HTTPClient(srv.Addr(), []byte(bad)); err == nil {
			t.Errorf("HTTPClient accepted CA %q", bad)
		}
	}
	other := startServer(t)
	hc, err := fakeserver.HTTPClient(srv.Addr(), other.CACertPEM())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get("https://web.whatsapp.com/ws/chat")
	if err == nil {
		resp.Body.Close()
		t.Fatal("GET succeeded with another server's CA")
	}
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("GET error %v, want a certificate verification error", err)
	}
	hc.CloseIdleConnections()
}
