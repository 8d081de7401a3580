// Command loadgen drives a running collector with Segment-style requests over
// keep-alive connections and prints throughput and latency. It is the load
// generator of leadstream's benchmarks (a fasthttp client, so figures do not
// depend on tools that may not be installed).
//
//	go run ./bench/loadgen -url http://127.0.0.1:8080 -key dev-server-key -c 64 -d 10s -batch 50
//
// The key must be a server write key (leadstream dev's is dev-server-key):
// the events are email clicks, which browser keys may not send, and server
// keys are not rate limited.
// Every event has a unique messageId, so each one is accepted and counted.
// Only loopback or explicitly given addresses are targeted; the run is bounded
// by -d.
package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	var (
		base     = flag.String("url", "http://127.0.0.1:8080", "collector base URL")
		key      = flag.String("key", "dev-server-key", "server write key")
		conns    = flag.Int("c", 64, "concurrent keep-alive connections")
		dur      = flag.Duration("d", 10*time.Second, "duration of the measured run")
		warmup   = flag.Duration("warmup", 2*time.Second, "unmeasured warm-up before the run")
		batch    = flag.Int("batch", 1, "events per request: 1 = POST /v1/track, >1 = POST /v1/batch")
		leads    = flag.Int("leads", 10000, "distinct lead ids to spread events over")
		maxFails = flag.Int64("max-errors", 1000, "stop early after this many failed requests")
	)
	flag.Parse()
	client := &fasthttp.Client{MaxConnsPerHost: *conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(*key+":"))
	path := "/v1/track"
	if *batch > 1 {
		path = "/v1/batch"
	}
	var (
		seq       atomic.Int64
		measuring atomic.Bool
		stop      atomic.Bool
		okReqs    atomic.Int64
		failReqs  atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		codes     = map[int]int{}
		wg        sync.WaitGroup
	)
	run := os.Getpid()
	for w := 0; w < *conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			var body []byte
			var local []time.Duration
			for !stop.Load() {
				body = body[:0]
				if *batch > 1 {
					body = append(body, `{"batch":[`...)
				}
				for i := 0; i < *batch; i++ {
					if i > 0 {
						body = append(body, ',')
					}
					n := seq.Add(1)
					body = fmt.Appendf(body, `{"type":"track","messageId":"lg-%d-%d","userId":"lead-%d","event":"Email Link Clicked","properties":{"campaign":"bench"}}`, run, n, n%int64(*leads))
				}
				if *batch > 1 {
					body = append(body, `]}`...)
				}
				req.Reset()
				req.SetRequestURI(*base + path)
				req.Header.SetMethod("POST")
				req.Header.SetContentType("application/json")
				req.Header.Set("Authorization", auth)
				req.SetBody(body)
				start := time.Now()
				err := client.Do(req, res)
				d := time.Since(start)
				if !measuring.Load() {
					continue
				}
				code := 0
				if err == nil {
					code = res.StatusCode()
				}
				if code == 200 {
					okReqs.Add(1)
					local = append(local, d)
				} else if failReqs.Add(1) > *maxFails {
					stop.Store(true)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	time.Sleep(*warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*dur)
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	rps := float64(okReqs.Load()) / elapsed.Seconds()
	fmt.Printf("| endpoint | conns | events/req | ok req/s | events/s | p50 | p99 | errors |\n|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| %s | %d | %d | %.0f | %.0f | %s | %s | %d |\n", path, *conns, *batch, rps, rps*float64(*batch),
		pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), failReqs.Load())
	if len(codes) > 1 || codes[200] == 0 {
		s := ""
		for c, n := range codes {
			s += " " + strconv.Itoa(c) + "×" + strconv.Itoa(n)
		}
		fmt.Println("status codes:" + s)
	}
}
