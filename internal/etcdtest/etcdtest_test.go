package etcdtest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/etcdtest"
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
