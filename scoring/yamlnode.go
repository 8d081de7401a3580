package scoring

import (
	"go.yaml.in/yaml/v3"

	"github.com/leadstream/leadstream/internal/yamlconf"
)

// The rules file is walked as a yaml.Node tree rather than decoded into
// structs: only nodes carry line numbers, and checking keys ourselves lets
// every unknown key, not just the first, be reported with its line. The
// walking (errors sorted by line as FILE:LINE: path: reason, syntax errors
// placed by bisection, merge keys bounded) is package yamlconf's, shared
// with the notifier's destinations file; these are its names here.

type parser struct{ yamlconf.Parser }

type fields = yamlconf.Fields

func newParser(file string) *parser { return &parser{yamlconf.Parser{File: file}} }

func (p *parser) errf(n *yaml.Node, path, format string, args ...any) {
	p.Errf(n, path, format, args...)
}
func (p *parser) full() bool                               { return p.Full() }
func (p *parser) err() error                               { return p.Err() }
func (p *parser) document(data []byte) (*yaml.Node, error) { return p.Document(data) }
func (p *parser) mapping(n *yaml.Node, path string, known ...string) *fields {
	return p.Mapping(n, path, known...)
}
func (p *parser) sequence(n *yaml.Node, path string) []*yaml.Node { return p.Sequence(n, path) }
func (p *parser) str(n *yaml.Node, path string) (string, bool)    { return p.String(n, path) }

func resolve(n *yaml.Node) *yaml.Node  { return yamlconf.Resolve(n) }
func present(n *yaml.Node) bool        { return yamlconf.Present(n) }
func isNull(n *yaml.Node) bool         { return yamlconf.IsNull(n) }
func kindName(n *yaml.Node) string     { return yamlconf.KindName(n) }
func joinPath(path, key string) string { return yamlconf.Join(path, key) }
