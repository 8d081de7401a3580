package segment

import (
	"strings"
	"testing"
	"time"
)

// A Deal Won's revenue may be a numeric string, as Segment's own libraries
// read it (@segment/facade Track#revenue: "1234.50", "$99"), and a numeric
// campaign id or a currency that is not a string never refuses the deal;
// a string that is not one number is refused, naming the field.
func TestDealWonRevenueAndCampaignTypes(t *testing.T) {
	r := &Request{WriteKeyID: "wk", ReceivedAt: time.Date(2026, 11, 22, 16, 40, 0, 0, time.UTC), IP: "192.0.2.1", Server: true}
	evs, rejected, err := events(t, `{"batch":[
		{"type":"track","userId":"lead-1","event":"Deal Won","messageId":"d-str","properties":{"revenue":"1234.50","currency":"eur"}},
		{"type":"track","userId":"lead-2","event":"Deal Won","messageId":"d-campaign","properties":{"revenue":990,"currency":"USD","campaign":701}},
		{"type":"track","userId":"lead-3","event":"Deal Won","messageId":"d-dollar","properties":{"revenue":" $99 ","currency":978,"campaign":{"id":1}}},
		{"type":"track","userId":"lead-4","event":"Deal Won","messageId":"d-none","properties":{"revenue":null}},
		{"type":"track","userId":"lead-5","event":"Deal Won","messageId":"d-comma","properties":{"revenue":"1,234.50"}},
		{"type":"track","userId":"lead-6","event":"Deal Won","messageId":"d-nan","properties":{"revenue":"NaN"}},
		{"type":"track","userId":"lead-7","event":"Deal Won","messageId":"d-bool","properties":{"revenue":true}},
		{"type":"track","userId":"lead-8","event":"Deal Won","messageId":"d-neg","properties":{"revenue":"-5"}},
		{"type":"track","userId":"lead-9","event":"Deal Won","messageId":"d-list","properties":[1]}]}`, "batch", r)
	if err != nil {
		t.Fatal(err)
	}
	type deal struct {
		rev           float64
		cur, campaign string
	}
	got := map[string]deal{}
	for _, e := range evs {
		got[e.ID] = deal{e.Revenue, e.Currency, e.Campaign}
	}
	want := map[string]deal{
		"d-str":      {1234.5, "EUR", ""},
		"d-campaign": {990, "USD", "701"},
		"d-dollar":   {99, "", ""},
		"d-none":     {0, "", ""},
	}
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			t.Errorf("%s: %+v (stored %v), want %+v", id, g, ok, w)
		}
	}
	refused := map[int]string{
		4: `batch[4].properties.revenue: must be a number, or a string of one such as "1234.50" or "$99"; got "1,234.50"`,
		5: `batch[5].properties.revenue: must be a number`,
		6: `batch[6].properties.revenue: must be a number`,
		7: `batch[7].properties.revenue: must be between 0 and 1e13`,
		8: `batch[8].properties: must be a JSON object`,
	}
	if len(rejected) != len(refused) {
		t.Errorf("refused %+v, want %d", rejected, len(refused))
	}
	for _, rj := range rejected {
		if w, ok := refused[rj.Index]; !ok || !strings.HasPrefix(rj.Error, w) {
			t.Errorf("refused %+v, want %q", rj, w)
		}
	}
}
