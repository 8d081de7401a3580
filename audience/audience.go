// Package audience answers which audiences a visitor is in, for the site to
// personalise what it shows (GET /v1/audiences, served by the collector):
// the names of the rules file's audiences (scoring.Audience) the visitor is
// in now, nothing else — no score, no personal data.
//
// It is the read side of audiences: the processor keeps each subject's
// audience hits in its scoring state (package scoring), and Reader reads the
// visitor's state and those of the leads it was merged into from Redis
// (leadstate.Store.ReadChain) and decides membership at the time of the
// question (scoring.Rules.AudiencesAt), so a membership lapses by itself
// when its window moves on or its score decays. It writes nothing.
package audience

import (
	"context"
	"errors"
	"time"

	"github.com/leadstream/leadstream/leadstate"
	"github.com/leadstream/leadstream/scoring"
)

// MaxIDBytes bounds the anonymous id of a question.
const MaxIDBytes = 256

// ErrBadID means the anonymous id is empty or longer than MaxIDBytes.
var ErrBadID = errors.New("anonymousId must be 1 to 256 bytes")

// Reader answers audience questions from the scoring states in Redis.
type Reader struct {
	store *leadstate.Store
	rules *scoring.Rules
	now   func() time.Time
}

// New returns a reader of store for the audiences of rules.
func New(store *leadstate.Store, rules *scoring.Rules) *Reader {
	return &Reader{store: store, rules: rules, now: time.Now}
}

// Names returns the names of the rules' audiences, in the rules file's
// order: every name an answer may hold.
func (r *Reader) Names() []string {
	out := make([]string, len(r.rules.Audiences))
	for i := range r.rules.Audiences {
		out[i] = r.rules.Audiences[i].Name
	}
	return out
}

// Audiences returns the names of the audiences the visitor anonymousID is
// in now, in the order of the rules file; none (nil) for a visitor
// leadstream knows nothing of.
//
// They are decided on the visitor's own state alone, unless lead names a
// lead the visitor is linked to (its identify, or a merge of that lead
// since): only then do the lead's states count, hits and score. A visitor
// merged into a lead (a form fill, an identify) keeps its own behaviour hits
// in its state — those it had and those of its later events, by its
// anonymous id (package scoring) — so without the proof it keeps the
// behaviour audiences of its own history; its score moved to the lead's, so
// score audiences need the proof. The caller
// passes a lead only once it has proof that the person asking is that lead
// (GET /v1/audiences checks a userHash): a browser write key may link any
// anonymous id it makes up to any lead id, so a link alone must not open a
// lead's audiences — score audiences would tell its score band.
func (r *Reader) Audiences(ctx context.Context, anonymousID, lead string) ([]string, error) {
	if anonymousID == "" || len(anonymousID) > MaxIDBytes {
		return nil, ErrBadID
	}
	if len(r.rules.Audiences) == 0 {
		return nil, nil
	}
	chain, err := r.store.ReadChain(ctx, scoring.Anon(anonymousID))
	if err != nil {
		return nil, err
	}
	return r.rules.AudiencesAt(Own(chain, lead), r.now().UnixMilli()), nil
}

// Own returns the part of a visitor's chain (leadstate.Store.ReadChain: its
// state, then those of the leads it was merged into) that an answer may use:
// all of it when lead is one of the leads the chain links to, otherwise the
// visitor's state alone (its own hits: a merged visitor's link keeps them).
//
// A chain that ends at a link to a lead with no state (ReadChain stops
// there: a lead that nothing scored yet, such as a signed-in user whose
// first event is the identify that linked it) gets that lead as an empty
// state at its end when proven: the survivor is then a lead the models never
// scored, score 0 in each (score_gte ≤ 0 holds), not the link, whose score
// is the lead's.
func Own(chain []*scoring.State, lead string) []*scoring.State {
	if len(chain) == 0 {
		return nil
	}
	if lead != "" {
		for _, st := range chain {
			if st != nil && st.Into == lead {
				return withSurvivor(chain)
			}
		}
	}
	return chain[:1]
}

// withSurvivor returns chain with an empty state for the lead its last link
// points at, when that lead's state is not in it (it has none). Returned as
// it is: a chain ending at a merge still pending (the frozen state holds the
// history the lead is about to get: its score is the lead's to be), and one
// that ReadChain cut short at a cycle (its last link points back into it).
func withSurvivor(chain []*scoring.State) []*scoring.State {
	last := chain[len(chain)-1]
	if last == nil || last.Into == "" || last.Pending {
		return chain
	}
	for _, st := range chain {
		if st != nil && !st.Anonymous && !st.Account && st.ID == last.Into {
			return chain
		}
	}
	return append(chain[:len(chain):len(chain)], &scoring.State{Subject: scoring.Lead(last.Into)})
}
