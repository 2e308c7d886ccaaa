package metrics_test

// The deploy tests read the queries in deploy/ with Prometheus's own PromQL
// parser, to find the metric names, label matchers and grouping labels they
// refer to. The module requires prometheus v0.49.1 for it, in tests only:
// the newest release whose requirements leave the modules built into the
// binary as they are (v0.50 raises OpenTelemetry; v0.316 also x/crypto,
// x/net and x/exp).

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// metricRef is one metric selector: its name and the labels it matches on.
type metricRef struct {
	name   string
	labels []string
}

// promqlRefs is what a query refers to.
type promqlRefs struct {
	metrics  []metricRef
	grouping []string // labels in by, without, on, ignoring, group_left, group_right
}

// parsePromQL returns the metrics and grouping labels expr refers to. A
// selector without a metric name is refused: every query here names one.
func parsePromQL(expr string) (promqlRefs, error) {
	var refs promqlRefs
	root, err := parser.ParseExpr(expr)
	if err != nil {
		return refs, err
	}
	var bad error
	parser.Inspect(root, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			ref := metricRef{name: n.Name}
			for _, m := range n.LabelMatchers {
				switch {
				case m.Name != labels.MetricName:
					ref.labels = append(ref.labels, m.Name)
				case m.Type == labels.MatchEqual:
					ref.name = m.Value // {__name__="a"} is a
				}
			}
			if ref.name == "" {
				bad = errors.Join(bad, fmt.Errorf("selector %s has no metric name", n))
			}
			refs.metrics = append(refs.metrics, ref)
		case *parser.AggregateExpr:
			refs.grouping = append(refs.grouping, n.Grouping...)
		case *parser.BinaryExpr:
			if vm := n.VectorMatching; vm != nil {
				refs.grouping = append(refs.grouping, vm.MatchingLabels...)
				refs.grouping = append(refs.grouping, vm.Include...)
			}
		}
		return nil
	})
	return refs, bad
}

func TestParsePromQL(t *testing.T) {
	tests := []struct {
		expr     string
		metrics  []string // name{label,label}
		grouping []string
		wantErr  bool
	}{
		{expr: `up`, metrics: []string{"up{}"}},
		{expr: `up{job="a"} == 0`, metrics: []string{"up{job}"}},
		{
			expr:     `sum by (state) (whatsapp_sessions{state!~"connected|stopped", job='x'})`,
			metrics:  []string{"whatsapp_sessions{state,job}"},
			grouping: []string{"state"},
		},
		{
			expr:     `histogram_quantile(0.95, sum by (route, le) (rate(h_bucket{route="/a/{id}"}[5m])))`,
			metrics:  []string{"h_bucket{route}"},
			grouping: []string{"route", "le"},
		},
		{
			expr:    "a / on (session) group_left () b offset 5m and bool c",
			wantErr: true, // bool only follows a comparison
		},
		{
			expr:    "a / on (session) group_left (state) b offset 5m and c",
			metrics: []string{"a{}", "b{}", "c{}"}, grouping: []string{"session", "state"},
		},
		{expr: `topk(10, sum(increase(x_total[1h:5m]))) > 1e-3 # comment y`, metrics: []string{"x_total{}"}},
		{expr: `sum without (instance) (rate(a[5m])) * 1000 + NaN`, metrics: []string{"a{}"}, grouping: []string{"instance"}},
		{expr: `{__name__="a"}`, metrics: []string{"a{}"}},
		{expr: `{job="a"}`, wantErr: true},
		{expr: `a{b="c"`, wantErr: true},
		{expr: `a{b=c}`, wantErr: true},
		{expr: `a{b="c"}[$__range]`, wantErr: true},
		{expr: `rate(a[5m]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			refs, err := parsePromQL(tt.expr)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error, refs %+v", refs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range refs.metrics {
				got = append(got, m.name+"{"+strings.Join(m.labels, ",")+"}")
			}
			if !slices.Equal(got, tt.metrics) {
				t.Errorf("metrics = %v, want %v", got, tt.metrics)
			}
			if !slices.Equal(refs.grouping, tt.grouping) {
				t.Errorf("grouping = %v, want %v", refs.grouping, tt.grouping)
			}
		})
	}
}
