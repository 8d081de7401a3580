package analytics

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFilesAreDocumented(t *testing.T) {
	paths, err := filepath.Glob("sql/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []Name
	for _, p := range paths {
		onDisk = append(onDisk, Name(strings.TrimSuffix(filepath.Base(p), ".sql")))
	}
	names := slices.Clone(Names())
	slices.Sort(names)
	if !slices.Equal(onDisk, names) {
		t.Errorf("files %v, Names() %v: every file must be listed (and documented in the README)", onDisk, names)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Names() {
		q, err := SQL(n)
		if err != nil {
			t.Fatal(err)
		}
		// What an analyst reads first: the name, what it answers, how to run it.
		if !strings.HasPrefix(q, "-- "+string(n)+": ") {
			t.Errorf("%s.sql does not start with \"-- %s: what it answers\"", n, n)
		}
		if !strings.Contains(q, "clickhouse-client --multiquery < analytics/sql/"+string(n)+".sql") {
			t.Errorf("%s.sql does not say how to run it", n)
		}
		if code := withoutComments(q); strings.Count(code, ";") != 1 || !strings.HasSuffix(strings.TrimSpace(code), ";") {
			t.Errorf("%s.sql must be exactly one statement ending in ';'", n)
		}
		if !strings.Contains(string(readme), "`"+string(n)+".sql`") {
			t.Errorf("README does not document %s.sql", n)
		}
		for _, m := range []string{"from", "to"} {
			if !Has(n, m) {
				t.Errorf("%s.sql has no %s filter", n, m)
			}
		}
		if want := n != ScoreBands; Has(n, "campaign") != want {
			t.Errorf("%s.sql: campaign filter = %v, want %v", n, !want, want)
		}
		// Every read of a ReplacingMergeTree table folds replays.
		for _, tb := range []string{"events", "identity_links", "mql", "campaign_costs", "account_members", "mqa"} {
			if c := strings.Count(q, "leadstream."+tb); c != strings.Count(q, "leadstream."+tb+" FINAL") {
				t.Errorf("%s.sql reads leadstream.%s without FINAL", n, tb)
			}
		}
		if strings.Contains(q, "leadstream.events") && !strings.Contains(q, "bot = 0") {
			t.Errorf("%s.sql reads events without leaving out bots", n)
		}
	}
}

func TestBind(t *testing.T) {
	q, err := Bind(ROMI, Params{})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := SQL(ROMI)
	if q != strings.TrimSuffix(strings.TrimSpace(raw), ";") {
		t.Error("Bind without params changed more than the trailing semicolon")
	}

	q, err = Bind(ROMI, Params{Database: "analytics_2", From: time.Date(2026, 3, 1, 15, 0, 0, 0, time.UTC),
		To: time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC), Campaign: `it's a \ test`})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FROM analytics_2.events FINAL", "FROM analytics_2.campaign_costs FINAL",
		"toDate('2026-03-01') /*from*/", "toDate('2026-03-31') /*to*/", `campaign = 'it\'s a \\ test' /*campaign*/`} {
		if !strings.Contains(q, want) {
			t.Errorf("bound query lacks %q", want)
		}
	}
	for _, gone := range []string{"leadstream.", fromMarker, toMarker, campaignMarker} {
		if strings.Contains(q, gone) {
			t.Errorf("bound query still has %q", gone)
		}
	}

	f := func(name Name, p Params, want error) {
		t.Helper()
		if _, err := Bind(name, p); !errors.Is(err, want) {
			t.Errorf("Bind(%s, %+v) = %v, want %v", name, p, err, want)
		}
	}
	f("nope", Params{}, ErrUnknownQuery)
	f(ScoreBands, Params{Campaign: "spring"}, ErrFilterUnsupported)
	f(ROMI, Params{Database: "a-b"}, ErrBadParams)
	f(ROMI, Params{Database: "x.events; DROP"}, ErrBadParams)
	f(ROMI, Params{From: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)}, ErrBadParams)
	f(ROMI, Params{From: time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC)}, ErrBadParams)
	f(ROMI, Params{To: time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)}, ErrBadParams)
}

// withoutComments drops "--" comments (the files have none inside literals).
func withoutComments(q string) string {
	lines := strings.Split(q, "\n")
	for i, l := range lines {
		if j := strings.Index(l, "--"); j >= 0 {
			lines[i] = l[:j]
		}
	}
	return strings.Join(lines, "\n")
}

// Names lists every query in the order the README documents them.
func Names() []Name {
	return []Name{FunnelByCampaign, FunnelByChannel, MQLVelocity, MQLWeekly, ScoreBands, CampaignPerformance, ROMI, AccountFunnel, AccountROMI}
}

// Has reports whether the query has a filter: "from", "to" or "campaign".
func Has(name Name, filter string) bool {
	q, err := SQL(name)
	if err != nil {
		return false
	}
	m := map[string]string{"from": fromMarker, "to": toMarker, "campaign": campaignMarker}[filter]
	return m != "" && strings.Contains(q, m)
}
