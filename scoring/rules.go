package scoring

import (
	_ "embed"
	"fmt"
	"math"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/event"
)

// Rules is a parsed, validated rules file. Once built it is never modified,
// so one value can be shared by every goroutine of the processor.
type Rules struct {
	Models    []Model
	Audiences []Audience // see audiences.go
}

// Model returns the model named name, or nil.
func (r *Rules) Model(name string) *Model {
	for i := range r.Models {
		if r.Models[i].Name == name {
			return &r.Models[i]
		}
	}
	return nil
}

// Model is one independent score (for example one per product line): its own
// rules, decay and MQL threshold. A lead has one score per model.
type Model struct {
	Name       string
	HalfLife   time.Duration // 0 = behaviour points never decay
	Threshold  float64       // MQL when score >= Threshold
	RearmBelow float64       // after an MQL, fire again only once the score fell below this
	Rules      []Rule
	Fit        []FitRule
	Accounts   *AccountRules // nil: the model does not score accounts
}

// Rule awards Points to every event that matches all of its non-empty
// conditions.
type Rule struct {
	Name     string
	Event    event.Type
	Track    string // exact event.Track; empty = any
	URL      string // glob on the decoded URL path (see Match), as written; empty = any
	Campaign string // exact event.Campaign; empty = any
	// Properties must all be present in the event's properties with equal
	// JSON values. Values are string, float64 or bool; nil when the rule has
	// none, which keeps Match allocation-free.
	Properties map[string]any
	Points     float64
	Cap        *Cap // nil = uncapped

	// glob is URL with its %XX escapes decoded (compileGlob), set by Parse
	// when that differs from URL (the pattern has a '%'); Match uses URL
	// itself otherwise, so a Rule built in Go gives URL decoded.
	glob string
}

// Cap limits how often one rule scores for one lead: at most Count hits per
// fixed window of event time (see CapWindow). Windows are fixed rather than
// sliding so the processor needs a single counter per lead, rule and window.
type Cap struct {
	Count  int
	Window time.Duration
}

// DefaultYAML is the embedded default rules file; users copy it as a start.
//
//go:embed default_rules.yaml
var DefaultYAML []byte

// Default returns a fresh copy of the default rules parsed from DefaultYAML,
// so callers may modify it.
func Default() *Rules {
	r, err := Parse("default_rules.yaml", DefaultYAML)
	if err != nil {
		panic("BUG: embedded default rules do not parse: " + err.Error())
	}
	return r
}

// Load reads and parses the rules file at path.
func Load(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading rules: %w", err)
	}
	return Parse(path, data)
}

// Parse parses and validates a rules file. filename is used only in error
// messages, which have the form "FILE:LINE: field.path: reason", one line per
// problem, so a bad file can be fixed in one pass instead of one error at a
// time.
func Parse(filename string, data []byte) (*Rules, error) {
	p := newParser(filename)
	root, err := p.document(data)
	if err != nil {
		return nil, err
	}
	r := p.rules(root)
	if err := p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// scoredTypes are the event types a rule may name. Alias is deliberately
// missing: it merges identities and is not a touch worth points.
var scoredTypes = []event.Type{
	event.PageView, event.EmailOpen, event.EmailClick, event.FormSubmit,
	event.Identify, event.DealWon, event.Custom,
}

// Model names end up in Redis keys and MQL records, hence the narrow charset.
var modelNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

func (p *parser) rules(root *yaml.Node) *Rules {
	if root == nil || isNull(root) {
		p.errf(root, "", "no models (the file must have a top-level \"models\" list)")
		return nil
	}
	f := p.mapping(root, "", "models", "audiences")
	if f == nil {
		return nil
	}
	mn := f.Val("models")
	if !present(mn) {
		p.errf(root, "models", "no models (want at least one)")
		return nil
	}
	items := p.sequence(mn, "models")
	if items == nil {
		if mn.Kind == yaml.SequenceNode {
			p.errf(mn, "models", "no models (want at least one)")
		}
		return nil
	}
	r := &Rules{Models: make([]Model, 0, len(items))}
	firstLine := map[string]int{}
	for i, n := range items {
		path := fmt.Sprintf("models[%d]", i)
		m, nameNode := p.model(n, path)
		if nameNode != nil {
			if l, dup := firstLine[m.Name]; dup {
				p.errf(n, path+".name", "duplicate model name %q (first at line %d)", m.Name, l)
			} else {
				firstLine[m.Name] = n.Line
			}
		}
		r.Models = append(r.Models, m)
	}
	if v := f.Val("audiences"); present(v) {
		r.Audiences = p.audiences(v, r)
	}
	return r
}

// model returns the parsed model and its name node (nil when the name is
// missing or invalid, so the caller skips the duplicate check).
func (p *parser) model(n *yaml.Node, path string) (Model, *yaml.Node) {
	var m Model
	f := p.mapping(n, path, "name", "half_life", "threshold", "rearm_below", "rules", "fit", "accounts")
	if f == nil {
		return m, nil
	}
	name, nameNode := p.requiredString(n, f, "name", path)
	if nameNode != nil && !modelNameRE.MatchString(name) {
		p.errf(nameNode, path+".name", "invalid model name %q (want [a-z0-9_-]+)", name)
		nameNode = nil
	}
	m.Name = name

	if v := f.Val("half_life"); present(v) {
		if d, ok := p.duration(v, path+".half_life"); ok {
			if d < 0 {
				p.errf(v, path+".half_life", "must not be negative (0 = no decay)")
			}
			m.HalfLife = d
		}
	}

	thresholdOK := false
	if v := f.Val("threshold"); !present(v) {
		p.errf(n, path+".threshold", "missing (want a number > 0)")
	} else if t, ok := p.number(v, path+".threshold"); ok {
		if t <= 0 {
			p.errf(v, path+".threshold", "must be > 0, got %v", t)
		} else {
			m.Threshold, thresholdOK = t, true
		}
	}
	m.RearmBelow = m.Threshold / 2
	if v := f.Val("rearm_below"); present(v) {
		if rb, ok := p.number(v, path+".rearm_below"); ok {
			m.RearmBelow = rb
			if thresholdOK && rb >= m.Threshold {
				p.errf(v, path+".rearm_below", "must be < threshold (%v), got %v", m.Threshold, rb)
			}
		}
	}

	// Rule and fit names share one namespace because both appear as
	// event.Reason.Rule in MQL records, where they must be unambiguous.
	firstLine := map[string]int{}
	// Duplicates are reported at the item, not the name node: with merge
	// keys the name may be defined far away, on the same line each time.
	checkDup := func(kind, name string, nn, item *yaml.Node, fpath string) {
		if nn == nil {
			return
		}
		if l, dup := firstLine[name]; dup {
			p.errf(item, fpath, "duplicate %s name %q in model (first at line %d)", kind, name, l)
			return
		}
		firstLine[name] = item.Line
	}
	if v := f.Val("rules"); present(v) {
		for i, rn := range p.sequence(v, path+".rules") {
			rpath := fmt.Sprintf("%s.rules[%d]", path, i)
			r, nn := p.rule(rn, rpath)
			checkDup("rule", r.Name, nn, rn, rpath+".name")
			m.Rules = append(m.Rules, r)
		}
	}
	if v := f.Val("fit"); present(v) {
		for i, fn := range p.sequence(v, path+".fit") {
			fpath := fmt.Sprintf("%s.fit[%d]", path, i)
			fr, nn := p.fitRule(fn, fpath)
			checkDup("fit rule", fr.Name, nn, fn, fpath+".name")
			m.Fit = append(m.Fit, fr)
		}
	}
	if v := f.Val("accounts"); present(v) {
		m.Accounts = p.accounts(v, path+".accounts")
	}
	if len(m.Rules) == 0 && len(m.Fit) == 0 && !p.full() {
		p.errf(n, path, "model has no rules and no fit rules, so it can never score")
	}
	return m, nameNode
}

func (p *parser) rule(n *yaml.Node, path string) (Rule, *yaml.Node) {
	var r Rule
	f := p.mapping(n, path, "name", "event", "track", "url", "campaign", "properties", "points", "cap")
	if f == nil {
		return r, nil
	}
	var nameNode *yaml.Node
	r.Name, nameNode = p.requiredString(n, f, "name", path)

	if v := f.Val("event"); !present(v) {
		p.errf(n, path+".event", "missing (want one of %s)", typeList())
	} else if s, ok := p.str(v, path+".event"); ok {
		r.Event = event.Type(s)
		if !isScoredType(r.Event) {
			p.errf(v, path+".event", "unknown event type %q (want one of %s)", s, typeList())
		}
	}
	r.Track = p.optionalString(f, "track", path)
	r.Campaign = p.optionalString(f, "campaign", path)
	r.URL = p.optionalString(f, "url", path)
	p.urlGlob(&r, f, path)

	if v := f.Val("properties"); present(v) {
		r.Properties = p.properties(v, path+".properties")
	}

	if v := f.Val("points"); !present(v) {
		p.errf(n, path+".points", "missing (want a non-zero number)")
	} else if pts, ok := p.number(v, path+".points"); ok {
		if pts == 0 {
			p.errf(v, path+".points", "must be non-zero")
		}
		r.Points = pts
	}

	if v := f.Val("cap"); present(v) {
		r.Cap = p.cap(v, path+".cap")
	}
	return r, nameNode
}

// urlGlob checks r.URL (checkGlob) and compiles it (compileGlob): a rule's
// and an audience's url.
func (p *parser) urlGlob(r *Rule, f *fields, path string) {
	if err := checkGlob(r.URL); err != nil {
		p.errf(f.Val("url"), path+".url", "bad glob %q: %v", r.URL, err)
		return
	}
	if g := compileGlob(r.URL); g != r.URL {
		r.glob = g
	}
}

func (p *parser) properties(n *yaml.Node, path string) map[string]any {
	f := p.mapping(n, path)
	if f == nil || len(f.Keys) == 0 {
		return nil // "properties: {}" means no condition
	}
	props := make(map[string]any, len(f.Keys))
	for _, k := range f.Keys {
		v := f.Val(k)
		kpath := path + "." + k
		if v.Kind != yaml.ScalarNode {
			p.errf(v, kpath, "want a string, number or bool, got %s", kindName(v))
			continue
		}
		switch v.ShortTag() {
		case "!!str":
			props[k] = v.Value
		case "!!bool":
			var b bool
			if err := v.Decode(&b); err != nil {
				p.errf(v, kpath, "bad bool %q", v.Value)
				continue
			}
			props[k] = b
		case "!!int", "!!float":
			if x, ok := p.number(v, kpath); ok {
				props[k] = x
			}
		default:
			p.errf(v, kpath, "want a string, number or bool, got %s", kindName(v))
		}
	}
	return props
}

// MaxCapCount bounds cap.count: every hit that scores in an open cap window
// is kept in the lead's state (its time, id and points) until the window
// closes, so the count bounds that part of the state.
const MaxCapCount = 1000

func (p *parser) cap(n *yaml.Node, path string) *Cap {
	f := p.mapping(n, path, "count", "window")
	if f == nil {
		return nil
	}
	c := &Cap{}
	if v := f.Val("count"); !present(v) {
		p.errf(n, path+".count", "missing (want an integer >= 1)")
	} else if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&c.Count) != nil {
		p.errf(v, path+".count", "want an integer >= 1, got %s", kindName(v))
	} else if c.Count < 1 {
		p.errf(v, path+".count", "must be >= 1, got %d", c.Count)
	} else if c.Count > MaxCapCount {
		p.errf(v, path+".count", "must be <= %d (each scoring hit of an open window is kept in the lead's state; leave the cap out for none), got %d", MaxCapCount, c.Count)
	}
	if v := f.Val("window"); !present(v) {
		p.errf(n, path+".window", "missing (want a duration such as 24h)")
	} else if d, ok := p.duration(v, path+".window"); ok {
		// CapWindow works in whole milliseconds, the unit of event time.
		if d < time.Millisecond {
			p.errf(v, path+".window", "must be > 0 (at least 1ms), got %v", d)
		}
		c.Window = d
	}
	return c
}

func (p *parser) fitRule(n *yaml.Node, path string) (FitRule, *yaml.Node) {
	var fr FitRule
	f := p.mapping(n, path, "name", "trait", "matches", "equals", "gte", "lte", "in", "points")
	if f == nil {
		return fr, nil
	}
	var nameNode *yaml.Node
	fr.Name, nameNode = p.requiredString(n, f, "name", path)
	fr.Trait, _ = p.requiredString(n, f, "trait", path)

	conds := 0
	if v := f.Val("matches"); present(v) {
		conds++
		if s, ok := p.str(v, path+".matches"); ok {
			re, err := regexp.Compile(s)
			if err != nil {
				p.errf(v, path+".matches", "bad regexp %q: %v", s, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			}
			fr.matches = re
		}
	}
	if v := f.Val("equals"); present(v) {
		conds++
		fr.equals, fr.hasEquals = p.str(v, path+".equals")
	}
	if v := f.Val("in"); present(v) {
		conds++
		items := p.sequence(v, path+".in")
		if items == nil && v.Kind == yaml.SequenceNode {
			p.errf(v, path+".in", "empty list")
		}
		for i, in := range items {
			if s, ok := p.str(in, fmt.Sprintf("%s.in[%d]", path, i)); ok {
				fr.in = append(fr.in, s)
			}
		}
	}
	gte, lte := f.Val("gte"), f.Val("lte")
	if present(gte) || present(lte) {
		conds++
		if present(gte) {
			fr.gte, fr.hasGte = p.number(gte, path+".gte")
		}
		if present(lte) {
			fr.lte, fr.hasLte = p.number(lte, path+".lte")
		}
		if fr.hasGte && fr.hasLte && fr.gte > fr.lte {
			p.errf(gte, path+".gte", "empty range: gte %v > lte %v", fr.gte, fr.lte)
		}
	}
	if conds != 1 {
		p.errf(n, path, "want exactly one condition of matches, equals, gte/lte, in; got %d", conds)
	}

	if v := f.Val("points"); !present(v) {
		p.errf(n, path+".points", "missing (want a non-zero number)")
	} else if pts, ok := p.number(v, path+".points"); ok {
		if pts == 0 {
			p.errf(v, path+".points", "must be non-zero")
		}
		fr.Points = pts
	}
	return fr, nameNode
}

func (p *parser) requiredString(parent *yaml.Node, f *fields, key, path string) (string, *yaml.Node) {
	v := f.Val(key)
	if !present(v) {
		p.errf(parent, path+"."+key, "missing")
		return "", nil
	}
	s, ok := p.str(v, path+"."+key)
	if !ok {
		return "", nil
	}
	if s == "" {
		p.errf(v, path+"."+key, "must not be empty")
		return "", nil
	}
	return s, v
}

func (p *parser) optionalString(f *fields, key, path string) string {
	v := f.Val(key)
	if !present(v) {
		return ""
	}
	s, _ := p.str(v, path+"."+key)
	return s
}

func (p *parser) number(n *yaml.Node, path string) (float64, bool) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.errf(n, path, "want a number, got %s", kindName(n))
		return 0, false
	}
	var x float64
	if err := n.Decode(&x); err != nil {
		p.errf(n, path, "bad number %q", n.Value)
		return 0, false
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		p.errf(n, path, "must be a finite number, got %s", n.Value)
		return 0, false
	}
	return x, true
}

func (p *parser) duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.errf(n, path, "bad duration %q (want a Go duration such as 720h, 30m or 0)", s)
		return 0, false
	}
	return d, true
}

func isScoredType(t event.Type) bool {
	for _, s := range scoredTypes {
		if t == s {
			return true
		}
	}
	return false
}

func typeList() string {
	var b strings.Builder
	for i, t := range scoredTypes {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(t))
	}
	return b.String()
}
