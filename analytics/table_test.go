package analytics

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, ROMITable(wantROMI)); err != nil {
		t.Fatal(err)
	}
	want := `campaign      cost  revenue_first_touch  revenue_last_touch  revenue_linear  romi_first_touch  romi_last_touch  romi_linear  currencies
--------  --------  -------------------  ------------------  --------------  ----------------  ---------------  -----------  ----------
(none)        0.00               500.00              500.00          500.00                 —                —            —  EUR
retarget    250.00                 0.00            3,000.00        1,000.00           -100.0%         +1100.0%      +300.0%  EUR
spring    1,000.00             9,000.00            3,000.00        7,000.00           +800.0%          +200.0%      +600.0%  EUR
webinar     500.00             3,000.00            6,000.00        4,000.00           +500.0%         +1100.0%      +700.0%  EUR
`
	if b.String() != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", b.String(), want)
	}

	// The funnel adds its conversion rates and a total line.
	b.Reset()
	fn := &Funnel{By: ByCampaign, Rows: wantFunnelCampaign}
	if err := WriteText(&b, fn.Table()); err != nil {
		t.Fatal(err)
	}
	want = `campaign  visitors  forms  mqls  won  visit_to_form  form_to_mql  mql_to_won  visit_to_won
--------  --------  -----  ----  ---  -------------  -----------  ----------  ------------
spring           4      1     1    1          25.0%       100.0%      100.0%         25.0%
(none)           1      0     0    0           0.0%            —           —          0.0%
retarget         1      1     0    0         100.0%         0.0%           —          0.0%
webinar          1      1     1    1         100.0%       100.0%      100.0%        100.0%
--------  --------  -----  ----  ---  -------------  -----------  ----------  ------------
(total)          7      3     2    2          42.9%        66.7%      100.0%         28.6%
`
	if b.String() != want {
		t.Errorf("funnel WriteText:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWriteCSVAndJSON(t *testing.T) {
	var b bytes.Buffer
	fn := &Funnel{By: ByChannel, Rows: wantFunnelChannel[2:]}
	if err := WriteCSV(&b, fn.Table()); err != nil {
		t.Fatal(err)
	}
	want := "channel,visitors,forms,mqls,won,visit_to_form,form_to_mql,mql_to_won,visit_to_won\n" +
		"(none),1,0,0,0,0,,,0\n" +
		"email,1,1,1,1,1,1,1,1\n"
	if b.String() != want {
		t.Errorf("WriteCSV:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	if err := WriteJSON(&b, WeekTable(wantWeekly[:1])); err != nil {
		t.Fatal(err)
	}
	if want := "[\n  {\n    \"week\": \"2026-03-02\",\n    \"mqls\": 1\n  }\n]\n"; b.String() != want {
		t.Errorf("WriteJSON = %q, want %q", b.String(), want)
	}
	b.Reset()
	if err := WriteJSON(&b, ROMITable(wantROMI[:1])); err != nil {
		t.Fatal(err)
	}
	want = `[
  {
    "campaign": "(none)",
    "cost": 0,
    "revenue_first_touch": 500,
    "revenue_last_touch": 500,
    "revenue_linear": 500,
    "romi_first_touch": null,
    "romi_last_touch": null,
    "romi_linear": null,
    "currencies": "EUR"
  }
]
`
	if b.String() != want {
		t.Errorf("WriteJSON:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	if err := WriteJSON(&b, CampaignTable(nil)); err != nil || b.String() != "[]\n" {
		t.Errorf("WriteJSON of no rows = %q, %v; want []", b.String(), err)
	}
}

func TestFormat(t *testing.T) {
	f := func(k Kind, v any, want string) {
		t.Helper()
		if got := format(k, v); got != want {
			t.Errorf("format(%v, %v) = %q, want %q", k, v, got, want)
		}
	}
	f(Money, 0.0, "0.00")
	f(Money, 999.995, "1,000.00")
	f(Money, 1234567.891, "1,234,567.89")
	f(Money, -1234.5, "-1,234.50")
	f(Money, -0.001, "0.00")
	f(Rate, fp(2.0/3), "66.7%")
	f(Rate, (*float64)(nil), "—")
	f(SignedRate, fp(0), "0.0%")
	f(SignedRate, fp(-0.25), "-25.0%")
	f(SignedRate, fp(11), "+1100.0%")
	f(Days, 3.5, "3.50")
	f(Count, uint64(12), "12")
	f(Date, day(2026, 3, 2), "2026-03-02")
}

func TestFillWeeks(t *testing.T) {
	f := func(rows []WeekRow, from, to time.Time, want []WeekRow) {
		t.Helper()
		if got := FillWeeks(rows, from, to); !reflect.DeepEqual(got, want) {
			t.Errorf("FillWeeks(%v, %v, %v) = %v, want %v", rows, from, to, got, want)
		}
	}
	w := func(m time.Month, d int, n uint64) WeekRow { return WeekRow{day(2026, m, d), n} }
	f(nil, time.Time{}, time.Time{}, nil)
	f(wantWeekly, time.Time{}, time.Time{}, []WeekRow{w(3, 2, 1), w(3, 9, 2), w(3, 16, 0), w(3, 23, 1)})
	// The period's first and last weeks, whatever the weekday of its dates
	// (2026-02-25 is a Wednesday, 2026-04-05 a Sunday).
	f(wantWeekly, day(2026, 2, 25), day(2026, 4, 5),
		[]WeekRow{w(2, 23, 0), w(3, 2, 1), w(3, 9, 2), w(3, 16, 0), w(3, 23, 1), w(3, 30, 0)})
	f(nil, day(2026, 3, 1), day(2026, 3, 9), []WeekRow{w(2, 23, 0), w(3, 2, 0), w(3, 9, 0)})
}

// Text cells a spreadsheet would evaluate get a leading apostrophe in CSV
// (numbers, negative ones included, stay numbers); table output drops
// control characters (a terminal escape sequence, a carriage return).
func TestHostileCells(t *testing.T) {
	tb := Table{Columns: []Column{{Name: "campaign", Kind: Text}, {Name: "cost", Kind: Money}}, Rows: [][]any{
		{`=HYPERLINK("http://evil.example","x")`, -12.5},
		{"+1", 1.0}, {"-2", 2.0}, {"@SUM(A1)", 3.0}, {"\tx", 4.0}, {"\rx", 5.0},
		{"spring-sale", 6.0}, {"a=b", 7.0}, {"", 8.0},
		{"\x1b[31mred\x1b[0m\rover\x07", 9.0},
	}}
	var b bytes.Buffer
	if err := WriteCSV(&b, tb); err != nil {
		t.Fatal(err)
	}
	want := "campaign,cost\n" +
		`"'=HYPERLINK(""http://evil.example"",""x"")",-12.5` + "\n" +
		"'+1,1\n'-2,2\n'@SUM(A1),3\n'\tx,4\n\"'\rx\",5\n" +
		"spring-sale,6\na=b,7\n,8\n" +
		"\"\x1b[31mred\x1b[0m\rover\x07\",9\n"
	if b.String() != want {
		t.Errorf("WriteCSV:\n%q\nwant:\n%q", b.String(), want)
	}
	b.Reset()
	if err := WriteText(&b, tb); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsFunc(out, func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) {
		t.Errorf("WriteText kept control characters:\n%q", out)
	}
	if !strings.Contains(out, "[31mred[0mover") {
		t.Errorf("WriteText lost the printable text:\n%s", out)
	}
}
