package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/leadstream/leadstream/warehouse"
)

// The recorder stops within its drain while ClickHouse is unreachable: its
// retries end when stop comes, and a dial or insert in flight is cut off at
// the end of the drain. Two kinds of unreachable: a port that refuses, and a
// server that accepts connections and never answers.
func TestRecorderStopsWhileClickHouseIsDown(t *testing.T) {
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refused.Addr().String()
	refused.Close()
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	for name, addr := range map[string]string{"refused": refusedAddr, "silent": silent.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			r := newRecorder(warehouse.Config{Addr: addr, Database: "leadstream", Username: "default", DialTimeout: time.Minute}, log, newMetrics(nil), nil)
			stop := make(chan struct{})
			const drain = 300 * time.Millisecond
			go r.run(context.Background(), stop, func() time.Duration { return drain })
			r.add(attemptRow{Destination: "d", ID: "m-1", Status: "delivered", At: time.Now()}, nil)
			time.Sleep(1500 * time.Millisecond) // past the first tick: the write is retrying
			start := time.Now()
			close(stop)
			select {
			case <-r.done:
				if d := time.Since(start); d > drain+time.Second {
					t.Errorf("stopped %v after stop, want within the drain (%v) and a little", d, drain)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the recorder did not stop within 10 s of stop while ClickHouse was unreachable")
			}
			var m dto.Metric
			if err := r.m.recordErrs.Write(&m); err != nil {
				t.Fatal(err)
			}
			if n := m.GetCounter().GetValue(); n < 1 {
				t.Errorf("record errors %v, want the failed writes counted", n)
			}
		})
	}
}

// Retry-After as delay-seconds or as an HTTP date, bounded to an hour.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 10, 21, 7, 28, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"-5":                            0,
		"999999":                        time.Hour,
		"Wed, 21 Oct 2026 07:30:30 GMT": 150 * time.Second,
		"Wed, 21 Oct 2026 07:00:00 GMT": 0, // past
		"Thu, 22 Oct 2026 07:28:00 GMT": time.Hour,
		"soon":                          0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", h, got, want)
		}
	}
}

// net/smtp's own refusals are permanent; a dropped connection is retried.
func TestSMTPOutcomeOwnRefusals(t *testing.T) {
	if o := smtpOutcome("auth", errors.New("smtp: server doesn't support AUTH")); !o.permanent {
		t.Errorf("no AUTH offered: %+v, want permanent", o)
	}
	if o := smtpOutcome("data", io.ErrUnexpectedEOF); o.permanent {
		t.Errorf("connection lost: %+v, want retried", o)
	}
}
