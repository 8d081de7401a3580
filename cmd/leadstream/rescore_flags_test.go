package main

import (
	"context"
	"strings"
	"testing"
)

// rescore checks the processors' windows before it connects anywhere: with
// -apply, an anonymous-ttl of 0 would expire every visitor's state as it is
// written.
func TestRescoreRefusesBadWindows(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"-processor.anonymous-ttl=0", "processor.anonymous-ttl must be at least 1s"},
		{"-processor.anonymous-ttl=-1h", "processor.anonymous-ttl must be at least 1s"},
		{"-processor.dedup-window=-5h", "processor.dedup-window must be at least 1s"},
	} {
		err := runRescore(context.Background(), []string{"-rules", "../../scoring/default_rules.yaml", "-apply", c.flag})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("rescore %s: %v, want %q", c.flag, err, c.want)
		}
	}
}
