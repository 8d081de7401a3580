package scoring

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MarshalYAML renders r in the rules file format, so yaml.Marshal of parsed
// rules gives a file that parses back to equal rules.
func (r Rules) MarshalYAML() (any, error) {
	out := yamlRules{Models: make([]yamlModel, len(r.Models))}
	for i := range r.Models {
		out.Models[i] = r.Models[i].toYAML()
	}
	return out, nil
}

// Hash identifies the model's definition: 16 hex digits of the SHA-256 of
// its canonical YAML. Each model's state records the hash it was scored
// with, so a state scored under other rules is visible (and `rescore
// -apply` rewrites it).
func (m *Model) Hash() string {
	b, err := yaml.Marshal(m.toYAML())
	if err != nil {
		panic("BUG: encoding a parsed model: " + err.Error())
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func (m *Model) toYAML() yamlModel {
	ym := yamlModel{
		Name:       m.Name,
		HalfLife:   formatDuration(m.HalfLife),
		Threshold:  m.Threshold,
		RearmBelow: m.RearmBelow,
	}
	for _, ru := range m.Rules {
		yr := yamlRule{
			Name: ru.Name, Event: string(ru.Event), Track: ru.Track, URL: ru.URL,
			Campaign: ru.Campaign, Properties: ru.Properties, Points: ru.Points,
		}
		if ru.Cap != nil {
			yr.Cap = &yamlCap{Count: ru.Cap.Count, Window: formatDuration(ru.Cap.Window)}
		}
		ym.Rules = append(ym.Rules, yr)
	}
	for _, f := range m.Fit {
		ym.Fit = append(ym.Fit, f.toYAML())
	}
	ym.Accounts = m.Accounts.toYAML()
	return ym
}

func (f FitRule) toYAML() yamlFit {
	yf := yamlFit{Name: f.Name, Trait: f.Trait, In: f.in, Points: f.Points}
	if f.matches != nil {
		src := f.matches.String()
		yf.Matches = &src
	}
	if f.hasEquals {
		yf.Equals = &f.equals
	}
	if f.hasGte {
		yf.Gte = &f.gte
	}
	if f.hasLte {
		yf.Lte = &f.lte
	}
	return yf
}

type yamlRules struct {
	Models []yamlModel `yaml:"models"`
}

type yamlModel struct {
	Name       string        `yaml:"name"`
	HalfLife   string        `yaml:"half_life"`
	Threshold  float64       `yaml:"threshold"`
	RearmBelow float64       `yaml:"rearm_below"`
	Rules      []yamlRule    `yaml:"rules,omitempty"`
	Fit        []yamlFit     `yaml:"fit,omitempty"`
	Accounts   *yamlAccounts `yaml:"accounts,omitempty"`
}

type yamlRule struct {
	Name       string         `yaml:"name"`
	Event      string         `yaml:"event"`
	Track      string         `yaml:"track,omitempty"`
	URL        string         `yaml:"url,omitempty"`
	Campaign   string         `yaml:"campaign,omitempty"`
	Properties map[string]any `yaml:"properties,omitempty"`
	Points     float64        `yaml:"points"`
	Cap        *yamlCap       `yaml:"cap,omitempty"`
}

type yamlCap struct {
	Count  int    `yaml:"count"`
	Window string `yaml:"window"`
}

type yamlFit struct {
	Name    string   `yaml:"name"`
	Trait   string   `yaml:"trait"`
	Matches *string  `yaml:"matches,omitempty"`
	Equals  *string  `yaml:"equals,omitempty"`
	Gte     *float64 `yaml:"gte,omitempty"`
	Lte     *float64 `yaml:"lte,omitempty"`
	In      []string `yaml:"in,omitempty"`
	Points  float64  `yaml:"points"`
}

// formatDuration drops the zero minor units of time.Duration.String
// ("720h0m0s" → "720h") so marshalled files read like hand-written ones.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
