package scoring

import (
	"fmt"
	"github.com/leadstream/leadstream/event"

	"go.yaml.in/yaml/v3"
)

// AccountRules is a model's `accounts:` section: how the model scores B2B
// accounts (see accounts.go). An account's score is its fit points plus its
// engagement: the sum of its members' behaviour values in the model (decayed
// as a lead's are), each member counting for at most MemberCap.
type AccountRules struct {
	Threshold  float64 // MQA when the account's score >= Threshold (and MinEngaged members are engaged)
	RearmBelow float64 // after an MQA, fire again only once the score fell below this
	MemberCap  float64 // most one member adds to the engagement; 0 = no cap
	EngagedAt  float64 // a member is engaged when its behaviour value is >= EngagedAt
	MinEngaged int     // engaged members needed for an MQA
	Fit        []FitRule
}

// DefaultEngagedAt is engaged_at when a rules file gives none.
const DefaultEngagedAt = 1

func (a *AccountRules) toYAML() *yamlAccounts {
	if a == nil {
		return nil
	}
	ya := &yamlAccounts{Threshold: a.Threshold, RearmBelow: a.RearmBelow, MemberCap: a.MemberCap,
		EngagedAt: a.EngagedAt, MinEngaged: a.MinEngaged}
	for _, f := range a.Fit {
		ya.Fit = append(ya.Fit, f.toYAML())
	}
	return ya
}

type yamlAccounts struct {
	Threshold  float64   `yaml:"threshold"`
	RearmBelow float64   `yaml:"rearm_below"`
	MemberCap  float64   `yaml:"member_cap"`
	EngagedAt  float64   `yaml:"engaged_at"`
	MinEngaged int       `yaml:"min_engaged"`
	Fit        []yamlFit `yaml:"fit,omitempty"`
}

// accounts parses a model's `accounts:` section.
func (p *parser) accounts(n *yaml.Node, path string) *AccountRules {
	f := p.mapping(n, path, "threshold", "rearm_below", "member_cap", "engaged_at", "min_engaged", "fit")
	if f == nil {
		return nil
	}
	a := &AccountRules{EngagedAt: DefaultEngagedAt, MinEngaged: 1}
	thresholdOK := false
	if v := f.Val("threshold"); !present(v) {
		p.errf(n, path+".threshold", "missing (want a number > 0)")
	} else if t, ok := p.number(v, path+".threshold"); ok {
		if t <= 0 {
			p.errf(v, path+".threshold", "must be > 0, got %v", t)
		} else {
			a.Threshold, thresholdOK = t, true
		}
	}
	a.RearmBelow = a.Threshold / 2
	if v := f.Val("rearm_below"); present(v) {
		if rb, ok := p.number(v, path+".rearm_below"); ok {
			a.RearmBelow = rb
			if thresholdOK && rb >= a.Threshold {
				p.errf(v, path+".rearm_below", "must be < threshold (%v), got %v", a.Threshold, rb)
			}
		}
	}
	if v := f.Val("member_cap"); present(v) {
		if c, ok := p.number(v, path+".member_cap"); ok {
			if c < 0 {
				p.errf(v, path+".member_cap", "must be > 0 (or 0 = no cap), got %v", c)
			}
			a.MemberCap = c
		}
	}
	if v := f.Val("engaged_at"); present(v) {
		if e, ok := p.number(v, path+".engaged_at"); ok {
			if e <= 0 {
				p.errf(v, path+".engaged_at", "must be > 0, got %v", e)
			}
			a.EngagedAt = e
		}
	}
	if v := f.Val("min_engaged"); present(v) {
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&a.MinEngaged) != nil {
			p.errf(v, path+".min_engaged", "want an integer >= 0, got %s", kindName(v))
		} else if a.MinEngaged < 0 {
			p.errf(v, path+".min_engaged", "must be >= 0, got %d", a.MinEngaged)
		}
	}
	if v := f.Val("fit"); present(v) {
		firstLine := map[string]int{}
		for i, fn := range p.sequence(v, path+".fit") {
			fpath := fmt.Sprintf("%s.fit[%d]", path, i)
			fr, nn := p.fitRule(fn, fpath)
			if nn != nil {
				if l, dup := firstLine[fr.Name]; dup {
					p.errf(fn, fpath+".name", "duplicate fit rule name %q in accounts (first at line %d)", fr.Name, l)
				} else {
					firstLine[fr.Name] = fn.Line
				}
			}
			a.Fit = append(a.Fit, fr)
		}
	}
	return a
}

// FitPoints evaluates the account fit rules over an account's traits.
func (a *AccountRules) FitPoints(traits map[string]any) (total float64, reasons []event.Reason) {
	m := Model{Fit: a.Fit}
	return m.FitPoints(traits)
}
