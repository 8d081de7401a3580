package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A stop ends Run promptly while a batch is being retried (Redis or
// ClickHouse down): the failed batch is not tried again after the stop, and
// Run does not wait for DrainTimeout (30 s here). The bound on the return
// leaves room for the reader's close (ReaderCloseWait at most) on a loaded
// machine.
func TestConsumerStopsMidRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := oneRecordTopic(ctx, t)
	for _, prepared := range []bool{false, true} {
		cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: fmt.Sprint("stop-", prepared), Topics: []string{"t"},
			DrainTimeout: 30 * time.Second}, quiet, nil)
		if err != nil {
			t.Fatal(err)
		}
		cctx, ccancel := context.WithCancel(ctx)
		attempts := 0
		var stopped time.Time
		h := func(context.Context, []Message) error {
			attempts++
			if attempts == 3 {
				stopped = time.Now()
				ccancel() // SIGTERM while the batch is being retried
			}
			return errors.New("redis down")
		}
		if prepared {
			err = cons.RunPrepared(cctx, func(context.Context, []Message) any { return nil },
				func(ctx context.Context, b []Message, _ any) error { return h(ctx, b) })
		} else {
			err = cons.Run(cctx, h)
		}
		took := time.Since(stopped)
		ccancel()
		if err == nil || !strings.Contains(err.Error(), "not finished at shutdown") {
			t.Errorf("prepared=%v: Run = %v, want the unfinished batch reported", prepared, err)
		}
		if attempts != 3 || took > ReaderCloseWait+3*time.Second {
			t.Errorf("prepared=%v: %d attempts, Run returned %v after the stop; want no attempt after it and a prompt return", prepared, attempts, took)
		}
	}
	// The batch was not committed: a new member of the group gets it again.
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "stop-false", Topics: []string{"t"}}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	var got string
	if err := cons.Run(cctx, func(_ context.Context, b []Message) error { got = string(b[0].Value); ccancel(); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != "1" {
		t.Fatalf("the batch left at shutdown was not redelivered (got %q)", got)
	}
}

// A dead letter stays small enough for any topic whatever the record: a
// value of 1 MiB of control bytes (six bytes each in JSON) is cut, and says so.
func TestDeadLetterBounds(t *testing.T) {
	m := Message{Topic: "leadstream.events", Partition: 2, Offset: 7, Key: []byte(strings.Repeat("k", 5000)), Value: []byte(strings.Repeat("\x01é", 1<<19))}
	rec := DeadLetter(m, "decoding event: "+strings.Repeat("x", 10000))
	if len(rec.Value) > 512<<10 || len(rec.Key) > 1<<10 {
		t.Fatalf("dead letter of %d bytes with a %d-byte key; want at most 512 KiB and 1 KiB", len(rec.Value), len(rec.Key))
	}
	var d struct {
		SourceTopic string `json:"source_topic"`
		Partition   int    `json:"partition"`
		Offset      int64  `json:"offset"`
		Reason      string `json:"reason"`
		Value       string `json:"value"`
		Truncated   bool   `json:"value_truncated"`
		ValueBytes  int    `json:"value_bytes"`
	}
	if err := json.Unmarshal(rec.Value, &d); err != nil {
		t.Fatal(err)
	}
	if !d.Truncated || d.ValueBytes != len(m.Value) || !strings.HasPrefix(string(m.Value), d.Value) || len(d.Value) > MaxDeadLetterValue || len(d.Value) < MaxDeadLetterValue-3 {
		t.Fatalf("truncated=%v value_bytes=%d, value of %d bytes (a prefix: %v)", d.Truncated, d.ValueBytes, len(d.Value), strings.HasPrefix(string(m.Value), d.Value))
	}
	if d.SourceTopic != m.Topic || d.Partition != 2 || d.Offset != 7 || !strings.HasPrefix(d.Reason, "decoding event: ") {
		t.Fatalf("dead letter %+v", d)
	}

	// A small record is copied whole, without the truncation fields.
	small := DeadLetter(Message{Topic: "t", Value: []byte(`{"a":1}`)}, "bad")
	if want := `{"source_topic":"t","partition":0,"offset":0,"reason":"bad","value":"{\"a\":1}"}`; string(small.Value) != want {
		t.Fatalf("dead letter = %s, want %s", small.Value, want)
	}
}

// A tombstone reaches consumers as the lead id with a null value.
func TestTombstone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster(t, "t")
	p := newTestProducer(ctx, t, c, nil)
	defer p.Close()
	if err := p.Produce(ctx, []Record{Tombstone("lead-42")}); err != nil {
		t.Fatal(err)
	}
	cons, err := NewConsumer(ConsumerConfig{Brokers: c.ListenAddrs(), Group: "g", Topics: []string{"t"}}, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(ctx)
	var got []Message
	if err := cons.Run(cctx, func(_ context.Context, b []Message) error { got = append(got, b...); ccancel(); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || string(got[0].Key) != "lead-42" || got[0].Value != nil {
		t.Fatalf("consumed %+v, want one record with key lead-42 and a null value", got)
	}
}
