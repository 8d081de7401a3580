package notify

import (
	"context"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/leadstream/leadstream/warehouse"
)

// attemptRow is one row of the notifications table.
type attemptRow struct {
	Destination, Kind, ID, Subject, Model string
	Attempt                               uint32
	Status                                string
	Code                                  uint16 // HTTP status or SMTP reply code; 0 = none
	Error                                 string
	Latency                               time.Duration
	At                                    time.Time
}

// Recorder batching: a batch is written when it holds recordBatch rows or
// recordInterval after its first row; at most recordQueue rows wait, beyond
// which deliveries wait for ClickHouse (backpressure, so no attempt goes
// unrecorded).
const (
	recordBatch    = 1000
	recordInterval = time.Second
	recordQueue    = 20000
)

// recorder writes attempts into ClickHouse's notifications table.
//
// Each destination has its own share of the queue (recordQueue split
// evenly), held by a row until it is written: while ClickHouse is down, a
// destination whose share is full waits for it, and the others go on — a
// dead destination's retries cannot fill the queue for a healthy one.
type recorder struct {
	cfg   warehouse.Config
	log   *slog.Logger
	m     *metrics
	rows  chan attemptRow
	share map[string]chan struct{} // per destination: a slot per row queued or unwritten
	done  chan struct{}
}

func newRecorder(cfg warehouse.Config, log *slog.Logger, m *metrics, dests []string) *recorder {
	r := &recorder{cfg: cfg, log: log, m: m, rows: make(chan attemptRow, recordQueue), share: map[string]chan struct{}{}, done: make(chan struct{})}
	for _, d := range dests {
		r.share[d] = make(chan struct{}, max(recordQueue/max(len(dests), 1), 1))
	}
	return r
}

// add queues a row; it waits while its destination's share of the queue is
// full, until abort is closed. The queue itself never fills: the shares add
// up to its size.
func (r *recorder) add(row attemptRow, abort <-chan struct{}) {
	if s := r.share[row.Destination]; s != nil {
		select {
		case s <- struct{}{}:
		case <-abort:
			return
		}
	}
	select {
	case r.rows <- row:
	case <-abort:
	}
}

// written gives the shares of written rows back.
func (r *recorder) written(rows []attemptRow) {
	for _, row := range rows {
		if s := r.share[row.Destination]; s != nil {
			<-s
		}
	}
}

// run writes rows until stop is closed, then writes what is queued (within
// drain) and closes done. ClickHouse being down delays rows, never drops
// them while the process lives.
func (r *recorder) run(ctx context.Context, stop <-chan struct{}, drain func() time.Duration) {
	defer close(r.done)
	var conn driver.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	backoff := 100 * time.Millisecond
	var batch []attemptRow
	// A write that keeps failing gives up its retries when stop comes, so
	// the drain begins; opCtx ends with the drain, so neither the drain's
	// retries nor a dial or insert (one in flight when stop came included)
	// outlast it.
	watchStop := stop
	opCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()
	go func() {
		select {
		case <-stop:
			t := time.NewTimer(drain())
			defer t.Stop()
			select {
			case <-t.C:
				cancelOps()
			case <-opCtx.Done():
			}
		case <-opCtx.Done():
		}
	}()
	write := func() bool {
		for len(batch) > 0 {
			if conn == nil {
				var c driver.Conn
				_, err := bounded(opCtx, func() error {
					var err error
					if c, err = warehouse.Open(opCtx, r.cfg); err == nil {
						if err = warehouse.MigrateCluster(opCtx, c, r.cfg.Database, r.cfg.Cluster); err != nil {
							c.Close()
						}
					}
					return err
				}, func(err error) {
					if err == nil {
						c.Close()
					}
				})
				if err == nil {
					conn = c
				} else {
					r.m.recordErrs.Inc()
					r.log.Warn("connecting to clickhouse for the notifications table failed, retrying", "err", err)
				}
			}
			if conn != nil {
				c := conn
				cut, err := bounded(opCtx, func() error { return r.insert(opCtx, c, batch) }, func(error) { c.Close() })
				if cut {
					conn = nil // closed when its insert returns
				}
				if err == nil {
					r.m.recorded.Add(float64(len(batch)))
					r.written(batch)
					batch = batch[:0]
					backoff = 100 * time.Millisecond
					return true
				} else {
					r.m.recordErrs.Inc()
					r.log.Warn("writing delivery attempts to clickhouse failed, retrying", "rows", len(batch), "err", err)
				}
			}
			select {
			case <-time.After(backoff):
			case <-opCtx.Done():
				return false
			case <-watchStop:
				return false // the loop below starts the drain
			}
			backoff = min(backoff*2, 10*time.Second)
		}
		return true
	}
	tick := time.NewTicker(recordInterval)
	defer tick.Stop()
	for {
		select {
		case row := <-r.rows:
			batch = append(batch, row)
			if len(batch) >= recordBatch {
				write()
			}
		case <-tick.C:
			write()
		case <-stop:
			watchStop = nil
		queued:
			for {
				select {
				case row := <-r.rows:
					batch = append(batch, row)
				default:
					break queued
				}
			}
			if !write() && len(batch) > 0 {
				r.log.Error("delivery attempts not written to clickhouse before shutdown", "rows", len(batch))
			}
			return
		}
	}
}

// bounded runs fn and returns its error, or cut and ctx's once ctx ends
// first: fn then finishes on its own and abandon gets its error
// (clickhouse-go's dial and handshake heed their own timeouts, not a
// cancelled context, so a server that accepts and never answers would hold
// a shutdown that long).
func bounded(ctx context.Context, fn func() error, abandon func(error)) (cut bool, err error) {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
		go func() { abandon(<-done) }()
		return true, ctx.Err()
	}
}

func (r *recorder) insert(ctx context.Context, conn driver.Conn, rows []attemptRow) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cols := []warehouse.Column{
		{Name: "destination", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Destination })},
		{Name: "kind", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Kind })},
		{Name: "mql_id", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.ID })},
		{Name: "subject_id", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Subject })},
		{Name: "model", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Model })},
		{Name: "attempt", Values: warehouse.Pluck(rows, func(a *attemptRow) uint32 { return a.Attempt })},
		{Name: "status", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Status })},
		{Name: "http_status", Values: warehouse.Pluck(rows, func(a *attemptRow) uint16 { return a.Code })},
		{Name: "error", Values: warehouse.Pluck(rows, func(a *attemptRow) string { return a.Error })},
		{Name: "latency_ms", Values: warehouse.Pluck(rows, func(a *attemptRow) uint32 { return uint32(min(a.Latency.Milliseconds(), 1<<31)) })},
		{Name: "attempted_at", Values: warehouse.Pluck(rows, func(a *attemptRow) time.Time { return a.At })},
		{Name: "attempted_at_ms", Values: warehouse.Pluck(rows, func(a *attemptRow) uint64 { return uint64(a.At.UnixMilli()) })},
	}
	return warehouse.Insert(ctx, conn, r.cfg.Database, warehouse.TableNotifications, len(rows), cols)
}
