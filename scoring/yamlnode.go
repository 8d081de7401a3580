package scoring

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The rules file is walked as a yaml.Node tree rather than decoded into
// structs: only nodes carry line numbers, and checking keys ourselves lets
// every unknown key, not just the first, be reported with its line.

// maxErrors bounds the report for files that are not rules at all.
const maxErrors = 20

type parseErr struct {
	line int
	msg  string
}

type parser struct {
	file   string
	errs   []parseErr
	merges int // mappings merged so far, see maxMerges
}

// errf records a problem at n's line. path names the field in the form
// users see in the file, e.g. models[0].rules[1].event.
func (p *parser) errf(n *yaml.Node, path, format string, args ...any) {
	if p.full() {
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
	p.errs = append(p.errs, parseErr{line, msg})
}

func (p *parser) full() bool { return len(p.errs) >= maxErrors }

func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].line < p.errs[j].line })
	errs := make([]error, 0, len(p.errs)+1)
	for _, e := range p.errs {
		errs = append(errs, fmt.Errorf("%s:%d: %s", p.file, e.line, e.msg))
	}
	if p.full() {
		errs = append(errs, fmt.Errorf("%s: too many errors", p.file))
	}
	return errors.Join(errs...)
}

// syntaxErr reports a YAML syntax error at the line where it is. The YAML
// library's own line is unreliable (go.yaml.in/yaml/v3 v3.0.6 as
// gopkg.in/yaml.v3 before it; checked when moving to it): it names the
// enclosing construct, is one too small for parser errors and is missing
// for some. A YAML stream is read front to
// back, so the problem is on the first line whose inclusion makes the prefix
// of the file fail with the same message; bisection finds it in O(log n)
// parses, paid only for broken files.
func (p *parser) syntaxErr(data []byte, err error) error {
	msg := yamlMessage(err)
	var ends []int // ends[i] is the offset just past line i+1
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(ends) == 0 || ends[len(ends)-1] != len(data) {
		ends = append(ends, len(data))
	}
	lo, hi := 0, len(ends) // invariant: lo lines parse (or fail differently), hi lines fail with msg
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if e := decodeAll(data[:ends[mid-1]]); e != nil && yamlMessage(e) == msg {
			hi = mid
		} else {
			lo = mid
		}
	}
	return fmt.Errorf("%s:%d: invalid YAML: %s", p.file, hi, msg)
}

// The YAML library formats syntax errors as "yaml: line N: msg" or "yaml: msg".
var yamlLineRE = regexp.MustCompile(`^line \d+: `)

func yamlMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return yamlLineRE.ReplaceAllString(msg, "")
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

// document returns the top node of the single YAML document in data, or nil
// for a file without one.
func (p *parser) document(data []byte) (*yaml.Node, error) {
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
		// A second document would be silently ignored; refuse instead.
		return nil, fmt.Errorf("%s:%d: only one YAML document is allowed", p.file, max(extra.Line, 1))
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return resolve(doc.Content[0]), nil
	}
	return resolve(&doc), nil
}

// fields are the entries of one mapping, in file order.
type fields struct {
	keys []string
	vals map[string]*yaml.Node
}

// val returns the value of key, nil when absent.
func (f *fields) val(key string) *yaml.Node {
	if f == nil {
		return nil
	}
	return f.vals[key]
}

// mapping checks that n is a mapping whose keys are all in known (any key when
// known is empty) and none repeated. It returns nil, after reporting, when n
// is not a mapping. Merge keys (<<: *anchor) are honoured so that users can
// share settings between rules; explicit keys win over merged ones.
func (p *parser) mapping(n *yaml.Node, path string, known ...string) *fields {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errf(n, path, "want a mapping, got %s", kindName(n))
		return nil
	}
	f := &fields{vals: map[string]*yaml.Node{}}
	p.collect(f, n, path, known, map[*yaml.Node]bool{n: true})
	return f
}

// maxMerges bounds the mappings merged over a whole file. Merges can nest
// and share anchors, so without a bound a small file could make the walk
// quadratic or worse, like the "billion laughs" alias bomb.
const maxMerges = 10000

// collect adds the entries of n to f. seen holds the mappings already merged
// into f: merging one twice adds nothing, and skipping it also ends cycles.
func (p *parser) collect(f *fields, n *yaml.Node, path string, known []string, seen map[*yaml.Node]bool) {
	var merges []*yaml.Node
	explicit := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			p.errf(k, path, "want a string key, got %s", kindName(k))
			continue
		}
		kpath := joinPath(path, k.Value)
		if len(known) > 0 && !contains(known, k.Value) {
			p.errf(k, kpath, "unknown key (want one of %s)", strings.Join(known, ", "))
			continue
		}
		if explicit[k.Value] {
			p.errf(k, kpath, "duplicate key")
			continue
		}
		explicit[k.Value] = true
		if _, ok := f.vals[k.Value]; !ok {
			f.keys = append(f.keys, k.Value)
			f.vals[k.Value] = v
		}
	}
	for _, m := range merges {
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			src = resolve(src)
			if src.Kind != yaml.MappingNode {
				p.errf(src, path, "merge (<<) wants a mapping, got %s", kindName(src))
				continue
			}
			if seen[src] {
				continue
			}
			seen[src] = true
			if p.merges++; p.merges > maxMerges {
				if p.merges == maxMerges+1 {
					p.errf(src, path, "too many merges (<<)")
				}
				return
			}
			p.collect(f, src, path, known, seen)
		}
	}
}

// sequence returns the items of n; nil (after reporting) when n is not a
// sequence, and also nil for an empty one.
func (p *parser) sequence(n *yaml.Node, path string) []*yaml.Node {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		p.errf(n, path, "want a list, got %s", kindName(n))
		return nil
	}
	if len(n.Content) == 0 {
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items
}

// str returns a scalar's text as written, so that campaign: 0123 keeps its
// leading zero and numeric-looking ids need no quoting.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		p.errf(n, path, "want a string, got %s", kindName(n))
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// present reports whether a value was given; "key:" with nothing after it
// counts as absent, like an omitted key.
func present(n *yaml.Node) bool { return n != nil && !isNull(resolve(n)) }

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func kindName(n *yaml.Node) string {
	switch n = resolve(n); n.Kind {
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

func joinPath(path, key string) string {
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
