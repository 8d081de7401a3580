package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// alertRules is deploy/prometheus/alerts.yaml.
type alertRules struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Expr        string
			For         string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

func readAlertRules(t testing.TB) *alertRules {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "prometheus", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var r alertRules
	if err := yaml.Unmarshal(b, &r); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	return &r
}

// requiredAlerts are the conditions issue 15 asks alerts for.
var requiredAlerts = []string{
	"LeadstreamConsumerLagGrowing",      // lag growing
	"LeadstreamCollector503s",           // 503s
	"LeadstreamDeadLetters",             // dead letters
	"LeadstreamSinkInsertFailures",      // sink insert failures
	"LeadstreamProcessorStalled",        // processor stalled
	"LeadstreamOffsetsOutOfRange",       // offsets out of range
	"LeadstreamCollectorDown",           // collector down
	"LeadstreamRoleDown",                // processor, sink or notifier down
	"LeadstreamSinkStalled",             // the sink's stall
	"LeadstreamProcessorBatchesFailing", // Redis errors
}

// TestAlertRules checks the rules with Prometheus' own tools: `promtool
// check rules` (syntax, PromQL) and `promtool test rules` on alerts_test.yaml
// (each alert fires when it should and stays quiet otherwise); and that each
// rule has a severity, a summary and a description, and that every alert of
// the issue exists and is tested.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		testsvc.Required(t, "promtool", "Debian's prometheus package provides it; deploy/install-deps.sh --test installs it")
	}
	dir := filepath.Join(repoRoot, "deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
		{"check", "config", "prometheus.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %q: %v\n%s", args, err, out)
		}
	}

	rules := readAlertRules(t)
	var names []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			names = append(names, r.Alert)
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description", r.Alert)
			}
		}
	}
	for _, want := range requiredAlerts {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yaml has no %s", want)
		}
	}

	// Every alert is exercised by the unit tests.
	b, err := os.ReadFile(filepath.Join(dir, "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string
				ExpAlerts []any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, n := range names {
		if !fires[n] || !quiet[n] {
			t.Errorf("alerts_test.yaml: %s needs a case where it fires (%v) and one where it does not (%v)", n, fires[n], quiet[n])
		}
	}
}
