package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/leadstream/leadstream/event"
	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/processor"
	"github.com/leadstream/leadstream/scoring"
	"github.com/leadstream/leadstream/warehouse"
)

// rescoreResult is what a rescore found for one model.
type rescoreResult struct {
	Model     string
	Leads     int
	Gain      int // would become MQL
	Lose      int // would lose MQL status
	Crossings int // threshold crossings in the replayed history
	Movers    []mover
}

type mover struct {
	Lead              string
	Current, Rescored float64
	CurrentMQL, MQL   bool
}

// runRescore recomputes every lead's scores from the raw history in ClickHouse
// with the given rules: a dry run compares them with the live scores in Redis;
// --apply writes them to Redis.
func runRescore(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rescore", flag.ContinueOnError)
	var ch warehouse.Config
	var rcfg leadstate.Config
	ch.RegisterFlags(fs)
	rcfg.RegisterFlags(fs)
	rulesPath := fs.String("rules", "", "scoring rules YAML file to rescore with (required)")
	window := fs.Duration("processor.dedup-window", scoring.DefaultDedupWindow, "the processors' dedup window: events more than this before their receipt are not scored, as live")
	anonTTL := fs.Duration("processor.anonymous-ttl", scoring.DefaultAnonymousTTL, "expiry of visitors' states written by -apply, as the processors'")
	apply := fs.Bool("apply", false, "write the rescored state to Redis (default: dry run, report only)")
	top := fs.Int("top", 10, "how many of the biggest movers to list per model")
	fromDomain := fs.Bool("accounts.from-email-domain", false, "leads without a group call join the account of their e-mail domain, as the processors' setting")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rulesPath == "" {
		return errors.New("rescore: -rules FILE is required")
	}
	if *top < 0 {
		return fmt.Errorf("rescore: -top must not be negative, got %d", *top)
	}
	// As the processors check them: an anonymous-ttl of 0 would expire every
	// visitor's state as -apply writes it.
	if err := processor.ValidateWindows(*window, *anonTTL); err != nil {
		return fmt.Errorf("rescore: %w", err)
	}
	rules, err := scoring.Load(*rulesPath)
	if err != nil {
		return err
	}
	conn, err := warehouse.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()
	rdb, err := leadstate.Open(ctx, rcfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := leadstate.NewStore(rdb)

	rp := scoring.NewReplayer(rules, *window)
	rp.Core().SetFromEmailDomain(*fromDomain)
	n := 0
	// lastSeen is when (Unix ms) the processors last wrote or passed through
	// each visitor, as near as the history tells (received, or event time
	// if later): they keep its state anonymous-ttl after that.
	lastSeen := map[string]int64{}
	seen := func(id string, at int64) {
		if id != "" && at > lastSeen[id] {
			lastSeen[id] = at
		}
	}
	if err := warehouse.History(ctx, conn, ch.Database, func(e *event.Event) error {
		if rp.Core().Relevant(e) { // the processors skip the others without touching a state
			at := max(e.ReceivedAt.UnixMilli(), e.EventTime.UnixMilli())
			seen(e.AnonymousID, at)
			if e.Type == event.Alias {
				seen(e.PreviousID, at) // a visitor merged by alias
			}
		}
		rp.Apply(e)
		n++
		return nil
	}); err != nil {
		return err
	}
	now := time.Now()
	results, err := compareRescore(ctx, store, rules, rp, now, *top)
	if err != nil {
		return err
	}
	accts, err := compareAccounts(ctx, store, rules, rp, now, *top)
	if err != nil {
		return err
	}
	printRescore(os.Stdout, *rulesPath, n, results)
	printAccounts(os.Stdout, accts)
	if !*apply {
		fmt.Println("\ndry run: nothing was changed (add -apply to write these scores to Redis)")
		return nil
	}
	written, expired, nowMs := 0, 0, now.UnixMilli()
	for s, st := range rp.States() {
		rp.Core().Prune(st, nowMs)
		var expireAt int64
		switch {
		case s.Anonymous:
			// As the processors keep it: anonymous-ttl after its last
			// event. One whose live state expired is not brought back.
			last, ok := lastSeen[s.ID]
			if !ok {
				last = nowMs
			}
			if expireAt = last + anonTTL.Milliseconds(); expireAt <= nowMs {
				expired++
				continue
			}
		case s.Account && scoring.Memberless(st): // as the processor writes them
			expireAt = nowMs + anonTTL.Milliseconds()
		}
		if err := store.Restore(ctx, st, rp.Spilled(s), rp.Core(), nowMs, expireAt); err != nil {
			return err
		}
		written++
	}
	old, err := store.DeleteFirstLayout(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("\napplied: %d leads, anonymous visitors and accounts rewritten in Redis (no MQL or MQA records were published)", written)
	if expired > 0 {
		fmt.Printf("; %d visitors not written, last seen more than -processor.anonymous-ttl ago", expired)
	}
	if old > 0 {
		fmt.Printf("; %d keys of the first Redis layout deleted", old)
	}
	fmt.Println()
	return nil
}

// compareRescore compares the replayed leads with their live state.
func compareRescore(ctx context.Context, store *leadstate.Store, rules *scoring.Rules, rp *scoring.Replayer, now time.Time, top int) ([]rescoreResult, error) {
	results := make([]rescoreResult, len(rules.Models))
	for i, m := range rules.Models {
		results[i].Model = m.Name
	}
	for s, st := range rp.States() {
		if s.Anonymous || s.Account {
			continue
		}
		for i, m := range rules.Models {
			// A lead merged into another since crossed as itself: live
			// published its MQL record before the merge.
			results[i].Crossings += rp.Crossings(s.ID, m.Name)
		}
		if st.Into != "" {
			continue
		}
		cur, err := store.ReadLead(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		for i, m := range rules.Models {
			r := &results[i]
			mv := mover{Lead: s.ID}
			if cur.State != nil && cur.State.Into == "" {
				if live := cur.State.Model(m.Name); live != nil {
					mv.Current, mv.CurrentMQL = live.ScoreAt(now.UnixMilli(), m.HalfLife), live.MQL
				}
			}
			if ms := st.Model(m.Name); ms != nil {
				mv.Rescored, mv.MQL = ms.ScoreAt(now.UnixMilli(), m.HalfLife), ms.MQL
			}
			r.Leads++
			switch {
			case mv.MQL && !mv.CurrentMQL:
				r.Gain++
			case !mv.MQL && mv.CurrentMQL:
				r.Lose++
			}
			r.Movers = append(r.Movers, mv)
		}
	}
	for i := range results {
		mv := results[i].Movers
		sort.Slice(mv, func(a, b int) bool {
			da, db := math.Abs(mv[a].Rescored-mv[a].Current), math.Abs(mv[b].Rescored-mv[b].Current)
			if da != db {
				return da > db
			}
			return mv[a].Lead < mv[b].Lead
		})
		// Movers are leads whose score changes by more than float noise.
		k := 0
		for k < len(mv) && k < top && math.Abs(mv[k].Rescored-mv[k].Current) > 1e-6*math.Max(1, math.Abs(mv[k].Current)) {
			k++
		}
		results[i].Movers = mv[:k]
	}
	return results, nil
}

func printRescore(w io.Writer, rulesPath string, events int, results []rescoreResult) {
	fmt.Fprintf(w, "rescored from %d stored events with %s\n", events, rulesPath)
	for _, r := range results {
		fmt.Fprintf(w, "\nmodel %s: %d leads, %d would become MQL, %d would lose MQL status, %d crossings in the replayed history\n",
			r.Model, r.Leads, r.Gain, r.Lose, r.Crossings)
		if len(r.Movers) == 0 {
			fmt.Fprintln(w, "  no score changes")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  lead\tcurrent\trescored\tchange\tmql now\tmql rescored\t")
		for _, m := range r.Movers {
			fmt.Fprintf(tw, "  %s\t%.2f\t%.2f\t%+.2f\t%v\t%v\t\n", m.Lead, m.Current, m.Rescored, m.Rescored-m.Current, m.CurrentMQL, m.MQL)
		}
		tw.Flush()
	}
}
