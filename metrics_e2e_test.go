package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/whatsapp-sessions/whatsapp-sessions/client"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
)

// value is the value of the series of name whose labels include want, and
// whether there is one.
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	var labels []string
	for k, v := range want {
		labels = append(labels, k, v)
	}
	return client.Sample(families, name, labels...)
}

func TestMetricsFollowEachSession(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	root := t.TempDir()
	ids, _ := seed(t, root, 3) // user0000, user0001, user0002
	svc := e2e.Start(t, e2e.Config(root, f))
	for _, id := range ids {
		svc.WaitState(id, "connected", e2e.Wait)
	}
	m := scrape(t, svc)
	for _, id := range ids {
		s := map[string]string{"session": id}
		if v, _ := value(m, "whatsapp_session_state", map[string]string{"session": id, "state": "connected"}); v != 1 {
			t.Errorf("%s connected state = %v", id, v)
		}
		if v, _ := value(m, "whatsapp_session_state", map[string]string{"session": id, "state": "reconnecting"}); v != 0 {
			t.Errorf("%s reconnecting state = %v", id, v)
		}
		if v, _ := value(m, "whatsapp_session_connected", s); v != 1 {
			t.Errorf("%s connected = %v", id, v)
		}
		if v, _ := value(m, "whatsapp_session_last_connected_timestamp_seconds", s); v < 1.7e9 {
			t.Errorf("%s last connected = %v", id, v)
		}
	}
	if v, _ := value(m, "whatsapp_sessions", map[string]string{"state": "connected"}); v != 3 {
		t.Errorf("sessions connected = %v", v)
	}
	if v, _ := value(m, "whatsapp_restore_results_total", map[string]string{"result": "restored"}); v != 3 {
		t.Errorf("restore results = %v", v)
	}
	if mf := m["whatsapp_restore_duration_seconds"]; mf == nil || mf.GetMetric()[0].GetHistogram().GetSampleCount() != 3 {
		t.Errorf("restore duration histogram: %v", mf)
	}

	// A restart and a reconnect of one session move only its counters.
	svc.Call("POST", "/api/whatsapp/test/session/user0001/panic", "")
	eventuallyOK(t, func() bool { st := svc.Status("user0001"); return st.Restarts == 1 && st.State == "connected" })
	svc.Call("POST", "/api/whatsapp/test/session/user0002/drop", "")
	eventuallyOK(t, func() bool {
		st := svc.Status("user0002")
		return st.Reconnects == 1 && st.State == "connected"
	})
	m = scrape(t, svc)
	for _, tc := range []struct {
		metric, id string
		want       float64
	}{
		{"whatsapp_session_restarts_total", "user0001", 1},
		{"whatsapp_session_restarts_total", "user0000", 0},
		{"whatsapp_session_restarts_total", "user0002", 0},
		{"whatsapp_session_reconnects_total", "user0002", 1},
		{"whatsapp_session_reconnects_total", "user0000", 0},
		{"whatsapp_session_reconnects_total", "user0001", 0},
	} {
		if v, _ := value(m, tc.metric, map[string]string{"session": tc.id}); v != tc.want {
			t.Errorf("%s{session=%s} = %v, want %v", tc.metric, tc.id, v, tc.want)
		}
	}
	if v, _ := value(m, "whatsapp_session_disconnects_total", map[string]string{"session": "user0002", "reason": "network"}); v != 1 {
		t.Errorf("user0002 network disconnects = %v", v)
	}

	// Deleting a session removes every series of it.
	if code, _ := svc.Call("DELETE", "/api/whatsapp/session/user0000", ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	_, body, _ := svc.Raw("GET", "/metrics", "", nil)
	if bytes.Contains(body, []byte(`session="user0000"`)) {
		t.Error("the deleted session still has series")
	}
	if v, _ := value(scrape(t, svc), "whatsapp_sessions", map[string]string{"state": "connected"}); v != 2 {
		t.Errorf("sessions connected after delete = %v", v)
	}

	// No label value is a phone number or a JID.
	personal := regexp.MustCompile(`\d{7,}|@`)
	for name, mf := range scrape(t, svc) {
		if !strings.HasPrefix(name, "whatsapp_") {
			continue
		}
		for _, mm := range mf.GetMetric() {
			for _, lp := range mm.GetLabel() {
				if personal.MatchString(lp.GetValue()) {
					t.Errorf("%s has label %s=%q", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}

// scrape parses svc's /metrics into families by name.
func scrape(t *testing.T, svc *e2e.Service) map[string]*dto.MetricFamily {
	t.Helper()
	families, err := svc.Client.Metrics(context.Background())
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	return families
}
