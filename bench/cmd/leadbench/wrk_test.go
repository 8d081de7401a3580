package main

import (
	"math"
	"strings"
	"testing"
)

// wrk's own text around the scripts' summary line, as wrk 4.1 prints it.
const wrkOutput = `Running 10s test @ http://127.0.0.1:40123/v1/track
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    4.02ms 112.40ms   96.10%
    Req/Sec    10.12k     1.02k   12.40k    70.00%
  201240 requests in 10.02s, 30.11MB read
  Non-2xx or 3xx responses: 12
Requests/sec:  20084.13
Transfer/sec:      3.01MB
leadbench: requests=201240 duration_us=10020000 status_errors=12 connect_errors=0 read_errors=1 write_errors=0 timeouts=2 p50_us=2100 p90_us=5200 p99_us=21400 p999_us=98000 max_us=112400 mean_us=3210.5
`

func TestParseWrk(t *testing.T) {
	s, err := parseWrk([]byte(wrkOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := wrkSummary{Requests: 201240, Seconds: 10.02, StatusErrors: 12, SocketErrors: 3,
		P50Ms: 2.1, P90Ms: 5.2, P99Ms: 21.4, P999Ms: 98, MaxMs: 112.4, MeanMs: 3.2105}
	want.ReqPerSec = float64(201240-12) / 10.02
	if math.Abs(s.ReqPerSec-want.ReqPerSec) > 1e-6 || math.Abs(s.MeanMs-want.MeanMs) > 1e-9 {
		t.Fatalf("rates: got %+v, want %+v", s, want)
	}
	s.ReqPerSec, s.MeanMs, want.ReqPerSec, want.MeanMs = 0, 0, 0, 0
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if s.OK() != 201228 {
		t.Fatalf("OK() = %d", s.OK())
	}

	bad := func(out, wantErr string) {
		t.Helper()
		if _, err := parseWrk([]byte(out)); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("parseWrk(%q) error %v, want one containing %q", out, err, wantErr)
		}
	}
	bad("Requests/sec: 100\n", "no leadbench: summary line")
	bad(strings.Replace(wrkOutput, " p999_us=98000", "", 1), "p999_us is missing")
	bad(strings.Replace(wrkOutput, "p99_us=21400", "p99_us=x", 1), "p99_us")
	bad(strings.Replace(wrkOutput, "timeouts=2", "timeouts", 1), "not key=value")
	bad(strings.Replace(wrkOutput, "duration_us=10020000", "duration_us=0", 1), "duration is zero")
}

// The scripts print the line parseWrk reads and make message ids unique per
// run, thread and request.
func TestWrkScripts(t *testing.T) {
	s := trackScript("w-run1")
	for _, want := range []string{`local run = "w-run1"`, `thread:set("tid", threads)`, `'","userId":"lead-'`, "wrk.format(\"POST\", \"/v1/track\"", "leadbench: requests="} {
		if !strings.Contains(s, want) {
			t.Errorf("track script lacks %q", want)
		}
	}
	p := pixelScript([]string{"/o/a.gif", `/o/"b".gif`})
	for _, want := range []string{`"/o/a.gif",`, `"/o/\"b\".gif",`, "wrk.format(\"GET\", paths[i]", "leadbench: requests="} {
		if !strings.Contains(p, want) {
			t.Errorf("pixel script lacks %q", want)
		}
	}
}

func TestHistQuantile(t *testing.T) {
	before := promText{
		`h_bucket{e="a",le="0.001"}`: 10, `h_bucket{e="a",le="0.01"}`: 10, `h_bucket{e="a",le="+Inf"}`: 10,
		`h_bucket{e="b",le="0.001"}`: 5, `h_bucket{e="b",le="0.01"}`: 5, `h_bucket{e="b",le="+Inf"}`: 5,
	}
	after := promText{
		`h_bucket{e="a",le="0.001"}`: 990, `h_bucket{e="a",le="0.01"}`: 1009, `h_bucket{e="a",le="+Inf"}`: 1010,
		`h_bucket{e="b",le="0.001"}`: 5, `h_bucket{e="b",le="0.01"}`: 1005, `h_bucket{e="b",le="+Inf"}`: 1005,
	}
	a := hist(before, after, "h", `e="a"`) // 1000 observations: 980 ≤ 1 ms, 19 ≤ 10 ms, 1 above
	if len(a) != 3 || a[0].le != 0.001 || a[0].count != 980 || !math.IsInf(a[2].le, 1) || a[2].count != 1000 {
		t.Fatalf("hist = %+v", a)
	}
	f := func(b []histBucket, q, want float64) {
		t.Helper()
		if got := histQuantile(b, q); got != want {
			t.Errorf("quantile %v = %v, want %v", q, got, want)
		}
	}
	f(a, 0.5, 0.001)
	f(a, 0.98, 0.001)
	f(a, 0.99, 0.01)
	f(a, 0.999, 0.01)
	f(a, 1, math.Inf(1))
	f(nil, 0.99, 0)
	if got := histOver(a, 0.001); math.Abs(got-0.02) > 1e-12 {
		t.Errorf("histOver(1 ms) = %v, want 0.02", got)
	}
	if got := histOver(a, 0.01); math.Abs(got-0.001) > 1e-12 {
		t.Errorf("histOver(10 ms) = %v, want 0.001", got)
	}
	both := hist(before, after, "h") // no label filter: the two series add up
	if both[len(both)-1].count != 2000 || both[0].count != 980 {
		t.Fatalf("summed hist = %+v", both)
	}
}

// The table gives the collector without Kafka next to the no-op where it
// was measured, and a dash where it was not (the pixel).
func TestWrkTableWithoutKafka(t *testing.T) {
	r := &report{Wrk: []*wrkEndpoint{
		{Endpoint: "/v1/track", Noop: wrkRun{Summary: wrkSummary{ReqPerSec: 50_000}}, Collector: wrkRun{Summary: wrkSummary{ReqPerSec: 20_000}},
			NoKafka: &wrkRun{Summary: wrkSummary{ReqPerSec: 40_000}}, NoKafkaCores: 1.0},
		{Endpoint: "/o/{token}.gif", Noop: wrkRun{Summary: wrkSummary{ReqPerSec: 50_000}}, Collector: wrkRun{Summary: wrkSummary{ReqPerSec: 35_000}}},
	}}
	rows := strings.Split(strings.TrimSpace(r.wrkTable()), "\n")
	if len(rows) != 4 {
		t.Fatalf("want a header, a rule and 2 rows:\n%s", r.wrkTable())
	}
	cells := func(row string) []string { return strings.Split(strings.Trim(row, "|"), "|") }
	head, track, pixel := cells(rows[0]), cells(rows[2]), cells(rows[3])
	if len(head) != len(track) || len(head) != len(pixel) || len(cells(rows[1])) != len(head) {
		t.Fatalf("rows and header differ in cells:\n%s", r.wrkTable())
	}
	if !strings.Contains(head[3], "without Kafka") {
		t.Fatalf("column 4 is %q", head[3])
	}
	if got := strings.TrimSpace(track[2]); got != "40%" {
		t.Errorf("track ratio %q, want 40%%", got)
	}
	if got := strings.TrimSpace(track[3]); got != "40,000, 80% (25.0)" {
		t.Errorf("track without Kafka %q, want 40,000, 80%% (25.0)", got)
	}
	if got := strings.TrimSpace(pixel[3]); got != "—" {
		t.Errorf("pixel without Kafka %q, want a dash", got)
	}
}
