package scoring

import (
	"strings"
	"testing"
)

// A window past what a time.Duration holds is refused as a bad duration,
// not as one shorter than a second (its sum overflowed to a negative).
func TestAudienceWindowOverflow(t *testing.T) {
	_, err := Parse("r.yaml", []byte(`models: [{name: m, threshold: 10, rules: [{name: f, event: form_submit, points: 1}]}]
audiences:
  - {name: a, event: page_view, window: 36500d2562047h}
`))
	if err == nil || !strings.Contains(err.Error(), `r.yaml:3: audiences[0].window: bad duration "36500d2562047h"`) {
		t.Fatalf("err = %v, want r.yaml:3 naming the bad duration", err)
	}
}
