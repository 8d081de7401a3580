package scoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/leadstream/leadstream/event"
)

// FitRule awards Points when a lead's profile trait satisfies its single
// condition. Fit points describe who the lead is, not what they did, so
// unlike Rule points they do not decay.
//
// Conditions are unexported because their combination is constrained
// (exactly one; gte and lte together form a range) and the regexp must be
// compiled; Parse is the only way to build a usable FitRule.
type FitRule struct {
	Name   string
	Trait  string // key in the traits object; a dotted name also reaches nested objects (company.employees)
	Points float64

	matches   *regexp.Regexp
	equals    string
	hasEquals bool
	gte, lte  float64
	hasGte    bool
	hasLte    bool
	in        []string
}

// FitPoints evaluates the fit rules of m over a traits object (as returned by
// DecodeTraits, or traits merged over several identify calls) and returns
// their total and one reason per contributing rule, in rule order.
func (m *Model) FitPoints(traits map[string]any) (total float64, reasons []event.Reason) {
	for i := range m.Fit {
		f := &m.Fit[i]
		if f.match(traits) {
			total += f.Points
			reasons = append(reasons, event.Reason{Rule: f.Name, Points: f.Points})
		}
	}
	return total, reasons
}

// DecodeTraits decodes a JSON object (event.Traits or event.Properties) with
// numbers as float64. Empty input and JSON null give a nil map, which reads
// like an empty one.
func DecodeTraits(raw []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding traits: %w", err)
	}
	return m, nil
}

func (f *FitRule) match(traits map[string]any) bool {
	v, ok := lookupTrait(traits, f.Trait)
	if !ok {
		return false
	}
	switch {
	case f.matches != nil:
		s, ok := traitString(v)
		return ok && f.matches.MatchString(s)
	case f.hasEquals:
		s, ok := traitString(v)
		return ok && s == f.equals
	case f.in != nil:
		s, ok := traitString(v)
		return ok && slices.Contains(f.in, s)
	case f.hasGte || f.hasLte:
		x, ok := traitNumber(v)
		return ok && (!f.hasGte || x >= f.gte) && (!f.hasLte || x <= f.lte)
	}
	return false
}

// lookupTrait prefers a literal key, so a trait really named "a.b" still
// works, and otherwise walks nested objects: Segment's reserved "company"
// trait is an object.
func lookupTrait(traits map[string]any, key string) (any, bool) {
	if v, ok := traits[key]; ok {
		return v, v != nil
	}
	var cur any = traits
	for key != "" {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		var part string
		part, key, _ = strings.Cut(key, ".")
		if cur, ok = obj[part]; !ok {
			return nil, false
		}
	}
	return cur, cur != nil
}

// traitString gives the text a string condition is compared with. Numbers and
// bools use their JSON spelling, so "equals: 200" still matches a numeric
// trait; objects and lists never match.
func traitString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	}
	return "", false
}

// traitNumber accepts numeric strings as well, because CRMs often send
// counts such as employees as text.
func traitNumber(v any) (float64, bool) {
	var x float64
	switch v := v.(type) {
	case float64:
		x = v
	case int:
		x = float64(v)
	case int64:
		x = float64(v)
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return 0, false
		}
		x = f
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return 0, false
		}
		x = f
	default:
		return 0, false
	}
	return x, !math.IsNaN(x) && !math.IsInf(x, 0)
}
