package main

import (
	"context"
	"log/slog"
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

// Bad values of the commands' own flags are refused before anything is
// read or written, naming the flag.
func TestRescoreEraseRefuseNegativeFlags(t *testing.T) {
	err := runRescore(context.Background(), []string{"-rules", "../../scoring/default_rules.yaml", "-top", "-1"})
	if err == nil || !strings.Contains(err.Error(), "-top must not be negative") {
		t.Errorf("rescore -top -1: %v", err)
	}
	err = runErase(context.Background(), []string{"-wait", "-1s", "jane@example.com"}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "-wait must not be negative") {
		t.Errorf("erase -wait -1s: %v", err)
	}
}
