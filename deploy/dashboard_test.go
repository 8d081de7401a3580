package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// pendingMetrics are names the dashboard or the alerts query that no role
// exports yet, because another change adds them. The test fails when one of
// them appears in a role's /metrics: then remove it from this list.
var pendingMetrics = map[string]string{}

// targetMetrics are series Prometheus makes for every scrape target, and
// targetLabels the labels it attaches to every scraped series.
var (
	targetMetrics = map[string]bool{"up": true}
	targetLabels  = map[string]bool{"job": true, "instance": true}
)

// requiredPanels are the metrics the issue asks the dashboard to show: ingest
// rate and outcomes, produce latency, consumer lag per group, scored events
// and MQLs, accept→score latency, sink rows and insert latency, dead letters,
// Redis and ClickHouse errors.
var requiredPanels = map[string]string{
	"leadstream_collector_events_total":                "ingest rate",
	"leadstream_collector_requests_total":              "request outcomes (2xx/4xx/429/503)",
	"leadstream_kafka_produce_duration_seconds_bucket": "produce latency",
	"leadstream_kafka_consumer_lag_records":            "consumer lag per group",
	"leadstream_processor_events_total":                "scored events and dead letters",
	"leadstream_processor_mql_published_total":         "MQLs per second",
	"leadstream_processor_score_delay_seconds_bucket":  "accept→score latency",
	"leadstream_sink_rows_total":                       "sink rows/s",
	"leadstream_sink_insert_duration_seconds_bucket":   "sink insert latency",
	"leadstream_sink_deadletter_total":                 "sink dead letters",
	"leadstream_kafka_handler_errors_total":            "Redis (processor) and ClickHouse (sink) batch failures",
	"leadstream_sink_insert_errors_total":              "ClickHouse insert errors",
}

type grafanaTarget struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Datasource json.RawMessage `json:"datasource"`
}

type grafanaPanel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  json.RawMessage `json:"datasource"`
	GridPos     struct{ H, W, X, Y int }
	Targets     []grafanaTarget `json:"targets"`
	Panels      []grafanaPanel  `json:"panels"` // a collapsed row's panels
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name, Type string
			Query      any
		}
	}
}

func readDashboard(t testing.TB) *grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "grafana", "leadstream.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("leadstream.json: %v", err)
	}
	return &d
}

// queries returns the dashboard's queries, each named by panel and refId.
func (d *grafanaDashboard) queries() map[string]string {
	out := map[string]string{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out[fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)] = tg.Expr
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// alertQueries returns the alert rules' expressions, named by alert.
func alertQueries(t testing.TB) map[string]string {
	out := map[string]string{}
	for _, g := range readAlertRules(t).Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// TestDashboardJSON checks the dashboard's form: a Prometheus datasource
// variable used by every panel and query, unique panel ids, panels inside the
// 24-column grid, a query in every graph that parses as PromQL, and a panel
// for everything the issue lists.
func TestDashboardJSON(t *testing.T) {
	d := readDashboard(t)
	if d.UID != "leadstream" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want uid leadstream, a title and a current schema", d.UID, d.Title, d.SchemaVersion)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus")
	}
	if !hasDS {
		t.Error(`no templating variable "datasource" of type datasource (query prometheus): panels must not hard-code a datasource`)
	}
	ids := map[int]string{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d is zero or also used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Title == "" || p.Description == "" {
				t.Errorf("panel %d: needs a title and a description", p.ID)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			dsRefs := []json.RawMessage{p.Datasource}
			refIDs := map[string]bool{}
			for _, tg := range p.Targets {
				dsRefs = append(dsRefs, tg.Datasource)
				if tg.RefID == "" || refIDs[tg.RefID] {
					t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
				}
				refIDs[tg.RefID] = true
			}
			for _, raw := range dsRefs {
				var ds struct{ Type, UID string }
				if err := json.Unmarshal(raw, &ds); err != nil || ds.Type != "prometheus" || ds.UID != "${datasource}" {
					t.Errorf("panel %q: datasource %s, want {\"type\":\"prometheus\",\"uid\":\"${datasource}\"}", p.Title, raw)
				}
			}
		}
	}
	walk(d.Panels)

	used := map[string]bool{}
	for name, q := range d.queries() {
		expr, err := expandGrafana(q, "1m", "1h")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		refs, err := promqlRefs(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", name, q, err)
		}
		for m := range refs {
			used[m] = true
		}
	}
	for m, what := range requiredPanels {
		if !used[m] {
			t.Errorf("the dashboard does not show %s (%s)", what, m)
		}
	}
}

// exported is what the roles' /metrics expose: per series name (histograms
// as _bucket, _sum and _count), the label names seen with it.
type exported map[string]map[string]bool

func (e exported) add(mf *dto.MetricFamily) {
	series := func(name string, ls []*dto.LabelPair, extra ...string) {
		set := e[name]
		if set == nil {
			set = map[string]bool{}
			e[name] = set
		}
		for _, l := range ls {
			set[l.GetName()] = true
		}
		for _, l := range extra {
			set[l] = true
		}
	}
	name := mf.GetName()
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			series(name+"_bucket", m.GetLabel(), "le")
			series(name+"_sum", m.GetLabel())
			series(name+"_count", m.GetLabel())
		case dto.MetricType_SUMMARY:
			series(name, m.GetLabel(), "quantile")
			series(name+"_sum", m.GetLabel())
			series(name+"_count", m.GetLabel())
		default:
			series(name, m.GetLabel())
		}
	}
}

// scrape reads a role's /metrics in the text format.
func scrape(t *testing.T, url string, into exported) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", url, err)
	}
	for _, mf := range mfs {
		into.add(mf)
	}
}

// TestDashboardAndAlertMetricsExported runs the four roles (the binary built
// as the Dockerfile builds it) against the test services, sends a journey
// that makes an MQL (notified to a webhook after one retry), failed requests
// and an undecodable record, scrapes every
// role's /metrics, and checks that every metric the dashboard and the alert
// rules query is exported by some role with the labels the queries use
// (pendingMetrics aside). Then a real Prometheus scrapes the roles with the
// alert rules loaded: every dashboard query must evaluate and return data,
// every rule must evaluate without error, and the dead letter must fire
// LeadstreamDeadLetters and nothing else.
func TestDashboardAndAlertMetricsExported(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the roles")
	}
	bin, _, _ := leadstreamBinary(t)
	s := newStack(t)
	s.run(t, processLauncher(bin))

	got := exported{}
	for _, r := range roles {
		scrape(t, "http://"+s.addrs[r]+"/metrics", got)
	}
	// The journey has been counted by the roles' own metrics by now.
	for _, want := range []string{"leadstream_processor_score_delay_seconds_bucket", "leadstream_sink_deadletter_total", "leadstream_sink_rows_total",
		"leadstream_notifier_delivery_delay_seconds_bucket"} {
		if got[want] == nil {
			t.Errorf("no role exports %s after the journey", want)
		}
	}

	queries := readDashboard(t).queries()
	maps.Copy(queries, alertQueries(t))
	names := slices.Sorted(maps.Keys(queries))
	for _, name := range names {
		expr, err := expandGrafana(queries[name], "1m", "1h")
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		refs, err := promqlRefs(expr)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for _, metric := range slices.Sorted(maps.Keys(refs)) {
			if _, ok := pendingMetrics[metric]; ok || targetMetrics[metric] {
				continue
			}
			have := got[metric]
			if have == nil {
				t.Errorf("%s queries %s, which no role exports", name, metric)
				continue
			}
			for l := range refs[metric].labels {
				if !have[l] && !targetLabels[l] {
					t.Errorf("%s uses label %q of %s, which has only %v", name, l, metric, slices.Sorted(maps.Keys(have)))
				}
			}
		}
	}
	for metric, what := range pendingMetrics {
		if got[metric] != nil {
			t.Errorf("%s (%s) is exported now: remove it from pendingMetrics", metric, what)
		}
	}

	t.Run("prometheus", func(t *testing.T) { checkInPrometheus(t, s) })
}

// checkInPrometheus runs Debian's Prometheus on loopback, scraping the roles
// every second under the job names of deploy/prometheus/prometheus.yml, with
// deploy/prometheus/alerts.yaml loaded.
func checkInPrometheus(t *testing.T, s *stack) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		testsvc.Required(t, "prometheus", "Debian's prometheus package; deploy/install-deps.sh --test installs it")
	}
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\nscrape_configs:\n",
		filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yaml"))
	for _, r := range roles {
		fmt.Fprintf(&cfg, "  - {job_name: leadstream-%s, static_configs: [{targets: [%q]}]}\n", r, s.addrs[r])
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	waitReady(t, "prometheus", base+"/-/ready")

	api := func(path string, params url.Values, into any) error {
		resp, err := http.Get(base + path + "?" + params.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var env struct {
			Status, Error string
			Data          json.RawMessage
		}
		if err := json.Unmarshal(b, &env); err != nil {
			return fmt.Errorf("%s: %s", resp.Status, b)
		}
		if env.Status != "success" {
			return fmt.Errorf("%s: %s", env.Status, env.Error)
		}
		return json.Unmarshal(env.Data, into)
	}

	testsvc.Eventually(t, "prometheus scrapes the roles", 30*time.Second, 250*time.Millisecond, func() (bool, string) {
		var targets struct {
			ActiveTargets []struct {
				Labels    map[string]string
				Health    string
				LastError string
			}
		}
		if err := api("/api/v1/targets", nil, &targets); err != nil {
			return false, err.Error()
		}
		up := 0
		for _, tg := range targets.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
		}
		return up == len(roles), fmt.Sprintf("%+v", targets.ActiveTargets)
	})

	// Every dashboard query evaluates and returns data (with 5 s rate windows
	// over the 1 s scrapes), except those that need a pending metric.
	queries := readDashboard(t).queries()
	for _, name := range slices.Sorted(maps.Keys(queries)) {
		expr, err := expandGrafana(queries[name], "5s", "1m")
		if err != nil {
			t.Fatal(err)
		}
		refs, _ := promqlRefs(expr)
		needsPending := false
		for m := range refs {
			_, p := pendingMetrics[m]
			needsPending = needsPending || p
		}
		testsvc.Eventually(t, name+" returns data in Prometheus", 20*time.Second, 250*time.Millisecond, func() (bool, string) {
			var res struct {
				Result []json.RawMessage
			}
			if err := api("/api/v1/query", url.Values{"query": {expr}}, &res); err != nil {
				t.Fatalf("%s: %q: %v", name, expr, err)
			}
			return len(res.Result) > 0 || needsPending, fmt.Sprintf("%q: no series", expr)
		})
	}

	// Every rule evaluates cleanly; the undecodable record fires
	// LeadstreamDeadLetters, and no other alert fires on this healthy stack.
	testsvc.Eventually(t, "alert rules evaluated, LeadstreamDeadLetters firing", 20*time.Second, 250*time.Millisecond, func() (bool, string) {
		var rules struct {
			Groups []struct {
				Rules []struct {
					Name, Health, LastError, State string
					LastEvaluation                 time.Time
				}
			}
		}
		if err := api("/api/v1/rules", url.Values{"type": {"alert"}}, &rules); err != nil {
			return false, err.Error()
		}
		var state []string
		ok, n := true, 0
		for _, g := range rules.Groups {
			for _, r := range g.Rules {
				n++
				state = append(state, fmt.Sprintf("%s=%s/%s%s", r.Name, r.Health, r.State, r.LastError))
				switch {
				case r.Health != "ok" || r.LastEvaluation.IsZero():
					ok = false
				case r.Name == "LeadstreamDeadLetters":
					ok = ok && r.State == "firing"
				case r.State == "firing":
					t.Errorf("alert %s fires on a healthy stack", r.Name)
				}
			}
		}
		sort.Strings(state)
		return ok && n == len(alertQueries(t)), strings.Join(state, " ")
	})
}
