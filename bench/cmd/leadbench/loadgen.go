package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/leadstream/leadstream/ingest/token"
	"github.com/valyala/fasthttp"
)

// requestFn fills req (already reset; the harness sets the host) for the i-th request of
// worker w and returns how many events it carries.
type requestFn func(w int, seq uint64, req *fasthttp.Request) (events int)

// load describes one run of the load generator against a loopback address.
type load struct {
	addr    string // 127.0.0.1:port only
	conns   int
	warmup  time.Duration
	measure time.Duration
	build   requestFn
	// rate, when > 0, paces requests open-loop at this many requests per
	// second in total (each worker sends on its own fixed schedule and
	// catches up when late); 0 = closed loop, each worker as fast as it can.
	rate float64
	// answered, when set, is called with a request's sequence number when
	// its 200 arrives (before the next request of its worker is built).
	answered func(seq uint64, at time.Time)
}

// loadResult is what a run measured. Counts and latencies cover the
// measured window only; OKEventsAll and SentAll cover the warm-up as well.
type loadResult struct {
	Requests    int64            `json:"requests"`
	Events      int64            `json:"events"`
	Errors      int64            `json:"errors"`
	Codes       map[string]int64 `json:"codes"`
	Seconds     float64          `json:"seconds"`
	ReqPerSec   float64          `json:"requests_per_second"`
	EventsPerS  float64          `json:"events_per_second"`
	P50Ms       float64          `json:"p50_ms"`
	P99Ms       float64          `json:"p99_ms"`
	P999Ms      float64          `json:"p999_ms"`
	MaxMs       float64          `json:"max_ms"`
	OKEventsAll int64            `json:"ok_events_total"` // every 200, warm-up included
	SentAll     int64            `json:"requests_total"`

	windowStart, windowEnd time.Time // the measured window, wall clock
}

// checkLoopback refuses any target but 127.0.0.1: the generator must never
// load another machine.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "127.0.0.1" {
		return fmt.Errorf("load generator targets only 127.0.0.1, not %q", addr)
	}
	return nil
}

// run drives l.addr until the warm-up and measured window are over (or ctx
// ends) and returns the measured figures.
func (l load) run(ctx context.Context) (loadResult, error) {
	if err := checkLoopback(l.addr); err != nil {
		return loadResult{}, err
	}
	client := &fasthttp.HostClient{
		Addr:                l.addr,
		MaxConns:            l.conns,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxIdleConnDuration: time.Minute,
		// One connection per worker, kept alive for the whole run.
		MaxConnWaitTimeout: 30 * time.Second,
	}
	var (
		measuring, stop atomic.Bool
		seq             atomic.Uint64
		okAll, sentAll  atomic.Int64
		mu              sync.Mutex
		lat             []int64
		codes           = map[int]int64{}
		events, errs    int64
		wg              sync.WaitGroup
	)
	start := time.Now()
	for w := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(res)
			var (
				local              []int64
				localCodes         = map[int]int64{}
				localEvents, lerrs int64
				perWorker          float64
				next               time.Time
				scheduled          int64
			)
			if l.rate > 0 {
				perWorker = l.rate / float64(l.conns)
				// Spread the workers' schedules evenly over one interval.
				next = start.Add(time.Duration(float64(w) / l.rate * float64(time.Second)))
			}
			for !stop.Load() && ctx.Err() == nil {
				if l.rate > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					scheduled++
					next = start.Add(time.Duration(float64(w)/l.rate*float64(time.Second)) + time.Duration(float64(scheduled)/perWorker*float64(time.Second)))
					if stop.Load() {
						break
					}
				}
				n := seq.Add(1)
				req.Reset()
				nev := l.build(w, n, req)
				req.SetHost(l.addr) // after build: SetRequestURI resets the host

				inWindow := measuring.Load()
				sent := time.Now()
				err := client.Do(req, res)
				done := time.Now()
				code := 0
				if err == nil {
					code = res.StatusCode()
				}
				sentAll.Add(1)
				if code == fasthttp.StatusOK {
					okAll.Add(int64(nev))
					if l.answered != nil {
						l.answered(n, done)
					}
				}
				if !inWindow || !measuring.Load() {
					continue
				}
				localCodes[code]++
				if code == fasthttp.StatusOK {
					local = append(local, int64(done.Sub(sent)))
					localEvents += int64(nev)
				} else {
					lerrs++
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			for c, k := range localCodes {
				codes[c] += k
			}
			events += localEvents
			errs += lerrs
			mu.Unlock()
		}()
	}
	sleepCtx(ctx, l.warmup)
	measuring.Store(true)
	t0 := time.Now()
	sleepCtx(ctx, l.measure)
	measuring.Store(false)
	elapsed := time.Since(t0)
	stop.Store(true)
	wg.Wait()
	if ctx.Err() != nil {
		return loadResult{}, ctx.Err()
	}
	r := loadResult{Events: events, Errors: errs, Codes: map[string]int64{}, Seconds: elapsed.Seconds(),
		OKEventsAll: okAll.Load(), SentAll: sentAll.Load(), windowStart: t0, windowEnd: t0.Add(elapsed)}
	for c, k := range codes {
		r.Codes[codeName(c)] = k
		if c == fasthttp.StatusOK {
			r.Requests = k
		}
	}
	r.ReqPerSec = float64(r.Requests) / r.Seconds
	r.EventsPerS = float64(r.Events) / r.Seconds
	slices.Sort(lat)
	r.P50Ms, r.P99Ms, r.P999Ms = pctMs(lat, 0.50), pctMs(lat, 0.99), pctMs(lat, 0.999)
	if len(lat) > 0 {
		r.MaxMs = float64(lat[len(lat)-1]) / 1e6
	}
	return r, nil
}

func codeName(c int) string {
	if c == 0 {
		return "transport_error"
	}
	return fmt.Sprint(c)
}

// pctMs returns the p-quantile of sorted nanosecond durations in milliseconds.
func pctMs(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(p*float64(len(sorted))))
	return float64(sorted[i]) / 1e6
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// basicAuth is the Authorization header value of the bench write key.
var basicAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(benchWriteKey+":"))

// trackRequests builds single-event POST /v1/track requests of the mix
// (only its track calls, so the endpoint matches the type).
func trackRequests(runID string, workers int) requestFn {
	bufs := make([][]byte, workers)
	return func(w int, n uint64, req *fasthttp.Request) int {
		m := mixMessage(runID, n, time.Now())
		m.typ = "track"
		if m.name == "" { // page and identify calls of the mix become email clicks here
			m.name, m.anon, m.traits, m.contextUA = "Email Link Clicked", "", "", ""
			if m.lead == "" {
				m.lead = "lead-" + fmt.Sprint(splitmix(n)%mixLeads)
			}
			m.props = `{"campaign":"spring-nurture","link":"https://www.acme.example/pricing"}`
		}
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/v1/track")
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", basicAuth)
		req.Header.SetUserAgent(serverUserAgent)
		bufs[w] = appendSegment(bufs[w][:0], &m)
		req.SetBodyRaw(bufs[w])
		return 1
	}
}

// batchRequests builds POST /v1/batch requests of size events of the mix.
// The body is built in a per-worker buffer (SetBodyRaw does not copy).
func batchRequests(runID string, size, workers int) requestFn {
	var seq atomic.Uint64
	bufs := make([][]byte, workers)
	return func(w int, _ uint64, req *fasthttp.Request) int {
		b := append(bufs[w][:0], `{"batch":[`...)
		now := time.Now()
		first := seq.Add(uint64(size)) - uint64(size)
		for i := range size {
			if i > 0 {
				b = append(b, ',')
			}
			m := mixMessage(runID, first+uint64(i), now)
			b = appendSegment(b, &m)
		}
		b = append(b, `],"sentAt":"`...)
		b = now.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
		b = append(b, `"}`...)
		bufs[w] = b
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/v1/batch")
		req.Header.SetContentType("application/json")
		req.Header.Set("Authorization", basicAuth)
		req.Header.SetUserAgent(serverUserAgent)
		req.SetBodyRaw(b)
		return size
	}
}

// pixelRequests builds GET /o/{token}.gif requests, each with a link of its
// own (pixelPath(n)): the collector writes a link's open once an hour, so a
// run cycling over a few links would measure answers without a Kafka write.
func pixelRequests(kr *token.Keyring) requestFn {
	sent := time.Now().Add(-24 * time.Hour)
	return func(w int, n uint64, req *fasthttp.Request) int {
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI(pixelPath(kr, n, sent))
		req.Header.SetUserAgent(mailUA)
		return 1
	}
}
