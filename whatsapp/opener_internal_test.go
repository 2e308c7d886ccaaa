package whatsapp

import (
	"net/http"
	"testing"
)

// Production (no HTTPClient given) keeps whatsmeow's default path: system
// roots, certificate checks, the environment's proxy; it only adds a TLS
// session cache shared by every client.
func TestProductionHTTPClientIsTheDefaultWithASessionCache(t *testing.T) {
	o := NewStoreOpener(nil, Options{})
	tr, ok := o.http.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T, want *http.Transport", o.http.Transport)
	}
	c := tr.TLSClientConfig
	if c == nil || c.ClientSessionCache == nil {
		t.Fatal("no TLS session cache")
	}
	if c.RootCAs != nil || c.InsecureSkipVerify || c.ServerName != "" || c.VerifyPeerCertificate != nil {
		t.Errorf("TLS config departs from the default: %+v", c)
	}
	if tr.Proxy == nil || tr.DialContext == nil || tr.DialTLSContext != nil {
		t.Error("dialing departs from http.DefaultTransport")
	}
}
