package stream

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/leadstream/leadstream/internal/testsvc"
)

// A session timeout the broker refuses (below its minimum, 6 s by default):
// the group never joins, and the consumer says so once, at error level,
// naming the setting — not one warning per retry that reads like an outage.
func TestRefusedSessionTimeoutLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := oneRecordTopic(ctx, t)
	var logs testsvc.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}, SessionTimeout: 3 * time.Second}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = cons.Run(rctx, func(context.Context, []Message) error { return nil })
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "level=ERROR msg=\"the kafka broker refuses the consumer group's session timeout") {
		if time.Now().After(deadline) {
			t.Fatalf("no error naming the session timeout within 20 s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // more join attempts: still one error line
	rcancel()
	<-done
	if n := strings.Count(logs.String(), "refuses the consumer group's session timeout"); n != 1 {
		t.Errorf("%d error lines, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "session_timeout=3s") {
		t.Errorf("the error does not name the setting's value:\n%s", logs.String())
	}
}
