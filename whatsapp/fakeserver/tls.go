package fakeserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"go.mau.fi/whatsmeow/socket"
)

// ServerName is the host name whatsmeow dials (its websocket URL,
// wss://web.whatsapp.com/ws/chat), which the server's certificate names and
// the client checks. whatsmeow makes no other request before login.
var ServerName = mustHost(socket.URL)

func mustHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		panic(fmt.Sprintf("fakeserver: whatsmeow's websocket URL %q has no host", raw))
	}
	return u.Hostname()
}

// certLifetime is how long the generated certificates are valid. A server
// lives as long as a test or a benchmark; a day leaves room for clock skew.
const certLifetime = 24 * time.Hour

// serverTLS is the TLS side of a Server: a CA made at start, in memory, and
// a leaf certificate for ServerName that it issued.
type serverTLS struct {
	config *tls.Config
	caPEM  []byte
}

// newServerTLS generates a CA and a leaf for ServerName (ECDSA P-256),
// valid from now-1h for certLifetime.
func newServerTLS(now time.Time) (*serverTLS, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: CA key: %w", err)
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(certLifetime)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "fakeserver test CA (never trust outside tests)"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: CA certificate: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: leaf key: %w", err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: ServerName},
		DNSNames:     []string{ServerName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("fake whatsapp server: leaf certificate: %w", err)
	}
	return &serverTLS{
		config: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}},
			MinVersion:   tls.VersionTLS12,
			// Websockets are HTTP/1.1; offering nothing else keeps a
			// client from negotiating h2.
			NextProtos: []string{"http/1.1"},
		},
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
	}, nil
}

// serial is a random certificate serial number.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// CACertPEM is the PEM encoding of the CA that issued the server's
// certificate: what a client must trust, and nothing else, to reach it
// (HTTPClient). cmd/fakewa writes it to a file for a service in another
// process.
func (s *Server) CACertPEM() []byte {
	return append([]byte(nil), s.tls.caPEM...)
}

// CertPool returns a pool holding only the CA certificates in caPEM; an
// error if it holds none or anything else.
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	found := 0
	for rest := caPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("fake server CA: unexpected PEM block %q", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("fake server CA: %w", err)
		}
		if !cert.IsCA {
			return nil, errors.New("fake server CA: the certificate is not a CA")
		}
		pool.AddCert(cert)
		found++
	}
	if found == 0 {
		return nil, errors.New("fake server CA: no PEM certificate found")
	}
	return pool, nil
}
