package etcdtest_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/testcerts"
)

func TestStartIsHealthyAndServesTheV3API(t *testing.T) {
	s := etcdtest.Start(t)
	// The v3 gRPC gateway: an empty range over the whole key space.
	resp, err := http.Post(s.Endpoint+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"AA=="}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "header") {
		t.Fatalf("range: %d %s", resp.StatusCode, body)
	}
}

// StartTLS serves https with a certificate from the test CA and refuses a
// client without a certificate of that CA.
func TestStartTLSRequiresAClientCertificate(t *testing.T) {
	ca, err := testcerts.NewCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := etcdtest.StartTLS(t, ca)
	if !strings.HasPrefix(s.Endpoint, "https://127.0.0.1:") {
		t.Fatalf("endpoint %s, want https on loopback", s.Endpoint)
	}
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer noCert.CloseIdleConnections()
	resp, err := noCert.Post(s.Endpoint+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"AA=="}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
	t.Logf("refused without a client certificate: %v", err)
}
