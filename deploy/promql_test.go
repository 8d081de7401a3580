package deploy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// grafanaVar matches Grafana's template variables in a query: $name, ${name}
// and ${name:format}.
var grafanaVar = regexp.MustCompile(`\$(?:\{([A-Za-z0-9_]+)(?::[^}]*)?\}|([A-Za-z0-9_]+))`)

// expandGrafana replaces the interval variables Grafana fills in for a
// Prometheus query ($__rate_interval, $__interval, $__range); any other
// variable is an error: the dashboard defines none for queries.
func expandGrafana(expr, interval, rng string) (string, error) {
	var err error
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch name {
		case "__rate_interval", "__interval":
			return interval
		case "__range":
			return rng
		}
		err = fmt.Errorf("unknown template variable %s in %q", m, expr)
		return m
	})
	return out, err
}

// metricRef is what a query needs of one metric: the label names it matches
// on or groups by.
type metricRef struct {
	labels map[string]bool
}

// promqlRefs parses a PromQL expression and returns, per metric name, the
// labels the expression uses with it: the selector's matchers, and the
// by(…) labels and on(…)/ignoring(…) labels of every aggregation or binary
// operation above it. Selectors without a metric name are an error (a query
// of every metric cannot be checked).
func promqlRefs(expr string) (map[string]*metricRef, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	refs := map[string]*metricRef{}
	var ierr error
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		used := map[string]bool{}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					ierr = fmt.Errorf("selector %s: match metric names exactly", vs)
				}
				name = m.Value
				continue
			}
			used[m.Name] = true
		}
		if name == "" {
			ierr = fmt.Errorf("selector %s has no metric name", vs)
			return nil
		}
		for _, p := range path {
			switch p := p.(type) {
			case *parser.AggregateExpr:
				for _, l := range p.Grouping {
					used[l] = true
				}
			case *parser.BinaryExpr:
				if p.VectorMatching != nil {
					for _, l := range p.VectorMatching.MatchingLabels {
						used[l] = true
					}
				}
			}
		}
		r := refs[name]
		if r == nil {
			r = &metricRef{labels: map[string]bool{}}
			refs[name] = r
		}
		maps.Copy(r.labels, used)
		return nil
	})
	return refs, ierr
}

func TestPromQLRefs(t *testing.T) {
	f := func(expr string, want map[string][]string) {
		t.Helper()
		refs, err := promqlRefs(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		got := map[string][]string{}
		for name, r := range refs {
			got[name] = slices.Sorted(maps.Keys(r.labels))
		}
		for name := range want {
			if want[name] == nil {
				want[name] = []string{}
			}
		}
		for name := range got {
			if got[name] == nil {
				got[name] = []string{}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s:\n got %v\nwant %v", expr, got, want)
		}
	}
	f(`up`, map[string][]string{"up": nil})
	f(`sum by (code) (rate(a_total{x="1",y=~"2.."}[5m]))`, map[string][]string{"a_total": {"code", "x", "y"}})
	f(`histogram_quantile(0.99, sum by (le, stage) (rate(h_bucket[1m])))`, map[string][]string{"h_bucket": {"le", "stage"}})
	f(`sum(rate(a[1m])) / on() group_left sum(b) or vector(0)`, map[string][]string{"a": nil, "b": nil})
	f(`x / on(job) y`, map[string][]string{"x": {"job"}, "y": {"job"}})
	f(`{__name__="n", k="v"} unless n offset 10m`, map[string][]string{"n": {"k"}})
	f(`count by (version) (sum by (version, job) (info))`, map[string][]string{"info": {"job", "version"}})
	for _, bad := range []string{`{job="x"}`, `{__name__=~"lead.*"}`, `sum(rate(x[5m])`, `rate(x)`} {
		if _, err := promqlRefs(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestExpandGrafana(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		got, err := expandGrafana(in, "1m", "1h")
		if err != nil || got != want {
			t.Errorf("%q = %q, %v; want %q", in, got, err, want)
		}
	}
	f(`rate(x[$__rate_interval])`, `rate(x[1m])`)
	f(`increase(x[${__range}]) + rate(y[$__interval])`, `increase(x[1h]) + rate(y[1m])`)
	if _, err := expandGrafana(`x{job="$job"}`, "1m", "1h"); err == nil || !strings.Contains(err.Error(), "$job") {
		t.Errorf("unknown variable: %v", err)
	}
}
