package analytics

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// TestCommandLine runs the built leadstream binary as a person would:
// `costs import` (twice, and a bad file) and `report` in every format,
// configured through the environment, against the fixture in ClickHouse.
func TestCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the leadstream binary")
	}
	conn, cfg := testDB(t)
	loadEvents(t, conn, cfg.Database)

	bin := filepath.Join(t.TempDir(), "leadstream")
	goBin, err := exec.LookPath("go")
	if err != nil {
		testsvc.Required(t, "go", "the test builds the leadstream binary")
	}
	build := exec.Command(goBin, "build", "-o", bin, "github.com/leadstream/leadstream/cmd/leadstream")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	env := append(os.Environ(), "LEADSTREAM_CLICKHOUSE_ADDR="+cfg.Addr, "LEADSTREAM_CLICKHOUSE_DATABASE="+cfg.Database)
	run := func(wantOK bool, args ...string) (stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if (err == nil) != wantOK {
			t.Fatalf("leadstream %s: %v (want success %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, wantOK, o.String(), e.String())
		}
		return o.String(), e.String()
	}

	costs := fixtureDir + "costs.csv"
	for range 2 {
		out, _ := run(true, "costs", "import", costs)
		if want := "imported 5 cost rows into " + cfg.Database + ".campaign_costs (campaigns retarget, spring, webinar; days 2026-03-01 to 2026-04-01)"; !strings.Contains(out, want) {
			t.Errorf("costs import said %q, want %q", out, want)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(bad, []byte("campaign,day,channel,cost,currency\nspring,2026-03-01,paid_search,99,EUR\nspring,03/02/2026,paid_search,1,EUR\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut := run(false, "costs", "import", bad)
	if !strings.Contains(errOut, bad+`:3: day: "03/02/2026" is not a date like 2026-03-01`) || !strings.Contains(errOut, "1 bad line(s) or field(s), nothing imported") {
		t.Errorf("bad costs file: stderr %q", errOut)
	}
	run(false, "costs", "import", costs, "-clickhouse.addr", cfg.Addr) // flags after FILE

	// Same numbers as the documented SQL, after two imports and one refused.
	out, _ := run(true, "report", "romi", "--format", "csv")
	wantCSV := "campaign,cost,revenue_first_touch,revenue_last_touch,revenue_linear,romi_first_touch,romi_last_touch,romi_linear,currencies\n" +
		"(none),0,500,500,500,,,,EUR\n" +
		"retarget,250,0,3000,1000,-1,11,3,EUR\n" +
		"spring,1000,9000,3000,7000,8,2,6,EUR\n" +
		"webinar,500,3000,6000,4000,5,11,7,EUR\n"
	if out != wantCSV {
		t.Errorf("report romi --format csv:\n%s\nwant:\n%s", out, wantCSV)
	}

	out, _ = run(true, "report", "funnel", "-by", "channel", "-from", "2026-03-01", "-to", "2026-03-31", "-format", "json")
	var funnel []map[string]any
	if err := json.Unmarshal([]byte(out), &funnel); err != nil {
		t.Fatalf("report funnel --format json: %v\n%s", err, out)
	}
	var got []string
	for _, r := range funnel {
		got = append(got, strings.Join([]string{r["channel"].(string), num(r["visitors"]), num(r["forms"]), num(r["mqls"]), num(r["won"]), num(r["visit_to_form"]), num(r["mql_to_won"])}, " "))
	}
	if want := []string{"paid_search 2 1 1 1 0.5 1", "social 2 1 0 0 0.5 null", "(none) 1 0 0 0 0 null", "email 1 1 1 1 1 1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("report funnel json rows %q, want %q", got, want)
	}

	out, _ = run(true, "report", "velocity")
	wantText := "MQL velocity (first touch to MQL) · all time\n\n" +
		"model    mqls  median_days  p90_days  avg_days\n" +
		"-------  ----  -----------  --------  --------\n" +
		"default     3         3.50      7.00      4.00\n"
	if out != wantText {
		t.Errorf("report velocity:\n%s\nwant:\n%s", out, wantText)
	}

	_, errOut = run(false, "report", "bands", "--campaign", "spring")
	if !strings.Contains(errOut, "score_bands has no campaign filter") {
		t.Errorf("bands with a campaign filter: %q", errOut)
	}
	_, errOut = run(false, "report", "nope")
	if !strings.Contains(errOut, `unknown report "nope"`) {
		t.Errorf("unknown report: %q", errOut)
	}

	page := filepath.Join(t.TempDir(), "report.html")
	run(true, "report", "--html", page)
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	checkHTML(t, string(b))
}

// num renders a decoded JSON number (or null) compactly.
func num(v any) string {
	if v == nil {
		return "null"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
