package metrics_test

// These tests keep deploy/ honest: every metric and label that the alert
// rules and the Grafana dashboard query must exist in the registry built by
// metrics.New, so that renaming a metric breaks a test instead of silently
// emptying a panel or disarming an alert.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"gopkg.in/yaml.v3"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/metrics"
)

const deployDir = "../deploy"

// scrapeMetrics are series that Prometheus itself adds for every target.
var scrapeMetrics = map[string][]string{
	"up": nil,
}

// clusterMetrics are the series package cluster registers on a clustered
// node (cluster/metrics.go), with node=NODE_NAME like every series there.
var clusterMetrics = map[string][]string{
	"whatsapp_cluster_members":         {"node"},
	"whatsapp_cluster_handovers_total": {"node"},
	"whatsapp_cluster_adoptions_total": {"node"},
}

// scrapeLabels are labels that Prometheus adds to every scraped series, and
// le, which the _bucket series of a histogram carry.
var scrapeLabels = []string{"job", "instance", "le", "__name__"}

// exposedMetrics returns every series name a scrape of a clustered node's
// registry exposes once every method of metrics.New's collectors has been
// called, with the label names each carries (the scrape labels included).
// A single node exposes the same series without the node label, and none
// of clusterMetrics; the dashboard selects nodes with node=~".*" when all
// are chosen, which matches series without the label too.
func exposedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	// As app.metricsRegisterer does in cluster mode.
	touchAll(metrics.New(prometheus.WrapRegistererWith(prometheus.Labels{"node": "node-1"}, reg)), "user123")
	families := gather(t, reg)

	names := map[string][]string{}
	add := func(name string, labels []string) {
		names[name] = append(slices.Clone(labels), scrapeLabels...)
	}
	for name, labels := range scrapeMetrics {
		add(name, labels)
	}
	for name, labels := range clusterMetrics {
		add(name, labels)
	}
	for name, mf := range families {
		var labels []string
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !slices.Contains(labels, lp.GetName()) {
					labels = append(labels, lp.GetName())
				}
			}
		}
		add(name, labels)
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			add(name+"_bucket", labels)
			add(name+"_sum", labels)
			add(name+"_count", labels)
		case dto.MetricType_SUMMARY:
			add(name+"_sum", labels)
			add(name+"_count", labels)
		}
	}
	return names
}

// allLabels returns every label name any exposed series carries.
func allLabels(exposed map[string][]string) []string {
	var all []string
	for _, labels := range exposed {
		for _, l := range labels {
			if !slices.Contains(all, l) {
				all = append(all, l)
			}
		}
	}
	return all
}

// checkQuery fails the test if expr names a metric that is not exposed,
// matches a label that metric does not carry, or groups by a label no metric
// carries.
func checkQuery(t *testing.T, where, expr string, exposed map[string][]string) {
	t.Helper()
	refs, err := parsePromQL(expr)
	if err != nil {
		t.Errorf("%s: %v in %q", where, err, expr)
		return
	}
	if len(refs.metrics) == 0 {
		t.Errorf("%s: no metric found in %q", where, expr)
	}
	for _, m := range refs.metrics {
		labels, ok := exposed[m.name]
		if !ok {
			t.Errorf("%s: metric %s is not exposed by metrics.New (query %q)", where, m.name, expr)
			continue
		}
		for _, l := range m.labels {
			if !slices.Contains(labels, l) {
				t.Errorf("%s: metric %s has no label %q (query %q)", where, m.name, l, expr)
			}
		}
	}
	known := allLabels(exposed)
	for _, l := range refs.grouping {
		if !slices.Contains(known, l) {
			t.Errorf("%s: grouping label %q is on no exposed metric (query %q)", where, l, expr)
		}
	}
}

func TestAlertRulesUseExposedMetrics(t *testing.T) {
	exposed := exposedMetrics(t)

	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join(deployDir, "alerts.yml"), &file)

	var alerts []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			where := "alerts.yml " + g.Name + "/" + r.Alert
			if r.Alert == "" {
				t.Errorf("%s: rule without an alert name (expr %q)", where, r.Expr)
			}
			if slices.Contains(alerts, r.Alert) {
				t.Errorf("%s: duplicate alert name", where)
			}
			alerts = append(alerts, r.Alert)
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for: %v", where, err)
				}
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", where, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s: no summary annotation", where)
			}
			checkQuery(t, where, r.Expr, exposed)
		}
	}
	for _, want := range []string{"WhatsAppSessionDown", "WhatsAppSessionRestartLoop", "WhatsAppRestoreFailures", "WhatsAppNoSessionsConnected"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no %s alert", want)
		}
	}
}

// TestAlertRulesHaveUnitTests checks that deploy/alerts_test.yml, the
// promtool unit tests, exercises every alert.
func TestAlertRulesHaveUnitTests(t *testing.T) {
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join(deployDir, "alerts.yml"), &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				AlertName string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, filepath.Join(deployDir, "alerts_test.yml"), &tests)

	tested := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			tested[a.AlertName] = true
		}
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if !tested[r.Alert] {
				t.Errorf("alert %s has no test in alerts_test.yml", r.Alert)
			}
		}
	}
}

// TestPromtool runs promtool on the Prometheus files when it is installed
// (Debian: apt-get install prometheus), and is skipped otherwise, except in
// CI (CI=true), where .ci/run installs it and its absence is a failure.
func TestPromtool(t *testing.T) {
	promtool := e2e.Prometheus(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", promConfigWithKeyFile(t)},
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = deployDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// apiKeyFile is where the compose file puts the API key for Prometheus.
const apiKeyFile = "/run/secrets/api_key"

// promConfigWithKeyFile copies prometheus.yml (and the rules it loads) into
// a temporary directory, with the API key file it reads pointing at a file
// that exists here, since promtool checks that it does.
func promConfigWithKeyFile(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	key := filepath.Join(dir, "api_key")
	if err := os.WriteFile(key, []byte("promtool-check-key-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(deployDir, "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), apiKeyFile) {
		t.Fatalf("prometheus.yml does not read the API key from %s", apiKeyFile)
	}
	cfg = []byte(strings.ReplaceAll(string(cfg), apiKeyFile, key))
	rules, err := os.ReadFile(filepath.Join(deployDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"prometheus.yml": cfg, "alerts.yml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "prometheus.yml")
}

func TestDashboardUsesExposedMetrics(t *testing.T) {
	exposed := exposedMetrics(t)

	data, err := os.ReadFile(filepath.Join(deployDir, "grafana", "dashboards", "whatsapp-sessions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string            `json:"uid"`
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("dashboard has no uid: provisioning would give it a new one on every start")
	}

	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	exprs := map[string]string{} // expr -> where
	ids := map[float64]bool{}
	walkJSON(doc, "", func(path string, obj map[string]any) {
		if e, ok := obj["expr"].(string); ok {
			exprs[e] = path
		}
		if obj["type"] != nil && obj["gridPos"] != nil {
			id, _ := obj["id"].(float64)
			if ids[id] {
				t.Errorf("panel %v %q: duplicate id", id, obj["title"])
			}
			ids[id] = true
		}
	})
	if len(exprs) < 20 {
		t.Errorf("found only %d panel queries in the dashboard", len(exprs))
	}
	for expr, where := range exprs {
		checkQuery(t, "dashboard "+where, grafanaToPromQL(expr), exposed)
	}

	var sessionVar, nodeVar bool
	for _, v := range dash.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := variableQuery(t, v.Query)
		where := "dashboard variable " + v.Name
		selector, label, err := parseLabelValues(q)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		checkQuery(t, where, selector, exposed)
		if v.Name == "session" {
			sessionVar = true
			if label != "session" || selector != "whatsapp_session_state" {
				t.Errorf("%s: query %q, want label_values(whatsapp_session_state, session)", where, q)
			}
		}
		if v.Name == "node" {
			nodeVar = true
			if label != "node" {
				t.Errorf("%s: query %q lists no node label", where, q)
			}
		}
	}
	if !sessionVar {
		t.Error("dashboard has no session template variable")
	}
	if !nodeVar {
		t.Error("dashboard has no node template variable")
	}
}

func TestPrometheusConfig(t *testing.T) {
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			Authorization struct {
				Type            string `yaml:"type"`
				CredentialsFile string `yaml:"credentials_file"`
			} `yaml:"authorization"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(deployDir, "prometheus.yml"), &cfg)

	if !slices.Contains(cfg.RuleFiles, "alerts.yml") {
		t.Errorf("rule_files = %v, want alerts.yml", cfg.RuleFiles)
	}
	var found bool
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "whatsapp-sessions" {
			continue
		}
		found = true
		if sc.MetricsPath != "/metrics" {
			t.Errorf("metrics_path = %q, want /metrics", sc.MetricsPath)
		}
		// /metrics on the API port needs the API key.
		if a := sc.Authorization; a.CredentialsFile != apiKeyFile || (a.Type != "" && a.Type != "Bearer") {
			t.Errorf("authorization = %+v, want the Bearer key from %s", a, apiKeyFile)
		}
		if len(sc.StaticConfigs) != 1 || !slices.Equal(sc.StaticConfigs[0].Targets, []string{"whatsapp-sessions:8080"}) {
			t.Errorf("static_configs = %+v, want target whatsapp-sessions:8080", sc.StaticConfigs)
		}
	}
	if !found {
		t.Error("no whatsapp-sessions scrape job")
	}
}

func TestComposeFile(t *testing.T) {
	var compose struct {
		Services map[string]struct {
			Build       any               `yaml:"build"`
			Image       string            `yaml:"image"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			Secrets     []string          `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]struct {
			Environment string `yaml:"environment"`
		} `yaml:"secrets"`
	}
	readYAML(t, filepath.Join(deployDir, "docker-compose.yml"), &compose)

	svc, ok := compose.Services["whatsapp-sessions"]
	if !ok {
		t.Fatal("no whatsapp-sessions service")
	}
	if svc.Build == nil {
		t.Error("whatsapp-sessions is not built from the Dockerfile")
	}
	if key := svc.Environment["API_KEY"]; !strings.HasPrefix(key, "${API_KEY:?") {
		t.Errorf("API_KEY = %q: it must come from the environment and be required", key)
	}
	if dir := svc.Environment["SESSIONS_DIR"]; !slices.Contains(svc.Volumes, "sessions:"+dir) {
		t.Errorf("SESSIONS_DIR %q is not on the sessions volume (volumes %v)", dir, svc.Volumes)
	}
	for name, want := range map[string][]string{
		"prometheus": {"./prometheus.yml:", "./alerts.yml:"},
		"grafana":    {"./grafana/provisioning:", "./grafana/dashboards:"},
	} {
		s, ok := compose.Services[name]
		if !ok {
			t.Errorf("no %s service", name)
			continue
		}
		for _, prefix := range want {
			if !slices.ContainsFunc(s.Volumes, func(v string) bool { return strings.HasPrefix(v, prefix) }) {
				t.Errorf("%s does not mount %s", name, prefix)
			}
		}
		for _, v := range s.Volumes {
			if src, _, _ := strings.Cut(v, ":"); strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(deployDir, src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
	// Prometheus reads the API key from the secret api_key, made from the
	// same API_KEY, at /run/secrets/api_key.
	if !slices.Contains(compose.Services["prometheus"].Secrets, filepath.Base(apiKeyFile)) {
		t.Errorf("prometheus does not get the secret %s", filepath.Base(apiKeyFile))
	}
	if s := compose.Secrets[filepath.Base(apiKeyFile)]; s.Environment != "API_KEY" {
		t.Errorf("secret %s = %+v, want it made from the environment variable API_KEY", filepath.Base(apiKeyFile), s)
	}
	if g := compose.Services["grafana"].Environment; g["GF_AUTH_ANONYMOUS_ENABLED"] != "true" || g["GF_AUTH_ANONYMOUS_ORG_ROLE"] != "Viewer" {
		t.Errorf("grafana does not allow anonymous viewers: %v", g)
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// walkJSON calls f on every object in v, with a path made of panel titles.
func walkJSON(v any, path string, f func(path string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		if title, ok := v["title"].(string); ok {
			path += "/" + title
		}
		f(path, v)
		for _, child := range v {
			walkJSON(child, path, f)
		}
	case []any:
		for _, child := range v {
			walkJSON(child, path, f)
		}
	}
}

// variableQuery returns the query of a template variable, stored either as a
// string or, in newer Grafana versions, as {"query": "..."}.
func variableQuery(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	var obj struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Errorf("variable query %s: %v", raw, err)
	}
	return obj.Query
}

// grafanaToPromQL replaces Grafana's $variables with values PromQL accepts,
// so that a query can be checked as PromQL.
func grafanaToPromQL(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "5m",
		"$__interval", "1m",
		"$__range", "1h",
		"${session}", "x",
		"$session", "x",
		"${node}", "x",
		"$node", "x",
	).Replace(expr)
}

// parseLabelValues splits Grafana's label_values(selector, label).
func parseLabelValues(q string) (selector, label string, err error) {
	q = strings.TrimSpace(q)
	inner, ok := strings.CutPrefix(q, "label_values(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", "", fmt.Errorf("query %q is not label_values(selector, label)", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", "", fmt.Errorf("query %q names no metric: label_values(label) queries every series", q)
	}
	return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), nil
}
