package metrics_test

// A small PromQL scanner for the deploy tests: enough to find the metric
// names, label matchers and grouping labels of the queries in deploy/,
// without pulling the Prometheus server into the module graph.

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

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

type tokenKind int

const (
	tokIdent   tokenKind = iota
	tokPunct             // a single character such as ( ) , + == etc.
	tokBraces            // {...}: label matchers, text without the braces
	tokBracket           // [...]: range or subquery
	tokOther             // numbers, durations, strings
)

type token struct {
	kind tokenKind
	text string
}

var (
	aggregators = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
	groupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	otherKeywords    = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
	matcherRE        = regexp.MustCompile("^\\s*([a-zA-Z_][a-zA-Z0-9_]*)\\s*(=~|!~|!=|=)\\s*(\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`)\\s*(,|$)")
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lexPromQL splits expr into tokens, keeping label matchers and ranges whole.
func lexPromQL(expr string) ([]token, error) {
	var toks []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokOther, expr[i:end]})
			i = end
		case c == '{' || c == '[':
			closer := byte('}')
			kind := tokBraces
			if c == '[' {
				closer, kind = ']', tokBracket
			}
			j := i + 1
			for j < len(expr) && expr[j] != closer {
				if q := expr[j]; q == '"' || q == '\'' || q == '`' {
					end, err := skipString(expr, j)
					if err != nil {
						return nil, err
					}
					j = end
					continue
				}
				j++
			}
			if j == len(expr) {
				return nil, errorf("unclosed %c", c)
			}
			if kind == tokBracket && strings.Contains(expr[i+1:j], "$") {
				return nil, errorf("unreplaced Grafana variable in [%s]", expr[i+1:j])
			}
			toks = append(toks, token{kind, expr[i+1 : j]})
			i = j + 1
		case isIdentStart(c):
			j := i
			for j < len(expr) && isIdentChar(expr[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i
			for j < len(expr) && (isIdentChar(expr[j]) || expr[j] == '.' ||
				((expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tokOther, expr[i:j]})
			i = j
		case c == '$':
			return nil, errorf("unreplaced Grafana variable at %q", expr[i:])
		default:
			toks = append(toks, token{tokPunct, string(c)})
			i++
		}
	}
	return toks, nil
}

// skipString returns the index just after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	quote := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && quote != '`':
			j++
		case s[j] == quote:
			return j + 1, nil
		}
	}
	return 0, errorf("unterminated string at %q", s[i:])
}

// matcherLabels returns the label names of the matchers inside {...}.
func matcherLabels(s string) ([]string, error) {
	var labels []string
	for strings.TrimSpace(s) != "" {
		m := matcherRE.FindStringSubmatch(s)
		if m == nil {
			return nil, errorf("bad label matchers {%s}", s)
		}
		labels = append(labels, m[1])
		s = s[len(m[0]):]
	}
	return labels, nil
}

// parsePromQL returns the metrics and grouping labels expr refers to.
func parsePromQL(expr string) (promqlRefs, error) {
	var refs promqlRefs
	toks, err := lexPromQL(expr)
	if err != nil {
		return refs, err
	}
	next := func(i int) token {
		if i+1 < len(toks) {
			return toks[i+1]
		}
		return token{kind: tokOther}
	}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		switch tok.kind {
		case tokBraces:
			// Braces not consumed after a metric name: a selector by labels only.
			return refs, errorf("selector {%s} has no metric name", tok.text)
		case tokIdent:
		default:
			continue
		}
		word := strings.ToLower(tok.text)
		n := next(i)
		switch {
		case slices.Contains(groupingKeywords, word):
			if n.text != "(" {
				return refs, errorf("%s without a label list", word)
			}
			i += 2
			for ; i < len(toks) && toks[i].text != ")"; i++ {
				if toks[i].kind == tokIdent {
					refs.grouping = append(refs.grouping, toks[i].text)
				}
			}
		case slices.Contains(otherKeywords, word):
		case n.kind == tokPunct && n.text == "(":
			// A function or an aggregation.
		case slices.Contains(aggregators, word) && n.kind == tokIdent:
			// sum by (x) (...): the grouping clause comes next.
		default:
			ref := metricRef{name: tok.text}
			if n.kind == tokBraces {
				if ref.labels, err = matcherLabels(n.text); err != nil {
					return refs, err
				}
				i++
			}
			refs.metrics = append(refs.metrics, ref)
		}
	}
	return refs, nil
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
			metrics: []string{"a{}", "b{}", "c{}"}, grouping: []string{"session"},
		},
		{expr: `topk(10, sum(increase(x_total[1h:5m]))) > 1e-3 # comment y`, metrics: []string{"x_total{}"}},
		{expr: `sum without (instance) (rate(a[5m])) * 1000 + NaN`, metrics: []string{"a{}"}, grouping: []string{"instance"}},
		{expr: `{__name__="a"}`, wantErr: true},
		{expr: `a{b="c"`, wantErr: true},
		{expr: `a{b=c}`, wantErr: true},
		{expr: `a{b="c"}[$__range]`, wantErr: true},
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
