package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/internal/testsvc"
	"github.com/leadstream/leadstream/leadapi"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/leadstate/leadstatetest"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/stream"
)

// faultProxy forwards TCP connections to a Redis server and can reset every
// connection it carries (RST, as a restarting server or a broken network
// does), at any point of a command or a pipeline.
type faultProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	resets int
	hang   chan struct{} // answers wait until it is closed; nil: forwarding
	// cutOn, when set, loses the answer to the first request holding it:
	// the request is forwarded, and once landed reports it took effect,
	// every connection is reset before the answer is forwarded.
	cutOn  []byte
	landed func() bool
	cut    chan struct{} // closed when cutOn struck
}

// cutAt arms cutOn (see faultProxy).
func (p *faultProxy) cutAt(pattern string, landed func() bool) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOn, p.landed, p.cut = []byte(pattern), landed, make(chan struct{})
	return p.cut
}

// resume forwards again.
func (p *faultProxy) resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hang != nil {
		close(p.hang)
		p.hang = nil
	}
}

func (p *faultProxy) wait() {
	p.mu.Lock()
	h := p.hang
	p.mu.Unlock()
	if h != nil {
		<-h
	}
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.resume()
		p.reset()
	})
	return p
}

func (p *faultProxy) addr() string { return p.ln.Addr().String() }

func (p *faultProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go p.forward(s, c, true)
		go p.forward(c, s, false)
	}
}

// forward copies src to dst (toServer: requests) until either fails.
func (p *faultProxy) forward(dst, src net.Conn, toServer bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if toServer {
				p.mu.Lock()
				if p.cutOn != nil && bytes.Contains(buf[:n], p.cutOn) {
					pattern := p.cutOn
					p.cutOn, p.hang = nil, make(chan struct{}) // answers wait
					landed, cut := p.landed, p.cut
					p.mu.Unlock()
					if _, err := dst.Write(buf[:n]); err != nil {
						break
					}
					ok := false
					for deadline := time.Now().Add(2 * time.Second); !ok && time.Now().Before(deadline); {
						time.Sleep(5 * time.Millisecond)
						ok = landed()
					}
					if !ok { // not run (NOSCRIPT): wait for the next such request
						p.mu.Lock()
						p.cutOn = pattern
						p.mu.Unlock()
						p.resume()
						continue
					}
					p.reset()
					p.resume()
					close(cut)
					return
				}
				p.mu.Unlock()
			}
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// reset drops every connection carried, with an RST.
func (p *faultProxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
		delete(p.conns, c)
	}
	p.resets++
}

// chaos resets every connection at random intervals of up to every until stop is closed.
func (p *faultProxy) chaos(every time.Duration, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(time.Duration(rand.Int64N(int64(every))) + time.Millisecond):
			p.reset()
		}
	}
}

// Connections to Redis reset at any moment — mid-pipeline, between a
// script's run and its reply — while visitors identify and leads cross:
// every event is scored exactly once, every crossing is published once, and
// the processor finishes the work once the network is stable.
func TestProcessorRedisConnectionResets(t *testing.T) {
	proxy := newFaultProxy(t, testsvc.Redis(t))
	store := leadstatetest.Open(t, proxy.addr())
	rules := scoring.Default()
	r := startProcessor(t, store, rules)
	vs, all := journeys(30)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); proxy.chaos(8*time.Millisecond, stop) }()
	recs := records(t, all...)
	produceSlowly(t, r, recs)
	r.produce(t, stream.TopicEvents, recs...) // and everything again
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	checkJourneys(t, r, store, rules, vs, all, 30*time.Second)
	t.Logf("%d resets; scored %v, duplicate %v", proxy.resets, r.events(t, "scored"), r.events(t, "duplicate"))
}

// journeys is TestProcessorManyVisitors's population: visitors that browse,
// identify and are clicked as leads, every other one crossing.
type journeyVisitor struct {
	anon, lead string
	evs        []*event.Event
}

func journeys(n int) ([]journeyVisitor, []*event.Event) {
	vs := make([]journeyVisitor, n)
	var all []*event.Event
	for i := range vs {
		v := &vs[i]
		v.anon, v.lead = newID("anon"), newID("lead")
		at := func(min int) time.Time { return t0.Add(time.Duration(i*10+min) * time.Minute) }
		id := touch(v.anon+"-id1", event.Identify, v.anon, v.lead, at(2))
		id.Traits = json.RawMessage(`{"title":"CTO"}`)
		v.evs = []*event.Event{
			pageView(v.anon+"-pv1", v.anon, "", "/", at(0)),
			pageView(v.anon+"-pv2", v.anon, "", "/pricing", at(1)),
			id,
			touch(v.anon+"-ec1", event.EmailClick, "", v.lead, at(3)), // keyed by the lead: another partition
			pageView(v.anon+"-pv3", v.anon, "", "/", at(5)),           // after the identify: the lead's
		}
		if i%2 == 0 { // 5+20+15+5+50 + fit 20 = 115: MQL (without: 65)
			v.evs = append(v.evs, touch(v.anon+"-dw1", event.DealWon, "", v.lead, at(4)))
		}
		all = append(all, v.evs...)
	}
	return vs, all
}

// checkJourneys waits until every event of all was handled twice (scored or
// duplicate) and checks every lead's score, link and crossing.
func checkJourneys(t *testing.T, r *running, store *leadstate.Store, rules *scoring.Rules, vs []journeyVisitor, all []*event.Event, timeout time.Duration) {
	t.Helper()
	m := &rules.Models[0]
	n := float64(len(all))
	eventually(t, "all events processed and MQLs published", timeout, func() (bool, string) {
		s, d, pub := r.events(t, "scored"), r.events(t, "duplicate"), r.metric(t, "leadstream_processor_mql_published_total", "")
		return s+d == 2*n && pub >= float64(len(vs)/2), fmt.Sprintf("scored=%v duplicate=%v want %v together; mql published=%v of %d", s, d, 2*n, pub, len(vs)/2)
	})
	mqls, unique := r.mqls(t)
	byLead := map[string]event.MQL{}
	for _, rec := range mqls {
		byLead[rec.LeadID] = rec
	}
	if unique != len(vs)/2 || len(byLead) != len(vs)/2 {
		t.Errorf("%d MQL records, %d distinct, for %d leads; want %d distinct", len(mqls), unique, len(byLead), len(vs)/2)
	}
	ctx := t.Context()
	for i, v := range vs {
		bv, tm, _ := expect(m, v.evs...)
		lv, err := leadapi.Read(ctx, store, v.lead, rules.Models, time.UnixMilli(tm))
		if err != nil {
			t.Fatal(err)
		}
		mv := lv.Models[m.Name]
		if !near(mv.Score, bv+20) || mv.Fit != 20 || mv.MQL != (i%2 == 0) {
			t.Errorf("visitor %d: %+v, want score %v (fit 20), MQL %v", i, mv, bv+20, i%2 == 0)
		}
		if l := leadstatetest.LinkedLead(t, store, v.anon); l != v.lead {
			t.Errorf("visitor %d: LinkedLead = %q", i, l)
		}
		if rec, ok := byLead[v.lead]; ok != (i%2 == 0) || ok && (!strings.HasPrefix(rec.TriggerEventID, v.anon+"-") || outboxLen(t, store, v.lead) != 0) {
			t.Errorf("visitor %d: MQL %+v (published %v)", i, rec, ok)
		}
	}
}

// produceSlowly writes records in small pieces, so that batches are many
// while something happens to Redis.
func produceSlowly(t *testing.T, r *running, recs []stream.Record) {
	t.Helper()
	for len(recs) > 0 {
		n := min(len(recs), 7)
		r.produce(t, stream.TopicEvents, recs[:n]...)
		recs = recs[n:]
		time.Sleep(20 * time.Millisecond)
	}
}

func redisCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// Slots move between masters (redis-cli --cluster reshard: MOVED and ASK
// redirections, TRYAGAIN for a subject whose keys are split across two
// nodes) while events are scored: every event is scored once, every
// crossing published once.
func TestProcessorClusterReshard(t *testing.T) {
	c := testsvc.PrivateRedisCluster(t)
	store := leadstatetest.Open(t, strings.Join(c.Addrs, ","))
	rules := scoring.Default()
	r := startProcessor(t, store, rules)
	vs, all := journeys(40)
	ids := make([]string, 3)
	for i, a := range c.Addrs {
		ids[i] = strings.TrimSpace(redisCLI(t, "-u", "redis://"+a, "cluster", "myid"))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2 {
			from, to := ids[i], ids[(i+1)%3]
			out, err := exec.Command("redis-cli", "--cluster", "reshard", c.Addrs[0], "--cluster-from", from, "--cluster-to", to,
				"--cluster-slots", "3000", "--cluster-yes", "--cluster-pipeline", "5").CombinedOutput()
			if err != nil {
				t.Errorf("reshard: %v\n%s", err, out)
				return
			}
		}
	}()
	recs := records(t, all...)
	produceSlowly(t, r, recs)
	produceSlowly(t, r, recs)
	<-done
	checkJourneys(t, r, store, rules, vs, all, 30*time.Second)
	t.Logf("scored %v duplicate %v conflicts %v", r.events(t, "scored"), r.events(t, "duplicate"), r.metric(t, "leadstream_processor_commit_conflicts_total", ""))
}

// A store whose answer is lost (the connection reset after the server ran
// it) is sent again by the Redis client; the second run finds the first
// one's write. That is the batch's own write, not another processor's: the
// events count as scored, not as duplicates, and no conflict is counted (an
// earlier release reported both, so the metrics showed redeliveries and
// contention where there were none).
func TestProcessorAnswerLostAfterStore(t *testing.T) {
	addr := testsvc.Redis(t)
	proxy := newFaultProxy(t, addr)
	store := leadstatetest.Open(t, proxy.addr())
	direct := leadstatetest.Client(t, leadstatetest.Open(t, addr))
	r := startProcessor(t, store, scoring.Default())
	lead := newID("lead")
	key := leadstatetest.Key(scoring.Lead(lead), "s")
	changed := func() func() bool {
		before, _ := direct.Get(t.Context(), key).Result()
		return func() bool {
			now, _ := direct.Get(t.Context(), key).Result()
			return now != before
		}
	}
	// A new lead's first write (SET NX), then a write over it (the script).
	// The script's requests are known by the outbox key they name.
	for i, cmd := range []string{"\r\nset\r\n", leadstatetest.Key(scoring.Lead(lead), "o")} {
		cut := proxy.cutAt(cmd, changed())
		r.produceEvents(t, pageView(fmt.Sprintf("%s-pv%d", lead, i), "", lead, "/pricing", t0.Add(time.Duration(i)*time.Minute)))
		select {
		case <-cut:
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s sent", cmd)
		}
		eventually(t, cmd+" handled", 10*time.Second, func() (bool, string) {
			s, d := r.events(t, "scored"), r.events(t, "duplicate")
			return s+d == float64(i+1), fmt.Sprintf("scored=%v duplicate=%v", s, d)
		})
		if s, c := r.events(t, "scored"), r.metric(t, "leadstream_processor_commit_conflicts_total", ""); s != float64(i+1) || c != 0 {
			t.Errorf("after the answer to a request holding %q was lost: scored=%v (want %d), commit conflicts=%v (want 0)", cmd, s, i+1, c)
		}
	}
	if v, _ := modelState(t, store, lead, "default"); v == "" {
		t.Errorf("%s has no score", lead)
	}
}

// A processor whose Redis may evict keys when full (an LRU policy, as managed
// services set by default) says so at start: it loses scores, dedup and
// crossings without an error. One with noeviction does not.
func TestProcessorWarnsOfEviction(t *testing.T) {
	for _, policy := range []string{"allkeys-lru", "volatile-lru", "noeviction"} {
		t.Run(policy, func(t *testing.T) {
			srv := testsvc.PrivateRedis(t, "--maxmemory", "64mb", "--maxmemory-policy", policy)
			var logs testsvc.SyncBuffer
			startProcessorLog(t, leadstatetest.Open(t, srv.Addr), scoring.Default(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
			eventually(t, "processor running", 10*time.Second, func() (bool, string) {
				return strings.Contains(logs.String(), "processor running"), logs.String()
			})
			warned := strings.Contains(logs.String(), "maxmemory_policy="+policy)
			if warned != (policy != "noeviction") {
				t.Errorf("warned %v, want %v:\n%s", warned, policy != "noeviction", logs.String())
			}
		})
	}
}

// A master of the cluster goes away while events are scored and comes back
// with its data (AOF): the batches that need it are retried until it is
// back, and every event is scored once, every crossing published once.
func TestProcessorClusterNodeRestart(t *testing.T) {
	c := testsvc.PrivateRedisCluster(t, "--appendonly", "yes")
	store := leadstatetest.Open(t, strings.Join(c.Addrs, ","))
	rules := scoring.Default()
	r := startProcessor(t, store, rules)
	vs, all := journeys(30)
	recs := records(t, all...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		if err := c.StopNode(1); err != nil {
			t.Error(err)
		}
		time.Sleep(time.Second)
		if err := c.Restart(context.Background(), 1); err != nil {
			t.Error(err)
		}
	}()
	produceSlowly(t, r, recs)
	<-done
	r.produce(t, stream.TopicEvents, recs...)
	checkJourneys(t, r, store, rules, vs, all, 30*time.Second)
}
