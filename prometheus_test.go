package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whatsapp-sessions/whatsapp-sessions/internal/e2e"
	"github.com/whatsapp-sessions/whatsapp-sessions/internal/freeaddr"
)

// The real Prometheus scrapes the service (test mode, sessions connected,
// a restart, a reconnect and some API traffic), then evaluates every alert
// rule expression and every dashboard expression through its HTTP API.
//
// The rule, per expression:
//  1. It evaluates without an error.
//  2. Its base must return at least one series wherever data exists. The
//     base is the expression split at its top-level set operators (and,
//     or, unless), each operand with a top-level trailing comparison
//     against a number removed (`X == 1`, `X > 3`): such a filter is empty
//     whenever the condition is false (an alert that does not fire, no
//     session down), which is right. "Data exists" for an operand when
//     every series selector in it selects at least one series. A selector
//     may select nothing only if it is listed in mayBeEmpty (the 5xx
//     responses, which this test does not provoke); the operand may then
//     be empty, and the test logs it.
//
// Grafana's variables get the values Grafana would give them: $session
// and $node their "All" values, $__rate_interval and $__range windows longer than the
// test. The alert rules file is loaded too, and every rule must evaluate
// healthy. Skipped where the prometheus binary is missing, except in CI
// (CI=true), where .ci/run installs it and its absence is a failure.
func TestRealPrometheusEvaluatesTheDashboardAndAlerts(t *testing.T) {
	bin := e2e.Prometheus(t, "prometheus")
	root := t.TempDir()
	ids, _ := seed(t, root, 3)
	svc := e2e.Start(t, e2e.Config(root, nil))
	for _, id := range ids {
		svc.WaitState(id, "connected", e2e.Wait)
	}
	prom := startPrometheus(t, bin, strings.TrimPrefix(svc.Base, "http://"))
	prom.waitScrapes(t, 2)

	// Events between scrapes, so that increase() and rate() see them.
	svc.Call("POST", "/api/whatsapp/test/session/"+ids[1]+"/panic", "")
	svc.Call("POST", "/api/whatsapp/test/session/"+ids[2]+"/drop", "")
	svc.Call("GET", "/api/whatsapp/session/nobody/status", "") // a 404
	eventuallyOK(t, func() bool {
		a, b := svc.Status(ids[1]), svc.Status(ids[2])
		return a.Restarts == 1 && a.State == "connected" && b.Reconnects == 1 && b.State == "connected"
	})
	prom.waitScrapes(t, 2)

	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "10m", "${session}", ".+", "$session", ".+", "${node}", ".*", "$node", ".*")
	for _, q := range deployQueries(t) {
		expr := vars.Replace(q.expr)
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a Grafana variable this test does not know: %q", q.where, expr)
			continue
		}
		if _, err := prom.query(expr); err != nil {
			t.Errorf("%s: %q: %v", q.where, expr, err)
			continue
		}
		for _, operand := range baseOperands(expr) {
			n, err := prom.query(operand)
			if err != nil {
				t.Errorf("%s: base %q: %v", q.where, operand, err)
				continue
			}
			if n > 0 {
				continue
			}
			empty := prom.emptySelectors(t, operand)
			if len(empty) == 0 {
				t.Errorf("%s: %q returned nothing although every series it selects exists", q.where, operand)
			}
			for _, sel := range empty {
				if why, ok := mayBeEmpty[sel]; ok {
					t.Logf("%s: %q is empty, rightly: %s", q.where, operand, why)
				} else {
					t.Errorf("%s: %q is empty: %s selects no series on a service with sessions", q.where, operand, sel)
				}
			}
		}
	}

	// Grafana's session variable: label_values(whatsapp_session_state, session).
	var labels struct {
		Data []string `json:"data"`
	}
	prom.get(t, "/api/v1/label/session/values?"+url.Values{"match[]": {"whatsapp_session_state"}}.Encode(), &labels)
	for _, id := range ids {
		if !strings.Contains(strings.Join(labels.Data, ","), id) {
			t.Errorf("label_values(whatsapp_session_state, session) = %v, missing %s", labels.Data, id)
		}
	}

	// The alert rules loaded and evaluate without errors.
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		prom.get(t, "/api/v1/rules", &rules)
		var bad []string
		n := 0
		for _, g := range rules.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
				}
			}
		}
		if n > 0 && len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert rules: %d loaded, not healthy: %v\nprometheus log:\n%s", n, bad, prom.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRealPrometheusEvaluatesTheNodeView: the real Prometheus scrapes two
// clustered nodes (child processes on one Postgres and etcd, mutual TLS),
// and every expression of the dashboard's node view and of the cluster
// alerts returns series, the cluster's included, which a single node (the
// test above) does not have; the node variable lists both nodes.
func TestRealPrometheusEvaluatesTheNodeView(t *testing.T) {
	bin := e2e.Prometheus(t, "prometheus")
	dir := t.TempDir()
	serviceBin, fakeBin := filepath.Join(dir, "wss"), filepath.Join(dir, "fakewa")
	if err := errors.Join(e2e.Build(serviceBin), e2e.BuildFake(fakeBin)); err != nil {
		t.Fatal(err)
	}
	c := e2e.StartCluster(t, e2e.ClusterOptions{Bin: serviceBin, FakeBin: fakeBin, Nodes: 2})
	var targets []string
	for _, n := range c.Nodes {
		targets = append(targets, strings.TrimPrefix(n.Base, "http://"))
	}
	prom := startPrometheus(t, bin, targets...)
	e2e.WaitFor(t, 30*time.Second, "each node to see both members, scraped", func() (bool, string) {
		n, err := prom.query(`whatsapp_cluster_members == 2`)
		return err == nil && n == 2, fmt.Sprint(n, err)
	}, prom.log)
	prom.waitScrapes(t, 2)

	vars := strings.NewReplacer("$__rate_interval", "1m", "$__range", "10m", "${node}", ".*", "$node", ".*")
	checked := 0
	for _, q := range deployQueries(t) {
		if !strings.Contains(q.expr, "$node") && !strings.Contains(q.expr, "whatsapp_cluster_") && !strings.Contains(q.expr, "lease") {
			continue
		}
		checked++
		expr := vars.Replace(q.expr)
		for _, operand := range baseOperands(expr) {
			if n, err := prom.query(operand); err != nil || n == 0 {
				t.Errorf("%s: %q: %d series, %v", q.where, operand, n, err)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d node view and cluster alert queries found", checked)
	}
	var labels struct {
		Data []string `json:"data"`
	}
	prom.get(t, "/api/v1/label/node/values?"+url.Values{"match[]": {"whatsapp_cluster_members"}}.Encode(), &labels)
	if got := strings.Join(labels.Data, ","); got != "n1,n2" {
		t.Errorf("label_values(whatsapp_cluster_members, node) = %s, want n1,n2", got)
	}
}

// mayBeEmpty are the series selectors of deploy/ that rightly select
// nothing on this test's service, and why. Any other selector must select
// something.
var mayBeEmpty = map[string]string{
	`whatsapp_http_requests_total{code=~"5.."}`:    "the service served no 5xx response",
	`whatsapp_cluster_members`:                     single,
	`whatsapp_cluster_members{node=~".*"}`:         single,
	`whatsapp_cluster_handovers_total{node=~".*"}`: single,
	`whatsapp_cluster_adoptions_total{node=~".*"}`: single,
}

// single is why the cluster's series are empty here.
const single = "a single node (CLUSTER=none) has no cluster series"

// setOperators splits an expression at its top-level set operators.
var setOperators = regexp.MustCompile(`(?i)^\s*(and|or|unless)\b`)

// trailingComparison is a comparison against a number at the end of an
// operand.
var trailingComparison = regexp.MustCompile(`\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?-?[0-9.]+\s*$`)

// baseOperands is expr split at its top-level and, or and unless, each
// operand without a trailing comparison against a number.
func baseOperands(expr string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '{' || c == '[':
			depth++
		case c == ')' || c == '}' || c == ']':
			depth--
		case depth == 0 && (i == 0 || !isWordChar(expr[i-1])):
			if m := setOperators.FindStringIndex(expr[i:]); m != nil && m[0] == 0 {
				out = append(out, expr[start:i])
				i += m[1] - 1
				start = i + 1
			}
		}
	}
	out = append(out, expr[start:])
	for i, o := range out {
		out[i] = strings.TrimSpace(trailingComparison.ReplaceAllString(o, ""))
	}
	return out
}

func isWordChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func TestBaseOperands(t *testing.T) {
	for expr, want := range map[string]string{
		`up{job="w"} == 0`: `up{job="w"}`,
		`max by (session) (whatsapp_session_state{state!~"connected|stopped"}) == 1`: `max by (session) (whatsapp_session_state{state!~"connected|stopped"})`,
		"sum(a{state=\"connected\"}) == 0\nand\nsum(a{state!=\"stopped\"}) > 0":      `sum(a{state="connected"})|sum(a{state!="stopped"})`,
		`sum(rate(x{code=~"5.."}[1m])) / sum(rate(x[1m]))`:                           `sum(rate(x{code=~"5.."}[1m])) / sum(rate(x[1m]))`,
		`topk(10, sum by (session) (increase(y{reason!="or"}[1m])))`:                 `topk(10, sum by (session) (increase(y{reason!="or"}[1m])))`,
		`whatsapp_session_last_connected_timestamp_seconds{session=~".+"} * 1000`:    `whatsapp_session_last_connected_timestamp_seconds{session=~".+"} * 1000`,
	} {
		if got := strings.Join(baseOperands(expr), "|"); got != want {
			t.Errorf("baseOperands(%q) = %q, want %q", expr, got, want)
		}
	}
}

// promServer is a real Prometheus process scraping the service.
type promServer struct {
	base string
	log  *e2e.Logs
}

// startPrometheus runs bin on loopback with a temporary data directory,
// scraping targets every second with the service's API key, and the alert
// rules of deploy/ loaded. It is stopped at the end of the test.
func startPrometheus(t *testing.T, bin string, targets ...string) *promServer {
	t.Helper()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte(e2e.APIKey), 0o600); err != nil {
		t.Fatal(err)
	}
	rulesFile, err := filepath.Abs(filepath.Join("deploy", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: whatsapp-sessions
    metrics_path: /metrics
    authorization:
      credentials_file: %q
    static_configs:
      - targets: [%s]
`, rulesFile, keyFile, quoted(targets))
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeaddr.For(t)
	p := &promServer{base: "http://" + addr, log: &e2e.Logs{}}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	// One core is plenty for a few hundred series, and leaves the other to
	// the tests of other packages running alongside (some time the rate
	// of dials, which a busy machine skews).
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if st := cmd.ProcessState; st != nil {
			t.Logf("prometheus used %v of CPU", (st.UserTime() + st.SystemTime()).Round(time.Millisecond))
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited: %v\n%s", err, p.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready in time:\n%s", p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quoted is a YAML flow list's items: each of s quoted, comma-separated.
func quoted(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = strconv.Quote(x)
	}
	return strings.Join(q, ", ")
}

// get decodes the JSON answer of a GET on path.
func (p *promServer) get(t *testing.T, path string, out any) {
	t.Helper()
	resp, err := http.Get(p.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// query evaluates expr now and returns how many series (or 1 for a scalar
// or string) it returned.
func (p *promServer) query(expr string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/api/v1/query?"+url.Values{"query": {expr}}.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if body.Status != "success" {
		return 0, errors.New(body.Error)
	}
	switch body.Data.ResultType {
	case "scalar", "string":
		return 1, nil
	}
	return len(body.Data.Result), nil
}

// selectorPattern finds the series selectors in an expression: a metric
// name with its optional matchers.
var selectorPattern = regexp.MustCompile(`\b(up|whatsapp_[a-z0-9_]+)(\{[^}]*\})?`)

// emptySelectors lists the series selectors of expr that select nothing.
func (p *promServer) emptySelectors(t *testing.T, expr string) []string {
	t.Helper()
	var out []string
	for _, sel := range selectorPattern.FindAllString(expr, -1) {
		n, err := p.query("count(" + sel + ")")
		if err != nil {
			t.Errorf("count(%s): %v", sel, err)
		}
		if n == 0 {
			out = append(out, sel)
		}
	}
	return out
}

// waitScrapes waits until Prometheus has scraped the service n more times,
// successfully.
func (p *promServer) waitScrapes(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		p.get(t, "/api/v1/query?"+url.Values{"query": {`count_over_time(up{job="whatsapp-sessions"}[10m]) and up{job="whatsapp-sessions"} == 1`}}.Encode(), &body)
		if len(body.Data.Result) == 0 {
			return 0
		}
		var c int
		fmt.Sscan(fmt.Sprint(body.Data.Result[0].Value[1]), &c)
		return c
	}
	target := count() + n
	deadline := time.Now().Add(20 * time.Second)
	for count() < target {
		if time.Now().After(deadline) {
			var targets any
			p.get(t, "/api/v1/targets", &targets)
			t.Fatalf("prometheus did not scrape the service %d times: targets %v\n%s", n, targets, p.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
