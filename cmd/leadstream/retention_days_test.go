package main

import (
	"strings"
	"testing"
	"time"
)

// -older-than in days: values that do not fit a time.Duration (about 292
// years) are refused, not wrapped around into a short duration that would
// drop nearly every month.
func TestRetentionOlderThanDaysOverflow(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"400d":    400 * 24 * time.Hour,
		"0d":      0,
		"106751d": 106751 * 24 * time.Hour,
		"9600h":   9600 * time.Hour,
	} {
		var d durationDays
		if err := d.Set(s); err != nil || time.Duration(d) != want {
			t.Errorf("-older-than %s = %v, %v; want %v", s, time.Duration(d), err, want)
		}
	}
	for _, s := range []string{"106752d", "213504d", "99999999999999999999d", "-1d", "xd"} {
		var d durationDays
		err := d.Set(s)
		if err == nil {
			t.Errorf("-older-than %s = %v, want an error", s, time.Duration(d))
			continue
		}
		if strings.HasPrefix(s, "1") || strings.HasPrefix(s, "2") || strings.HasPrefix(s, "9") {
			if !strings.Contains(err.Error(), "too long") {
				t.Errorf("-older-than %s: %v, want it to say the value is too long", s, err)
			}
		}
	}
}
