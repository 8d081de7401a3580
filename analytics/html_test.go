package analytics

import (
	"bytes"
	"context"
	"html"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fixturePage is the page of the fixture over all time, from the
// hand-computed numbers of report_test.go.
func fixturePage() *Page {
	return &Page{
		Database:  "leadstream",
		Generated: time.Date(2026, 4, 5, 12, 0, 0, 0, time.UTC),
		Funnel:    &Funnel{By: ByCampaign, Rows: wantFunnelCampaign},
		ROMI:      wantROMI,
		Campaigns: wantCampaigns,
		Velocity:  wantVelocity,
		Weekly:    FillWeeks(wantWeekly, time.Time{}, time.Time{}),
	}
}

func TestHTMLReport(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, fixturePage()); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, b.String())

	// Names come from the data: they are escaped, never markup.
	p := fixturePage()
	p.ROMI = append([]ROMIRow{{Campaign: `<script src="https://evil.example/x.js"></script>`, Cost: 1, ROMIFirst: fp(1)}}, p.ROMI...)
	b.Reset()
	if err := WriteHTML(&b, p); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script") || !strings.Contains(b.String(), "&lt;script") {
		t.Error("a campaign name was not escaped")
	}

	// An empty database gives a page that says so, not a broken chart.
	b.Reset()
	if err := WriteHTML(&b, &Page{Database: "leadstream"}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"No MQLs in this period.", "No campaign costs or won deals in this period."} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("empty page lacks %q", s)
		}
	}
}

var (
	funnelBarRE = regexp.MustCompile(`<rect class="bar funnel" data-step="(\w+)" data-value="(\d+)" x="[-0-9.]+" y="[-0-9.]+" width="([-0-9.]+)"`)
	romiBarRE   = regexp.MustCompile(`<rect class="bar romi" data-campaign="([^"]*)" data-model="(\w+)" data-value="([-0-9.e+]+)" x="([-0-9.]+)" y="[-0-9.]+" width="([-0-9.]+)"`)
	pointRE     = regexp.MustCompile(`<circle class="point" data-week="([0-9-]+)" data-value="(\d+)"`)
	polylineRE  = regexp.MustCompile(`<polyline class="line" points="([^"]*)"`)
)

// checkHTML checks that page is self-contained and draws the fixture's
// figures: the funnel bars and conversion rates, ROMI bars per campaign and
// attribution model, and the weekly MQL line.
func checkHTML(t *testing.T, page string) {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
		t.Error("not one complete HTML document")
	}
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "<object", "@import", "url(", "src=", "href=", "http://", "https://", "ZgotmplZ"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q: it must be self-contained (and template-safe)", bad)
		}
	}
	if n := strings.Count(page, "<svg"); n != 3 {
		t.Errorf("page has %d SVG charts, want 3", n)
	}

	// Funnel: 7 visits, 3 forms, 2 MQLs, 2 won; bar widths proportional
	// (480 units for all visits: 3/7 of it is 205.7).
	var steps []string
	for _, m := range funnelBarRE.FindAllStringSubmatch(page, -1) {
		steps = append(steps, m[1]+"="+m[2]+" w"+m[3])
	}
	if want := []string{"visits=7 w480", "forms=3 w205.7", "mqls=2 w137.1", "won=2 w137.1"}; !reflect.DeepEqual(steps, want) {
		t.Errorf("funnel bars %v, want %v", steps, want)
	}
	for _, s := range []string{"42.9% of previous · 42.9% of visits", "66.7% of previous · 28.6% of visits", "100.0% of previous · 28.6% of visits"} {
		if !strings.Contains(page, s) {
			t.Errorf("funnel lacks the conversion rates %q", s)
		}
	}

	// ROMI: from -1 (retarget, first touch) to 11 over 480 units, so 1 = 40
	// units and the zero line at 150 + 40.
	var bars []string
	for _, m := range romiBarRE.FindAllStringSubmatch(page, -1) {
		bars = append(bars, m[1]+" "+m[2]+"="+m[3]+" x"+m[4]+" w"+m[5])
	}
	want := []string{
		"retarget first_touch=-1 x150 w40", "retarget last_touch=11 x190 w440", "retarget linear=3 x190 w120",
		"spring first_touch=8 x190 w320", "spring last_touch=2 x190 w80", "spring linear=6 x190 w240",
		"webinar first_touch=5 x190 w200", "webinar last_touch=11 x190 w440", "webinar linear=7 x190 w280",
	}
	if !reflect.DeepEqual(bars, want) {
		t.Errorf("ROMI bars:\n got %q\nwant %q", bars, want)
	}
	if text := html.UnescapeString(page); !strings.Contains(text, "no cost recorded") || !strings.Contains(text, "+1100.0%") || !strings.Contains(text, "-100.0%") {
		t.Error("ROMI chart lacks its labels")
	}

	// MQLs per week, the empty week filled in.
	var points []string
	for _, m := range pointRE.FindAllStringSubmatch(page, -1) {
		points = append(points, m[1]+"="+m[2])
	}
	if want := []string{"2026-03-02=1", "2026-03-09=2", "2026-03-16=0", "2026-03-23=1"}; !reflect.DeepEqual(points, want) {
		t.Errorf("weekly points %v, want %v", points, want)
	}
	if m := polylineRE.FindStringSubmatch(page); m == nil || len(strings.Fields(m[1])) != 4 {
		t.Errorf("weekly line %v, want 4 points", m)
	}
	for _, h := range []string{"Funnel by campaign", "ROMI per campaign", "Campaign performance", "MQL velocity (first touch to MQL)", "MQLs per week"} {
		if !strings.Contains(page, "<h2>"+h+"</h2>") {
			t.Errorf("page lacks the section %q", h)
		}
	}
}

// TestHTMLReportOnFixture builds the page from the fixture in ClickHouse,
// through the same code as `leadstream report -html`.
func TestHTMLReportOnFixture(t *testing.T) {
	conn, cfg := testDB(t)
	loadFixture(t, conn, cfg.Database)
	loadFixture(t, conn, cfg.Database) // a replay changes nothing
	p, err := NewReporter(conn, cfg.Database).Page(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := fixturePage()
	p.Database, p.Generated = want.Database, want.Generated
	if !reflect.DeepEqual(p, want) {
		t.Errorf("page:\n got %+v\nwant %+v", p, want)
	}
	var b bytes.Buffer
	if err := WriteHTML(&b, p); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, b.String())
}
