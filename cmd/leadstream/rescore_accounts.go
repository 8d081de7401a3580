package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// accountResult is what a rescore found for the accounts of one model.
type accountResult struct {
	Model     string
	Accounts  int
	Gain      int // would become MQA
	Lose      int // would lose MQA status
	Crossings int // MQA crossings in the replayed history
	Movers    []accountMover
}

type accountMover struct {
	Account           string
	Current, Rescored float64
}

// compareAccounts compares the replayed accounts with their live state, per
// model that scores accounts; scores are as of each account's newest member
// time, decayed to now; it lists the top biggest movers.
func compareAccounts(ctx context.Context, store *leadstate.Store, rules *scoring.Rules, rp *scoring.Replayer, now time.Time, top int) ([]accountResult, error) {
	var out []accountResult
	for i := range rules.Models {
		if rules.Models[i].Accounts != nil {
			out = append(out, accountResult{Model: rules.Models[i].Name})
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	nowMs := now.UnixMilli()
	for s, st := range rp.States() {
		if !s.Account {
			continue
		}
		live, err := store.ReadAccount(ctx, s.ID)
		if err != nil {
			return nil, err
		}
		for i := range out {
			r := &out[i]
			m := rules.Model(r.Model)
			r.Accounts++
			r.Crossings += rp.AccountCrossings(s.ID, m.Name)
			score := func(st *scoring.State) (float64, bool) {
				if st == nil {
					return 0, false
				}
				ms := st.Model(m.Name)
				if ms == nil {
					return 0, false
				}
				sum, _, _ := scoring.Engagement(st, m, max(nowMs, ms.T))
				return sum + ms.Fit, ms.MQL
			}
			cur, curMQA := score(live)
			re, reMQA := score(st)
			switch {
			case reMQA && !curMQA:
				r.Gain++
			case !reMQA && curMQA:
				r.Lose++
			}
			if math.Abs(re-cur) > 1e-6*math.Max(1, math.Abs(cur)) {
				r.Movers = append(r.Movers, accountMover{Account: s.ID, Current: cur, Rescored: re})
			}
		}
	}
	for i := range out {
		mv := out[i].Movers
		sort.Slice(mv, func(a, b int) bool {
			da, db := math.Abs(mv[a].Rescored-mv[a].Current), math.Abs(mv[b].Rescored-mv[b].Current)
			if da != db {
				return da > db
			}
			return mv[a].Account < mv[b].Account
		})
		out[i].Movers = mv[:min(len(mv), max(top, 0))]
	}
	return out, nil
}

func printAccounts(w io.Writer, results []accountResult) {
	for _, r := range results {
		fmt.Fprintf(w, "\naccounts, model %s: %d accounts, %d would become MQA, %d would lose MQA status, %d MQA crossings in the replayed history\n",
			r.Model, r.Accounts, r.Gain, r.Lose, r.Crossings)
		if len(r.Movers) == 0 {
			fmt.Fprintln(w, "  no account score changes")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "  account\tcurrent\trescored\tchange\t")
		for _, m := range r.Movers {
			fmt.Fprintf(tw, "  %s\t%.2f\t%.2f\t%+.2f\t\n", m.Account, m.Current, m.Rescored, m.Rescored-m.Current)
		}
		tw.Flush()
	}
}
