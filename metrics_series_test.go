package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/sessions"
	"github.com/whatsapp-sessions/whatsapp-sessions/whatsapp/fakeserver"
	"gopkg.in/yaml.v3"
)

// query is one PromQL expression that deploy/ ships: an alert rule's or a
// Grafana panel's.
type query struct {
	where string // "alert X" or "panel Y"
	expr  string
	// alert: the rule fires when the expression returns a series.
	alert bool
}

// deployQueries reads every alert rule expression in deploy/alerts.yml and
// every panel expression in the Grafana dashboard.
func deployQueries(t *testing.T) []query {
	t.Helper()
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	data, err := os.ReadFile(filepath.Join("deploy", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	var out []query
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, query{where: "alert " + r.Alert, expr: strings.TrimSpace(r.Expr), alert: true})
		}
	}
	data, err = os.ReadFile(filepath.Join("deploy", "grafana", "dashboards", "whatsapp-sessions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, query{where: "panel " + p.Title, expr: tg.Expr})
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries found in deploy/", len(out))
	}
	return out
}

// histograms are the service's histogram families.
var histograms = map[string]bool{"whatsapp_restore_duration_seconds": true, "whatsapp_http_request_duration_seconds": true,
	"whatsapp_webhook_delivery_seconds": true}

// queriedMetrics is every whatsapp_ metric family deploy/ queries (a
// histogram's _bucket, _sum and _count series by the family's name).
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	name := regexp.MustCompile(`\bwhatsapp_[a-z0-9_]+`)
	var out []string
	for _, q := range deployQueries(t) {
		for _, n := range name.FindAllString(q.expr, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(n, suffix); ok && histograms[base] {
					n = base
				}
			}
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return out
}

// clusterFamilies are the families only a clustered node exports (package
// cluster's): a single node has none of them, and
// TestRealPrometheusEvaluatesTheNodeView checks them on two nodes.
var clusterFamilies = []string{"whatsapp_cluster_members", "whatsapp_cluster_handovers_total", "whatsapp_cluster_adoptions_total"}

// A fresh service with N sessions exports, before anything happened to
// them, every series the dashboard and the alerts query: each per-session
// family has a child for every session (and every disconnect reason and
// message direction), so that increase() and rate() count each session's
// first event.
func TestEveryQueriedSeriesExistsForEverySession(t *testing.T) {
	f := e2e.NewFake(t, fakeserver.Options{})
	root := t.TempDir()
	ids, _ := seed(t, root, 3)
	svc := e2e.Start(t, e2e.Config(root, f))
	for _, id := range ids {
		svc.WaitState(id, "connected", e2e.Wait)
	}
	families := scrape(t, svc)
	// Children beyond the session label, per family: every value known in
	// advance.
	extra := map[string]int{
		"whatsapp_session_state":             len(sessions.States),  // one-hot over the states
		"whatsapp_session_disconnects_total": len(sessions.Reasons), // the reasons
		"whatsapp_session_messages_total":    2,                     // in, out
	}
	names := queriedMetrics(t)
	t.Logf("deploy/ queries %d whatsapp_ families: %v", len(names), names)
	for _, name := range names {
		if slices.Contains(clusterFamilies, name) {
			continue
		}
		mf := families[name]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Errorf("%s: no series on a fresh service", name)
			continue
		}
		perSession := map[string]int{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "session" {
					perSession[lp.GetValue()]++
				}
			}
		}
		if len(perSession) == 0 {
			continue // a fleet-wide family
		}
		want := max(extra[name], 1)
		for _, id := range ids {
			if perSession[id] != want {
				t.Errorf("%s{session=%q}: %d series, want %d", name, id, perSession[id], want)
			}
		}
		if len(perSession) != len(ids) {
			t.Errorf("%s: series for %d sessions, want %d", name, len(perSession), len(ids))
		}
	}
	for _, name := range []string{"whatsapp_session_restarts_total", "whatsapp_session_reconnects_total",
		"whatsapp_session_disconnects_total", "whatsapp_session_messages_total"} {
		if !slices.Contains(names, name) {
			t.Errorf("deploy/ no longer queries %s: this test would not see it", name)
		}
	}
	if v, ok := value(families, "whatsapp_restore_results_total", map[string]string{"result": "failed"}); !ok || v != 0 {
		t.Errorf("restore results failed: %v, %v; want a series at 0", v, ok)
	}
}
