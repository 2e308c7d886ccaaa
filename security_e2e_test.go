package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/app"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// The service as a security probe found it (issue 9, section 3), through
// run and real sockets.

var metricsLine = regexp.MustCompile(`"msg":"metrics listening","addr":"([^"]+)"`)

func TestMetricsAddrServesMetricsAloneAndTheAPIPortNoLonger(t *testing.T) {
	cfg := e2e.Config(t.TempDir(), e2e.NewFake(t, fakeserver.Options{}))
	cfg.MetricsAddr = "127.0.0.1:0"
	svc := e2e.Start(t, cfg)
	m := metricsLine.FindStringSubmatch(svc.Logs.String())
	if m == nil {
		t.Fatalf("no metrics listener in the logs:\n%s", svc.Logs)
	}
	base := "http://" + m[1]
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"POST", "/metrics", 405},
		{"DELETE", "/metrics", 405},
		{"GET", "/", 404},
		{"GET", "/healthz", 404},
		{"GET", "/openapi.json", 404},
		{"GET", "/api/whatsapp/sessions/status", 404},
		{"POST", "/api/whatsapp/session/alice", 404},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("METRICS_ADDR %s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if tc.want == 200 && !strings.Contains(string(body), "whatsapp_sessions{") {
			t.Errorf("METRICS_ADDR /metrics without a key does not serve the metrics: %.200s", body)
		}
	}
	// No session was created through it.
	if code, _ := svc.Call("GET", "/api/whatsapp/session/alice/status", ""); code != 404 {
		t.Errorf("alice: %d", code)
	}
	// The API port no longer serves /metrics, even with the key.
	if code, _, _ := svc.Raw("GET", "/metrics", "", nil); code != 404 {
		t.Errorf("API port /metrics with METRICS_ADDR set: %d, want 404", code)
	}
}

func TestMetricsOnTheAPIPortNeedTheKey(t *testing.T) {
	svc := e2e.Start(t, e2e.Config(t.TempDir(), e2e.NewFake(t, fakeserver.Options{})))
	resp, err := http.Get(svc.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || strings.Contains(string(body), "whatsapp_") {
		t.Errorf("/metrics without the key: %d %.200s", resp.StatusCode, body)
	}
	if code, body, _ := svc.Raw("GET", "/metrics", "", nil); code != 200 || !strings.Contains(string(body), "whatsapp_http_connections_max{listener=\"api\"}") {
		t.Errorf("/metrics with the key: %d", code)
	}
}

// metricValue reads one unlabelled-or-labelled sample from /metrics.
func metricValue(t *testing.T, svc *e2e.Service, sample string) float64 {
	t.Helper()
	code, body, _ := svc.Raw("GET", "/metrics", "", nil)
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", sample)
	return 0
}

func TestIdleSocketsCannotStarveRealClients(t *testing.T) {
	cfg := e2e.Config(t.TempDir(), e2e.NewFake(t, fakeserver.Options{}))
	cfg.HTTPMaxConns = 8
	svc := e2e.Start(t, cfg)
	addr := strings.TrimPrefix(svc.Base, "http://")
	// 60 sockets from a client without a key: silent ones, and ones that
	// send half a request.
	for i := range 60 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i%2 == 1 {
			_, _ = io.WriteString(c, "GET /api/whatsapp/sessions/status HTTP/1.1\r\nHost: x\r\n")
		}
	}
	// A real client is served at once, every time.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		req, _ := http.NewRequest("GET", svc.Base+"/api/whatsapp/sessions/status", nil)
		req.Header.Set("Authorization", "Bearer "+e2e.APIKey)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("a real client among idle sockets: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a real client among idle sockets: %d", resp.StatusCode)
		}
	}
	if open := metricValue(t, svc, `whatsapp_http_connections{listener="api"}`); open > 8 {
		t.Errorf("%v connections open, over the cap of 8", open)
	}
	if max := metricValue(t, svc, `whatsapp_http_connections_max{listener="api"}`); max != 8 {
		t.Errorf("whatsapp_http_connections_max = %v, want 8", max)
	}
	if evicted := metricValue(t, svc, `whatsapp_http_connections_evicted_total{listener="api"}`); evicted < 50 {
		t.Errorf("whatsapp_http_connections_evicted_total = %v, want the idle sockets counted", evicted)
	}
}

func TestUnsafeKeyFileAndSessionsDirectoryStopTheStart(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".api-key"), []byte("a-key-that-is-long-enough-0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := e2e.Config(dir, f)
	cfg.APIKey = ""
	err := app.Run(context.Background(), cfg, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("run with a key file others can read = %v", err)
	}

	weak := t.TempDir()
	if err := os.WriteFile(filepath.Join(weak, ".api-key"), []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = e2e.Config(weak, f)
	cfg.APIKey = ""
	if err := app.Run(context.Background(), cfg, io.Discard); err == nil || !strings.Contains(err.Error(), "one character repeated") {
		t.Errorf("run with a weak key in the key file = %v", err)
	}

	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := app.Run(context.Background(), e2e.Config(open, f), io.Discard); err == nil || !strings.Contains(err.Error(), "chmod 700") {
		t.Errorf("run on a directory every user can write = %v", err)
	}

	shared := t.TempDir()
	if err := os.Chmod(shared, 0o770); err != nil {
		t.Fatal(err)
	}
	svc := e2e.Start(t, e2e.Config(shared, f))
	if !strings.Contains(svc.Logs.String(), "SESSIONS_DIR is writable by its group") {
		t.Error("no warning for a group-writable SESSIONS_DIR")
	}
}
