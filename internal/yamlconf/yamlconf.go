// Package yamlconf walks a YAML configuration file as a yaml.Node tree and
// reports every problem at once as FILE:LINE: field.path: reason: only nodes
// carry line numbers, and checking keys by hand lets every unknown key be
// reported with its line. The scoring rules file (scoring/yamlnode.go) and
// the notifier's destinations file (package notify) are read with it.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxErrors bounds the report for files that are not configuration at all.
const MaxErrors = 20

// maxMerges bounds the mappings merged (<<) over a whole file, so a small
// file cannot make the walk explode like an alias bomb.
const maxMerges = 10000

type problem struct {
	line int
	msg  string
}

// Parser collects the problems of one file.
type Parser struct {
	File   string
	errs   []problem
	merges int
}

// Errf records a problem at n's line; path names the field as users see it
// (destinations[0].url).
func (p *Parser) Errf(n *yaml.Node, path, format string, args ...any) {
	if p.Full() {
		return
	}
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.errs = append(p.errs, problem{line, msg})
}

// Full reports whether no more problems are recorded.
func (p *Parser) Full() bool { return len(p.errs) >= MaxErrors }

// Errors is how many problems were recorded.
func (p *Parser) Errors() int { return len(p.errs) }

// Err returns every problem, sorted by line, or nil.
func (p *Parser) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].line < p.errs[j].line })
	errs := make([]error, 0, len(p.errs)+1)
	for _, e := range p.errs {
		errs = append(errs, fmt.Errorf("%s:%d: %s", p.File, e.line, e.msg))
	}
	if p.Full() {
		errs = append(errs, fmt.Errorf("%s: too many errors", p.File))
	}
	return errors.Join(errs...)
}

// Document returns the top node of the single YAML document in data (nil
// for an empty file). A syntax error is reported at the line where it is:
// the library's own line is unreliable, so the first line whose inclusion
// makes the file fail with the same message is found by bisection.
func (p *Parser) Document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.syntaxErr(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, p.syntaxErr(data, err)
	default:
		return nil, fmt.Errorf("%s:%d: only one YAML document is allowed", p.File, max(extra.Line, 1))
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return Resolve(doc.Content[0]), nil
	}
	return Resolve(&doc), nil
}

var yamlLineRE = regexp.MustCompile(`^line \d+: `)

func yamlMessage(err error) string {
	return yamlLineRE.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "")
}

func decodeAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (p *Parser) syntaxErr(data []byte, err error) error {
	msg := yamlMessage(err)
	var ends []int
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	lo, hi := 0, len(ends)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if e := decodeAll(data[:ends[mid-1]]); e != nil && yamlMessage(e) == msg {
			hi = mid
		} else {
			lo = mid
		}
	}
	return fmt.Errorf("%s:%d: invalid YAML: %s", p.File, hi, msg)
}

// Fields are the entries of one mapping, in file order.
type Fields struct {
	Keys []string
	vals map[string]*yaml.Node
}

// Val returns the value of key, nil when absent.
func (f *Fields) Val(key string) *yaml.Node {
	if f == nil {
		return nil
	}
	return f.vals[key]
}

// Mapping checks that n is a mapping whose keys are all in known (any key
// when known is empty), none repeated; nil (after reporting) when n is not
// a mapping. Merge keys (<<: *anchor) are honoured, explicit keys winning.
func (p *Parser) Mapping(n *yaml.Node, path string, known ...string) *Fields {
	n = Resolve(n)
	if n.Kind != yaml.MappingNode {
		p.Errf(n, path, "want a mapping, got %s", KindName(n))
		return nil
	}
	f := &Fields{vals: map[string]*yaml.Node{}}
	p.collect(f, n, path, known, map[*yaml.Node]bool{n: true})
	return f
}

func (p *Parser) collect(f *Fields, n *yaml.Node, path string, known []string, seen map[*yaml.Node]bool) {
	var merges []*yaml.Node
	explicit := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Resolve(n.Content[i]), Resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || IsNull(k) {
			p.Errf(k, path, "want a string key, got %s", KindName(k))
			continue
		}
		kpath := Join(path, k.Value)
		if len(known) > 0 && !contains(known, k.Value) {
			p.Errf(k, kpath, "unknown key (want one of %s)", strings.Join(known, ", "))
			continue
		}
		if explicit[k.Value] {
			p.Errf(k, kpath, "duplicate key")
			continue
		}
		explicit[k.Value] = true
		if _, ok := f.vals[k.Value]; !ok {
			f.Keys = append(f.Keys, k.Value)
			f.vals[k.Value] = v
		}
	}
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			src = Resolve(src)
			if src.Kind != yaml.MappingNode {
				p.Errf(src, path, "merge (<<) wants a mapping, got %s", KindName(src))
				continue
			}
			if seen[src] {
				continue
			}
			seen[src] = true
			if p.merges++; p.merges > maxMerges {
				if p.merges == maxMerges+1 {
					p.Errf(src, path, "too many merges (<<)")
				}
				return
			}
			p.collect(f, src, path, known, seen)
		}
	}
}

// Sequence returns the items of n; nil (after reporting) when n is not a
// list, and nil for an empty one.
func (p *Parser) Sequence(n *yaml.Node, path string) []*yaml.Node {
	n = Resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.Errf(n, path, "want a list, got %s", KindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = Resolve(c)
	}
	return items
}

// String returns a scalar's text as written ("" for null).
func (p *Parser) String(n *yaml.Node, path string) (string, bool) {
	n = Resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.Errf(n, path, "want a string, got %s", KindName(n))
		return "", false
	}
	if IsNull(n) {
		return "", true
	}
	return n.Value, true
}

// Number returns a finite number.
func (p *Parser) Number(n *yaml.Node, path string) (float64, bool) {
	n = Resolve(n)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
		p.Errf(n, path, "want a number, got %s", KindName(n))
		return 0, false
	}
	var x float64
	if err := n.Decode(&x); err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
		p.Errf(n, path, "want a finite number, got %s", n.Value)
		return 0, false
	}
	return x, true
}

// Int returns an integer.
func (p *Parser) Int(n *yaml.Node, path string) (int, bool) {
	n = Resolve(n)
	var x int
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&x) != nil {
		p.Errf(n, path, "want an integer, got %s", KindName(n))
		return 0, false
	}
	return x, true
}

// Duration returns a Go duration (30s, 10m, 24h).
func (p *Parser) Duration(n *yaml.Node, path string) (time.Duration, bool) {
	s, ok := p.String(n, path)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		p.Errf(n, path, "bad duration %q (want a Go duration such as 10s or 24h)", s)
		return 0, false
	}
	return d, true
}

// Resolve follows aliases.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// Present reports whether a value was given ("key:" with nothing counts as absent).
func Present(n *yaml.Node) bool { return n != nil && !IsNull(Resolve(n)) }

// IsNull reports whether n is a null scalar.
func IsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// KindName describes a node for error messages.
func KindName(n *yaml.Node) string {
	switch n = Resolve(n); n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("string %q", n.Value)
		case "!!int", "!!float":
			return "number " + n.Value
		case "!!bool":
			return "bool " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "nothing"
}

// Join appends key to a field path.
func Join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
