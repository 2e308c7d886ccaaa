package metrics_test

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/whatsapp-sessions/whatsapp-sessions/actors"
	"github.com/whatsapp-sessions/whatsapp-sessions/lease"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
)

// allStates are the states the metrics must know: the domain's one list.
var allStates = func() []string {
	var out []string
	for _, s := range sessions.States {
		out = append(out, string(s))
	}
	return out
}()

// newMetrics returns Metrics on a fresh registry and that registry.
func newMetrics(t *testing.T) (*metrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return metrics.New(reg), reg
}

// touchAll calls every method of m once, so that every metric family has at
// least one series.
func touchAll(m *metrics.Metrics, session string) {
	m.SetSessionState(session, sessions.StateConnected)
	m.SetSessionConnected(session, true)
	m.SessionRestarted(session)
	m.SessionReconnected(session)
	m.SessionDisconnected(session, sessions.ReasonNetwork)
	m.SetSessionLastConnected(session, time.Unix(1700000000, 0))
	m.SessionMessage(session, sessions.DirectionIn)
	m.SessionMessage(session, sessions.DirectionOut)
	m.SessionStoreWriteFailed(session)
	m.ObserveRestore(1500 * time.Millisecond)
	m.RestoreResult(sessions.ResultRestored)
	m.ObserveHTTP("/api/whatsapp/session/{senderId}/status", "GET", 200, 20*time.Millisecond)
	m.StreamClients(1)
	m.StreamDropped()
}

// gather returns the metric families of reg by name.
func gather(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	return byName
}

// labelsOf returns the labels of one series as a map.
func labelsOf(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// value returns the value of the series of family name whose labels are
// exactly want, and whether it exists.
func value(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mf, ok := gather(t, reg)[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := labelsOf(m)
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
		t.Fatalf("%s%v: unexpected metric type", name, want)
	}
	return 0, false
}

// mustValue is value that fails the test when the series is missing.
func mustValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := value(t, reg, name, labels)
	if !ok {
		t.Fatalf("series %s%v missing", name, labels)
	}
	return v
}

func TestNewRegistersGoAndProcessCollectors(t *testing.T) {
	_, reg := newMetrics(t)
	families := gather(t, reg)
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("%s not registered", name)
		}
	}
}

func TestNewDoesNotUseDefaultRegistry(t *testing.T) {
	newMetrics(t)
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "whatsapp_") {
			t.Errorf("%s registered on the default registry", mf.GetName())
		}
	}
}

func TestMetricsHaveHelpAndPassLint(t *testing.T) {
	m, reg := newMetrics(t)
	touchAll(m, "user123")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "whatsapp_") {
			continue
		}
		ours = append(ours, mf)
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", mf.GetName())
		}
	}
	if len(ours) != 22 {
		t.Errorf("got %d whatsapp_ families, want 22", len(ours))
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestSessionMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	const s = "user123"
	session := map[string]string{"session": s}

	m.SetSessionConnected(s, true)
	if got := mustValue(t, reg, "whatsapp_session_connected", session); got != 1 {
		t.Errorf("connected = %v, want 1", got)
	}
	m.SetSessionConnected(s, false)
	if got := mustValue(t, reg, "whatsapp_session_connected", session); got != 0 {
		t.Errorf("connected after false = %v, want 0", got)
	}

	m.SessionRestarted(s)
	m.SessionRestarted(s)
	m.SessionReconnected(s)
	m.SessionMessage(s, sessions.DirectionIn)
	m.SessionMessage(s, sessions.DirectionIn)
	m.SessionMessage(s, sessions.DirectionOut)
	m.SessionDisconnected(s, sessions.ReasonNetwork)
	m.SessionDisconnected(s, sessions.ReasonLoggedOut)
	m.SessionDisconnected(s, sessions.ReasonNetwork)
	m.SessionDisconnected(s, "something we never heard of")
	last := time.Date(2025, 1, 2, 3, 4, 5, 500_000_000, time.UTC)
	m.SetSessionLastConnected(s, last)
	m.SessionStoreWriteFailed(s)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"whatsapp_session_restarts_total", session, 2},
		{"whatsapp_session_reconnects_total", session, 1},
		{"whatsapp_session_store_write_failures_total", session, 1},
		{"whatsapp_session_messages_total", map[string]string{"session": s, "direction": "in"}, 2},
		{"whatsapp_session_messages_total", map[string]string{"session": s, "direction": "out"}, 1},
		{"whatsapp_session_disconnects_total", map[string]string{"session": s, "reason": "network"}, 2},
		{"whatsapp_session_disconnects_total", map[string]string{"session": s, "reason": "logged_out"}, 1},
		{"whatsapp_session_disconnects_total", map[string]string{"session": s, "reason": "other"}, 1},
		{"whatsapp_session_last_connected_timestamp_seconds", session, 1735787045.5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s%v", tt.name, tt.labels), func(t *testing.T) {
			if got := mustValue(t, reg, tt.name, tt.labels); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}

	// Unknown reasons collapse into "other": no series per free-text reason.
	if n := testutil.CollectAndCount(reg, "whatsapp_session_disconnects_total"); n != 3 {
		t.Errorf("disconnect series = %d, want 3 (network, logged_out, other)", n)
	}
}

func TestRestoreMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	m.ObserveRestore(50 * time.Millisecond)
	m.ObserveRestore(3 * time.Second)
	m.ObserveRestore(20 * time.Minute)
	m.RestoreResult(sessions.ResultRestored)
	m.RestoreResult(sessions.ResultRestored)
	m.RestoreResult("needs_pairing")
	m.RestoreResult("failed")

	want := `
# HELP whatsapp_restore_results_total Results of session restores from storage, by result.
# TYPE whatsapp_restore_results_total counter
whatsapp_restore_results_total{result="failed"} 1
whatsapp_restore_results_total{result="needs_pairing"} 1
whatsapp_restore_results_total{result="restored"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "whatsapp_restore_results_total"); err != nil {
		t.Error(err)
	}

	h := gather(t, reg)["whatsapp_restore_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 {
		t.Errorf("sample count = %d, want 3", h.GetSampleCount())
	}
	if got, want := h.GetSampleSum(), 0.05+3+1200; got != want {
		t.Errorf("sample sum = %v, want %v", got, want)
	}
	bounds := h.GetBucket()
	if first, last := bounds[0].GetUpperBound(), bounds[len(bounds)-1].GetUpperBound(); first != 0.1 || last != 600 {
		t.Errorf("buckets span %v..%v, want 0.1..600", first, last)
	}
	for _, b := range bounds {
		if b.GetUpperBound() == 5 && b.GetCumulativeCount() != 2 {
			t.Errorf("le=5 bucket = %d, want 2", b.GetCumulativeCount())
		}
	}
}

func TestObserveHTTP(t *testing.T) {
	m, reg := newMetrics(t)
	const route = "/api/whatsapp/session/{senderId}/status"
	m.ObserveHTTP(route, "GET", 200, 10*time.Millisecond)
	m.ObserveHTTP(route, "GET", 200, 30*time.Millisecond)
	m.ObserveHTTP(route, "GET", 404, 1*time.Millisecond)
	m.ObserveHTTP("/healthz", "GET", 200, 1*time.Millisecond)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"whatsapp_http_requests_total", map[string]string{"route": route, "method": "GET", "code": "200"}, 2},
		{"whatsapp_http_requests_total", map[string]string{"route": route, "method": "GET", "code": "404"}, 1},
		{"whatsapp_http_requests_total", map[string]string{"route": "/healthz", "method": "GET", "code": "200"}, 1},
		{"whatsapp_http_request_duration_seconds", map[string]string{"route": route, "method": "GET"}, 3},
		{"whatsapp_http_request_duration_seconds", map[string]string{"route": "/healthz", "method": "GET"}, 1},
	}
	for _, tt := range tests {
		if got := mustValue(t, reg, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// checkStates checks whatsapp_session_state and whatsapp_sessions against
// want (session -> state): every session has one series per known state,
// exactly one of them 1, and the fleet gauge counts sessions per state.
func checkStates(t *testing.T, reg prometheus.Gatherer, want map[string]sessions.State) {
	t.Helper()
	families := gather(t, reg)

	perSession := map[string]map[string]float64{}
	for _, m := range families["whatsapp_session_state"].GetMetric() {
		l := labelsOf(m)
		if perSession[l["session"]] == nil {
			perSession[l["session"]] = map[string]float64{}
		}
		perSession[l["session"]][l["state"]] = m.GetGauge().GetValue()
	}
	if len(perSession) != len(want) {
		t.Errorf("whatsapp_session_state has %d sessions, want %d", len(perSession), len(want))
	}
	for session, state := range want {
		series := perSession[session]
		if len(series) != len(allStates) {
			t.Errorf("session %s has %d state series, want %d: %v", session, len(series), len(allStates), series)
		}
		for _, s := range allStates {
			wantV := 0.0
			if s == string(state) {
				wantV = 1
			}
			if v, ok := series[s]; !ok || v != wantV {
				t.Errorf("whatsapp_session_state{session=%q,state=%q} = %v (present %v), want %v", session, s, v, ok, wantV)
			}
		}
	}

	counts := map[string]float64{}
	for _, s := range want {
		counts[string(s)]++
	}
	got := map[string]float64{}
	for _, m := range families["whatsapp_sessions"].GetMetric() {
		got[labelsOf(m)["state"]] = m.GetGauge().GetValue()
	}
	for _, s := range allStates {
		if v, ok := got[s]; !ok || v != counts[s] {
			t.Errorf("whatsapp_sessions{state=%q} = %v (present %v), want %v", s, v, ok, counts[s])
		}
	}
}

func TestSessionStateTransitions(t *testing.T) {
	m, reg := newMetrics(t)
	// Every state is a series from the start, so "0 connected" is a value.
	checkStates(t, reg, map[string]sessions.State{})

	steps := []struct {
		session string
		state   sessions.State
	}{
		{"a", sessions.StateRestoring},
		{"b", sessions.StateRestoring},
		{"c", sessions.StateNeedsPairing},
		{"a", sessions.StateConnecting},
		{"a", sessions.StateConnected},
		{"b", sessions.StateConnecting},
		{"b", sessions.StateConnected},
		{"b", sessions.StateConnected}, // repeated: no double count
		{"c", sessions.StatePairing},
		{"a", sessions.StateReconnecting},
		{"a", sessions.StateConnecting},
		{"a", sessions.StateBanned},
		{"b", sessions.StateConflict},
		{"c", sessions.StateConnecting},
		{"c", sessions.StateFailed},
		{"a", sessions.StateStopped},
		{"b", sessions.StateConnected},
	}
	want := map[string]sessions.State{}
	for i, step := range steps {
		m.SetSessionState(step.session, step.state)
		want[step.session] = step.state
		t.Run(fmt.Sprintf("%02d_%s_%s", i, step.session, step.state), func(t *testing.T) {
			checkStates(t, reg, want)
		})
	}
}

func TestSessionStateUnknownValue(t *testing.T) {
	m, reg := newMetrics(t)
	m.SetSessionState("a", "weird")
	if got := mustValue(t, reg, "whatsapp_session_state", map[string]string{"session": "a", "state": "weird"}); got != 1 {
		t.Errorf("weird state = %v, want 1", got)
	}
	if got := mustValue(t, reg, "whatsapp_sessions", map[string]string{"state": "weird"}); got != 1 {
		t.Errorf("sessions{weird} = %v, want 1", got)
	}

	m.SetSessionState("a", sessions.StateConnected)
	if _, ok := value(t, reg, "whatsapp_session_state", map[string]string{"session": "a", "state": "weird"}); ok {
		t.Error("series for the unknown state left behind after leaving it")
	}
	if got := mustValue(t, reg, "whatsapp_sessions", map[string]string{"state": "weird"}); got != 0 {
		t.Errorf("sessions{weird} = %v, want 0", got)
	}
}

// seriesOf returns "family{labels}" for every series labelled session=s.
func seriesOf(t *testing.T, reg prometheus.Gatherer, s string) []string {
	t.Helper()
	var out []string
	for name, mf := range gather(t, reg) {
		for _, m := range mf.GetMetric() {
			l := labelsOf(m)
			if l["session"] == s {
				out = append(out, fmt.Sprintf("%s%v", name, l))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestRemoveSession(t *testing.T) {
	m, reg := newMetrics(t)
	// "a" is a prefix of "a_b" and "a-1": removal must match the label exactly.
	for _, s := range []string{"a", "a_b", "a-1"} {
		touchAll(m, s)
		m.SessionDisconnected(s, sessions.ReasonReplaced)
	}
	m.SetSessionState("a-1", sessions.StateFailed)

	before := map[string][]string{"a_b": seriesOf(t, reg, "a_b"), "a-1": seriesOf(t, reg, "a-1")}
	// 10 states + connected + restarts + reconnects + 9 disconnect
	// reasons + last connected + 2 message directions + store write
	// failures.
	if n := len(seriesOf(t, reg, "a")); n != 26 {
		t.Fatalf("session a has %d series before removal, want 26", n)
	}
	httpBefore := testutil.CollectAndCount(reg, "whatsapp_http_requests_total", "whatsapp_restore_results_total")

	m.RemoveSession("a")

	if left := seriesOf(t, reg, "a"); len(left) != 0 {
		t.Errorf("series left for removed session a: %v", left)
	}
	for s, want := range before {
		if got := seriesOf(t, reg, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("series of %s changed by removing a:\ngot  %v\nwant %v", s, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "whatsapp_http_requests_total", "whatsapp_restore_results_total"); n != httpBefore {
		t.Errorf("fleet series changed: %d, want %d", n, httpBefore)
	}
	checkStates(t, reg, map[string]sessions.State{"a_b": sessions.StateConnected, "a-1": sessions.StateFailed})

	// Removing twice, or a session never seen, changes nothing.
	m.RemoveSession("a")
	m.RemoveSession("nobody")
	checkStates(t, reg, map[string]sessions.State{"a_b": sessions.StateConnected, "a-1": sessions.StateFailed})

	// A session that comes back starts from scratch.
	m.SetSessionState("a", sessions.StateRestoring)
	checkStates(t, reg, map[string]sessions.State{"a": sessions.StateRestoring, "a_b": sessions.StateConnected, "a-1": sessions.StateFailed})
	if v, ok := value(t, reg, "whatsapp_session_restarts_total", map[string]string{"session": "a"}); !ok || v != 0 {
		t.Errorf("restarts of the session that came back: %v, %v; want a series at 0", v, ok)
	}
}

func TestConcurrentUse(t *testing.T) {
	m, reg := newMetrics(t)
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				// Workers share sessions so that updates and removals of one
				// session race with each other.
				s := fmt.Sprintf("s%d", (w+i)%5)
				m.SetSessionState(s, sessions.States[(w*7+i)%len(sessions.States)])
				m.SetSessionConnected(s, i%2 == 0)
				m.SessionMessage(s, sessions.DirectionIn)
				m.SessionDisconnected(s, sessions.ReasonNetwork)
				m.ObserveHTTP("/healthz", "GET", 200, time.Millisecond)
				if i%17 == 0 {
					m.RemoveSession(s)
				}
			}
		}()
	}
	wg.Wait()

	// Whatever the interleaving, the fleet counts must match the per-session
	// one-hot gauges.
	want := map[string]sessions.State{}
	for _, mt := range gather(t, reg)["whatsapp_session_state"].GetMetric() {
		if mt.GetGauge().GetValue() == 1 {
			l := labelsOf(mt)
			if prev, dup := want[l["session"]]; dup {
				t.Fatalf("session %s is in two states: %s and %s", l["session"], prev, l["state"])
			}
			want[l["session"]] = sessions.State(l["state"])
		}
	}
	checkStates(t, reg, want)
	if got := mustValue(t, reg, "whatsapp_http_requests_total", map[string]string{"route": "/healthz", "method": "GET", "code": "200"}); got != workers*rounds {
		t.Errorf("http requests = %v, want %d", got, workers*rounds)
	}
}

// A session's counters exist at 0 from its first state, every disconnect
// reason and message direction included, so that increase() and rate()
// count its first event; so do the restore results from the start.
func TestCountersStartAtZero(t *testing.T) {
	m, reg := newMetrics(t)
	for _, r := range []string{"restored", "needs_pairing", "failed"} {
		if v, ok := value(t, reg, "whatsapp_restore_results_total", map[string]string{"result": r}); !ok || v != 0 {
			t.Errorf("restore result %s: %v, %v; want a series at 0", r, v, ok)
		}
	}
	m.SetSessionState("s1", sessions.StateRestoring)
	want := []map[string]string{
		{"__name__": "whatsapp_session_restarts_total"},
		{"__name__": "whatsapp_session_reconnects_total"},
		{"__name__": "whatsapp_session_store_write_failures_total"},
		{"__name__": "whatsapp_session_messages_total", "direction": "in"},
		{"__name__": "whatsapp_session_messages_total", "direction": "out"},
	}
	for _, r := range []string{"network", "logged_out", "replaced", "banned", "outdated", "server_error", "stopped", "other"} {
		want = append(want, map[string]string{"__name__": "whatsapp_session_disconnects_total", "reason": r})
	}
	for _, w := range want {
		labels := map[string]string{"session": "s1"}
		for k, v := range w {
			if k != "__name__" {
				labels[k] = v
			}
		}
		if v, ok := value(t, reg, w["__name__"], labels); !ok || v != 0 {
			t.Errorf("%s%v: %v, %v; want a series at 0", w["__name__"], labels, v, ok)
		}
	}
	// A later state change does not reset them.
	m.SessionReconnected("s1")
	m.SetSessionState("s1", sessions.StateConnected)
	if v := mustValue(t, reg, "whatsapp_session_reconnects_total", map[string]string{"session": "s1"}); v != 1 {
		t.Errorf("reconnects after a state change: %v, want 1", v)
	}
}

// The webhook series exist from the start (results at 0), and count
// attempts; only deliveries feed the latency histogram.
func TestWebhookMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	for _, r := range []string{"delivered", "failed", "dead"} {
		if v, ok := value(t, reg, "whatsapp_webhook_deliveries_total", map[string]string{"result": r}); !ok || v != 0 {
			t.Errorf("webhook result %s: %v, %v; want a series at 0", r, v, ok)
		}
	}
	m.WebhookAttempt("failed", 0)
	m.WebhookAttempt("delivered", 1500*time.Millisecond)
	m.WebhookQueueDepth(7)
	if v := mustValue(t, reg, "whatsapp_webhook_deliveries_total", map[string]string{"result": "failed"}); v != 1 {
		t.Errorf("failed = %v", v)
	}
	if v := mustValue(t, reg, "whatsapp_webhook_queue_depth", nil); v != 7 {
		t.Errorf("queue depth = %v", v)
	}
	want := `
# HELP whatsapp_webhook_delivery_seconds Time from an event to the webhook endpoint's 2xx for it.
# TYPE whatsapp_webhook_delivery_seconds histogram
whatsapp_webhook_delivery_seconds_bucket{le="0.01"} 0
whatsapp_webhook_delivery_seconds_bucket{le="0.025"} 0
whatsapp_webhook_delivery_seconds_bucket{le="0.05"} 0
whatsapp_webhook_delivery_seconds_bucket{le="0.1"} 0
whatsapp_webhook_delivery_seconds_bucket{le="0.25"} 0
whatsapp_webhook_delivery_seconds_bucket{le="0.5"} 0
whatsapp_webhook_delivery_seconds_bucket{le="1"} 0
whatsapp_webhook_delivery_seconds_bucket{le="2.5"} 1
whatsapp_webhook_delivery_seconds_bucket{le="5"} 1
whatsapp_webhook_delivery_seconds_bucket{le="10"} 1
whatsapp_webhook_delivery_seconds_bucket{le="30"} 1
whatsapp_webhook_delivery_seconds_bucket{le="60"} 1
whatsapp_webhook_delivery_seconds_bucket{le="300"} 1
whatsapp_webhook_delivery_seconds_bucket{le="900"} 1
whatsapp_webhook_delivery_seconds_bucket{le="3600"} 1
whatsapp_webhook_delivery_seconds_bucket{le="+Inf"} 1
whatsapp_webhook_delivery_seconds_sum 1.5
whatsapp_webhook_delivery_seconds_count 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "whatsapp_webhook_delivery_seconds"); err != nil {
		t.Error(err)
	}
}

// The event stream's gauge and counter exist from the start at 0.
func TestEventStreamMetrics(t *testing.T) {
	m, reg := newMetrics(t)
	for _, name := range []string{"whatsapp_events_stream_clients", "whatsapp_events_stream_dropped_total"} {
		if v, ok := value(t, reg, name, nil); !ok || v != 0 {
			t.Errorf("%s: %v, %v; want a series at 0", name, v, ok)
		}
	}
	m.StreamClients(3)
	m.StreamDropped()
	m.StreamClients(2)
	if v := mustValue(t, reg, "whatsapp_events_stream_clients", nil); v != 2 {
		t.Errorf("clients = %v, want 2", v)
	}
	if v := mustValue(t, reg, "whatsapp_events_stream_dropped_total", nil); v != 1 {
		t.Errorf("dropped = %v, want 1", v)
	}
}

// The lease and hand-over series exist from the start at 0 and carry no
// session label; *Metrics is what a lease.Keeper and the actors report to.
func TestLeaseMetrics(t *testing.T) {
	var _ lease.Metrics = (*metrics.Metrics)(nil)
	var _ actors.Metrics = (*metrics.Metrics)(nil)
	m, reg := newMetrics(t)
	names := []string{"whatsapp_leases_held", "whatsapp_leases_lost_total", "whatsapp_lease_renew_failures_total", "whatsapp_handovers_total"}
	for _, name := range names {
		if v, ok := value(t, reg, name, nil); !ok || v != 0 {
			t.Errorf("%s: %v, %v; want a series at 0", name, v, ok)
		}
	}
	m.LeasesHeld(5)
	m.LeasesHeld(3)
	m.LeasesLost(2)
	m.LeaseRenewFailed()
	m.SessionHandedOver()
	m.SessionHandedOver()
	for name, want := range map[string]float64{names[0]: 3, names[1]: 2, names[2]: 1, names[3]: 2} {
		if v := mustValue(t, reg, name, nil); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
}

// connectSessions gives m n connected sessions, each with its counters at
// 0, its gauges set and a message counted.
func connectSessions(m *metrics.Metrics, n int) {
	for i := range n {
		s := fmt.Sprintf("session-%d", i)
		m.SetSessionState(s, sessions.StateConnected)
		m.SetSessionConnected(s, true)
		m.SetSessionLastConnected(s, time.Now())
		m.SessionMessage(s, sessions.DirectionIn)
	}
}

// sessionSeriesHeap is the live heap, in bytes per session, that the
// series of n connected sessions hold.
func sessionSeriesHeap(n int) float64 {
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	m := metrics.New(prometheus.NewRegistry())
	connectSessions(m, n)
	after := heap()
	runtime.KeepAlive(m)
	return float64(after-before) / float64(n)
}

// A session's 26 series are kept as numbers, not as client_golang vector
// children (11.9 KB per session before).
func TestSessionSeriesAreSmall(t *testing.T) {
	const limit = 2048
	if got := sessionSeriesHeap(2000); got > limit {
		t.Errorf("series of a session hold %.0f bytes of heap, want <= %d", got, limit)
	}
}

// BenchmarkSessionSeriesHeap prints the heap the series of one session
// hold (go test -run '^$' -bench SessionSeriesHeap ./metrics).
func BenchmarkSessionSeriesHeap(b *testing.B) {
	var got float64
	for range b.N {
		got = sessionSeriesHeap(1000)
	}
	b.ReportMetric(got, "heap-B/session")
}

// BenchmarkScrape gathers the metrics of 1,000 connected sessions, as a
// scrape of /metrics does (go test -run '^$' -bench Scrape ./metrics).
func BenchmarkScrape(b *testing.B) {
	reg := prometheus.NewRegistry()
	connectSessions(metrics.New(reg), 1000)
	b.ReportAllocs()
	for range b.N {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
