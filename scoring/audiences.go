package scoring

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/event"
)

// Audiences: named conditions on a visitor or lead that the site asks about
// (GET /v1/audiences) to personalise what it shows. Two kinds of condition,
// alone or together (both must hold):
//
//   - behaviour: at least Count events matching Cond within the last Window
//     (a sliding window of event time), e.g. three page views of /pricing* in
//     7 days;
//   - score: the subject's score in Model (decayed to the time of the
//     question, fit included) is at least ScoreGTE.
//
// The processor keeps, per subject and behaviour audience, the latest Count
// matching hits by (event time, event id) in the subject's State (see
// State.Audiences): the latest Count of a set of hits do not depend on the
// order they arrived in, a redelivered event is a duplicate like any other,
// and a merge (a visitor identifying) is the union of two sets. Membership is
// decided when asked (AudiencesAt), so it ends by itself when the window or
// the decay lets it lapse. What a subject keeps is bounded by the audiences
// (Count hits each); hits that can no longer count are pruned.
//
// A visitor keeps its own hits after it is merged into a lead: its link (the
// emptied state pointing at the lead) keeps a copy of the hits it held
// (ownAudiences), and every later event carrying its anonymous id is
// recorded on the link too, next to the lead's (planner.visitorHits). A
// question without proof that the person asking is the lead reads the
// visitor's state alone (package audience): a visitor who filled a form
// keeps the audiences of its anonymous history, never the lead's. The link's
// hits are the latest Count of the events carrying its id, whatever the
// order they and the merge arrived in; they are bounded, pruned and expire
// (processor.anonymous-ttl) as any visitor's state.

// MaxAudienceCount bounds an audience's count: the hits a state keeps for it.
const MaxAudienceCount = 100

// Audience is one entry of the rules file's `audiences:` list.
type Audience struct {
	Name string
	// Cond is the behaviour condition (Event is empty when there is none):
	// its Event, Track, URL, Campaign and Properties match as a rule's do;
	// Name and Points are not used.
	Cond   Rule
	Count  int
	Window time.Duration
	// Model names the model of the score condition ("" when there is none).
	Model    string
	ScoreGTE float64
}

// HasBehaviour reports whether the audience has a behaviour condition.
func (a *Audience) HasBehaviour() bool { return a.Cond.Event != "" }

// Audience returns the audience named name, or nil.
func (r *Rules) Audience(name string) *Audience {
	for i := range r.Audiences {
		if r.Audiences[i].Name == name {
			return &r.Audiences[i]
		}
	}
	return nil
}

// AudienceHit is one event that matched an audience's behaviour condition.
type AudienceHit struct {
	Time int64 // event time, Unix ms
	ID   string
}

func (h AudienceHit) before(o AudienceHit) bool {
	return h.Time < o.Time || (h.Time == o.Time && h.ID < o.ID)
}

// addHit adds h to hits (sorted by (Time, ID)) keeping the latest n. It
// reports whether the list changed.
func addHit(hits []AudienceHit, h AudienceHit, n int) ([]AudienceHit, bool) {
	pos := sort.Search(len(hits), func(i int) bool { return !hits[i].before(h) })
	if pos < len(hits) && hits[pos] == h {
		return hits, false
	}
	if len(hits) >= n && pos == 0 {
		return hits, false // older than the n kept
	}
	hits = slices.Insert(hits, pos, h)
	if len(hits) > n {
		hits = slices.Delete(hits, 0, len(hits)-n)
	}
	return hits, true
}

// audienceMatcher matches events against the behaviour conditions of the
// audiences: a model whose rules are the conditions, rule i being audience
// idx[i].
type audienceMatcher struct {
	m   Model
	idx []int
}

func newAudienceMatcher(r *Rules) audienceMatcher {
	var am audienceMatcher
	for i := range r.Audiences {
		if a := &r.Audiences[i]; a.HasBehaviour() {
			c := a.Cond
			c.Name, c.Points, c.Cap = a.Name, 1, nil
			am.m.Rules = append(am.m.Rules, c)
			am.idx = append(am.idx, i)
		}
	}
	return am
}

// audienceRelevant reports whether e matches the behaviour condition of an audience.
func (c *Core) audienceRelevant(e *event.Event) bool {
	if len(c.aud.idx) == 0 {
		return false
	}
	c.ahits = c.aud.m.Match(e, c.ahits[:0])
	return len(c.ahits) > 0
}

// applyAudiences records e as a hit of every audience whose behaviour
// condition it matches. It reports whether st changed.
func (c *Core) applyAudiences(st *State, e *event.Event, te int64) bool {
	if len(c.aud.idx) == 0 {
		return false
	}
	c.ahits = c.aud.m.Match(e, c.ahits[:0])
	changed := false
	for _, h := range c.ahits {
		if addAudienceHit(st, &c.rules.Audiences[c.aud.idx[h.Rule]], AudienceHit{Time: te, ID: e.ID}) {
			changed = true
		}
	}
	return changed
}

// addAudienceHit adds h to st's hits of audience a (addHit), reporting
// whether they changed.
func addAudienceHit(st *State, a *Audience, h AudienceHit) bool {
	hits, ok := addHit(st.Audiences[a.Name], h, a.Count)
	if ok {
		if st.Audiences == nil {
			st.Audiences = map[string][]AudienceHit{}
		}
		st.Audiences[a.Name] = hits
	}
	return ok
}

// mergeAudiences adds src's audience hits to dst's (the union, each list
// keeping its latest Count). Hits of audiences the rules no longer have are
// dropped.
func (c *Core) mergeAudiences(dst, src *State) {
	names := make([]string, 0, len(src.Audiences))
	for n := range src.Audiences {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := c.rules.Audience(n)
		if a == nil || !a.HasBehaviour() {
			continue
		}
		if dst.Audiences == nil {
			dst.Audiences = map[string][]AudienceHit{}
		}
		list := dst.Audiences[n]
		for _, h := range src.Audiences[n] {
			list, _ = addHit(list, h, a.Count)
		}
		dst.Audiences[n] = list
	}
	src.Audiences = nil
}

// ownAudiences is what a subject merged into another keeps of its audience
// hits once its history moved to the survivor: a visitor a copy of them (its
// own audiences, see the package comment), a lead merged by alias none
// (audiences are asked for by anonymous id). Hits of audiences the rules no
// longer have are dropped, as a merge drops them.
func (c *Core) ownAudiences(src *State) map[string][]AudienceHit {
	if !src.Anonymous {
		return nil
	}
	var out map[string][]AudienceHit
	for n, hits := range src.Audiences {
		if a := c.rules.Audience(n); a == nil || !a.HasBehaviour() || len(hits) == 0 {
			continue
		}
		if out == nil {
			out = map[string][]AudienceHit{}
		}
		out[n] = slices.Clone(hits)
	}
	return out
}

// visitorHits records, on the link of the visitor whose anonymous id e
// carries (a visitor merged into a lead: e scored on the lead), e's hits of
// the behaviour audiences, so that the visitor keeps its own hits next to
// the lead's. o is e's outcome: an event that scored, matched nothing on the
// lead (its hit older than the lead's Count), was a duplicate there (the
// link's write may have been lost while the lead's was stored) or was
// committed already (a write of the link that lost its compare-and-set) is
// recorded; one not applied (late, stale, bot, dead, blocked) is not.
// Recording is idempotent: a hit whose event id the link holds already is
// not added again (a resent event's time may differ a little between
// sends), nor one outside its window as of the plan's time.
func (p *planner) visitorHits(e *event.Event, o Outcome) {
	switch o {
	case Scored, NoMatch, Duplicate, Skipped:
	default:
		return
	}
	if e.AnonymousID == "" || !p.c.audienceRelevant(e) {
		return
	}
	w, ok := p.get(Anon(e.AnonymousID))
	if !ok || w.cur.Into == "" {
		return // not known yet (planned again once read); or not merged: e scored on it
	}
	te := e.EventTime.UnixMilli()
	for _, h := range p.c.ahits {
		a := &p.c.rules.Audiences[p.c.aud.idx[h.Rule]]
		if p.now > 0 && te <= p.now-a.Window.Milliseconds() {
			continue
		}
		if slices.ContainsFunc(w.cur.Audiences[a.Name], func(x AudienceHit) bool { return x.ID == e.ID }) {
			continue
		}
		if addAudienceHit(w.cur, a, AudienceHit{Time: te, ID: e.ID}) {
			w.changed = true
		}
	}
}

// pruneAudiences forgets, as of now (Unix ms), the hits that cannot count
// any more (older than their audience's window), and those of audiences the
// rules no longer have (or whose count shrank). Memberships from now on do
// not change: a hit outside the window now is outside it later too.
func (c *Core) pruneAudiences(st *State, now int64) {
	for n, hits := range st.Audiences {
		a := c.rules.Audience(n)
		if a == nil || !a.HasBehaviour() {
			delete(st.Audiences, n)
			continue
		}
		from := now - a.Window.Milliseconds()
		cut := sort.Search(len(hits), func(i int) bool { return hits[i].Time > from })
		cut = max(cut, len(hits)-a.Count)
		if cut >= len(hits) {
			delete(st.Audiences, n)
			continue
		}
		if cut > 0 {
			st.Audiences[n] = slices.Clone(hits[cut:])
		}
	}
	if len(st.Audiences) == 0 {
		st.Audiences = nil
	}
}

// AudiencesAt returns the names of the audiences (in rules order) that a
// subject is in at now (Unix ms). chain is the subject's state followed by
// the states of the leads it was merged into, the survivor last (nil entries
// are skipped): behaviour hits count from all of them (a merge still in
// progress has not moved them yet), the score is the survivor's.
func (r *Rules) AudiencesAt(chain []*State, now int64) []string {
	var survivor *State
	for _, st := range chain {
		if st != nil {
			survivor = st
		}
	}
	if survivor == nil {
		return nil
	}
	var out []string
	for i := range r.Audiences {
		a := &r.Audiences[i]
		if a.HasBehaviour() && !a.behaviourAt(chain, now) {
			continue
		}
		if a.Model != "" && !r.scoreAt(a, survivor, now) {
			continue
		}
		out = append(out, a.Name)
	}
	return out
}

// behaviourAt reports whether at least Count events of the chain's hits lie
// within the window ending at now. An event counts once, by its id, however
// many states hold it and at whatever times: a visitor's link and its lead
// may hold one event at two times (the link's write lost and the event
// resent, its time moved a little by the clock-skew correction: visitorHits).
func (a *Audience) behaviourAt(chain []*State, now int64) bool {
	from := now - a.Window.Milliseconds()
	seen := map[string]bool{}
	n := 0
	for _, st := range chain {
		if st == nil {
			continue
		}
		for _, h := range st.Audiences[a.Name] {
			if h.Time > from && !seen[h.ID] {
				seen[h.ID] = true
				n++
			}
		}
	}
	return n >= a.Count
}

// scoreAt reports whether st's score in a's model at now is at least
// a.ScoreGTE. A subject with no state in that model has score 0 there (as
// the lead API shows it): a score_gte of 0 or below holds for it, as for one
// whose points decayed to 0. Not so for a subject merged into another (st is
// the last state the question may read: a visitor asked about without its
// lead's proof, see package audience): its score is the lead's, which it
// does not hold, so without a model state of its own (which a merge still
// pending keeps) no score condition holds for it, score_gte ≤ 0 included.
// A subject with no state at all has no audiences (AudiencesAt: an unknown
// visitor gets none).
func (r *Rules) scoreAt(a *Audience, st *State, now int64) bool {
	m := r.Model(a.Model)
	if m == nil {
		return false
	}
	ms := st.Model(a.Model)
	if ms == nil {
		return st.Into == "" && 0 >= a.ScoreGTE
	}
	return ms.ScoreAt(now, m.HalfLife) >= a.ScoreGTE
}

// Parsing: the rules file's top-level `audiences:` list.

var audienceNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// daysRE is a duration given in days, optionally followed by a Go duration:
// 7d, 1d12h.
var daysRE = regexp.MustCompile(`^(\d+)d(.*)$`)

// parseDays parses a Go duration that may start with a number of days.
func parseDays(s string) (time.Duration, error) {
	if m := daysRE.FindStringSubmatch(s); m != nil {
		days, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || days > 100*365 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		d := time.Duration(days) * 24 * time.Hour
		if m[2] != "" {
			rest, err := time.ParseDuration(m[2])
			if err != nil || strings.HasPrefix(m[2], "-") || strings.HasPrefix(m[2], "+") {
				return 0, fmt.Errorf("bad duration %q", s)
			}
			if rest > math.MaxInt64-d {
				return 0, fmt.Errorf("bad duration %q", s) // past time.Duration's 292 years
			}
			d += rest
		}
		return d, nil
	}
	return time.ParseDuration(s)
}

func (p *parser) audiences(n *yaml.Node, r *Rules) []Audience {
	items := p.sequence(n, "audiences")
	var out []Audience
	firstLine := map[string]int{}
	for i, an := range items {
		path := fmt.Sprintf("audiences[%d]", i)
		a, ok := p.audience(an, path, r)
		if !ok {
			continue
		}
		if l, dup := firstLine[a.Name]; dup {
			p.errf(an, path+".name", "duplicate audience name %q (first at line %d)", a.Name, l)
			continue
		}
		firstLine[a.Name] = an.Line
		out = append(out, a)
	}
	return out
}

func (p *parser) audience(n *yaml.Node, path string, r *Rules) (Audience, bool) {
	var a Audience
	f := p.mapping(n, path, "name", "event", "track", "url", "campaign", "properties", "count", "window", "model", "score_gte")
	if f == nil {
		return a, false
	}
	before := p.Errors()
	name, nameNode := p.requiredString(n, f, "name", path)
	if nameNode != nil && !audienceNameRE.MatchString(name) {
		p.errf(nameNode, path+".name", "invalid audience name %q (want [a-z0-9_-]+)", name)
	}
	a.Name = name

	if v := f.Val("event"); present(v) {
		if s, ok := p.str(v, path+".event"); ok {
			a.Cond.Event = event.Type(s)
			if !isScoredType(a.Cond.Event) {
				p.errf(v, path+".event", "unknown event type %q (want one of %s)", s, typeList())
			}
		}
		a.Cond.Track = p.optionalString(f, "track", path)
		a.Cond.Campaign = p.optionalString(f, "campaign", path)
		a.Cond.URL = p.optionalString(f, "url", path)
		p.urlGlob(&a.Cond, f, path)
		if v := f.Val("properties"); present(v) {
			a.Cond.Properties = p.properties(v, path+".properties")
		}
		a.Count = 1
		if v := f.Val("count"); present(v) {
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&a.Count) != nil {
				p.errf(v, path+".count", "want an integer between 1 and %d, got %s", MaxAudienceCount, kindName(v))
			} else if a.Count < 1 || a.Count > MaxAudienceCount {
				p.errf(v, path+".count", "must be between 1 and %d, got %d", MaxAudienceCount, a.Count)
			}
		}
		if v := f.Val("window"); !present(v) {
			p.errf(n, path+".window", "missing (want a duration such as 7d or 24h: how far back the events count)")
		} else if s, ok := p.str(v, path+".window"); ok {
			d, err := parseDays(s)
			switch {
			case err != nil:
				p.errf(v, path+".window", "bad duration %q (want a Go duration such as 24h or 30m, or days such as 7d)", s)
			case d < time.Second:
				p.errf(v, path+".window", "must be at least 1s, got %s", s)
			}
			a.Window = d
		}
	} else {
		for _, k := range []string{"track", "url", "campaign", "properties", "count", "window"} {
			if v := f.Val(k); present(v) {
				p.errf(v, path+"."+k, "needs event (it is a condition on events)")
			}
		}
	}

	model, gte := f.Val("model"), f.Val("score_gte")
	switch {
	case present(model) && present(gte):
		if s, ok := p.str(model, path+".model"); ok {
			a.Model = s
			if r == nil || r.Model(s) == nil {
				p.errf(model, path+".model", "no model named %q", s)
			}
		}
		a.ScoreGTE, _ = p.number(gte, path+".score_gte")
	case present(model):
		p.errf(model, path+".score_gte", "missing (model needs score_gte: the least score of a member)")
	case present(gte):
		p.errf(gte, path+".model", "missing (score_gte needs the model whose score it reads)")
	}
	if !a.HasBehaviour() && a.Model == "" && !present(model) && !present(gte) {
		p.errf(n, path, "want a condition: event (with count and window) and/or model with score_gte")
	}
	return a, p.Errors() == before && nameNode != nil
}

// YAML form (Rules.MarshalYAML).

type yamlAudience struct {
	Name       string         `yaml:"name"`
	Event      string         `yaml:"event,omitempty"`
	Track      string         `yaml:"track,omitempty"`
	URL        string         `yaml:"url,omitempty"`
	Campaign   string         `yaml:"campaign,omitempty"`
	Properties map[string]any `yaml:"properties,omitempty"`
	Count      int            `yaml:"count,omitempty"`
	Window     string         `yaml:"window,omitempty"`
	Model      string         `yaml:"model,omitempty"`
	ScoreGTE   *float64       `yaml:"score_gte,omitempty"`
}

func (a *Audience) toYAML() yamlAudience {
	y := yamlAudience{Name: a.Name, Model: a.Model}
	if a.HasBehaviour() {
		y.Event, y.Track, y.URL, y.Campaign, y.Properties = string(a.Cond.Event), a.Cond.Track, a.Cond.URL, a.Cond.Campaign, a.Cond.Properties
		y.Count, y.Window = a.Count, formatDuration(a.Window)
	}
	if a.Model != "" {
		g := a.ScoreGTE
		y.ScoreGTE = &g
	}
	return y
}
